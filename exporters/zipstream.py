"""A ZIP64 archive written front to back, never seeking, and deflate on all cores.

Why our own writer: ``zipfile`` seeks back to patch each local header, so its output cannot
flow into ``crypto.EncryptingWriter``, and it deflates on one core. Here every member is
compressed *before* the archive is written (``Deflater``, into a file of raw deflate data),
so each member's sizes and CRC-32 are known when its local header goes out: no data
descriptors, and the archive is a pure function of its members. ``archive_chunks`` yields
its bytes; the bundle runs it twice, once to hash (the sealed file's header names the
sha256) and once into the encrypting writer.

Layout: local header + data per member, in the order given; the central directory; then,
when any count, size or offset needs it, the ZIP64 end record and locator; the end record.
ZIP64 extra fields appear only where a field overflows (over 2 GiB - 1, as ``zipfile``).
Names are UTF-8 (flag bit 11 when not ASCII); every member is a regular 0644 file dated
1980-01-01 00:00, so the same members always give the same bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

STORED, DEFLATED = 0, 8
LEVEL = 1  # zlib level for text: 2.4x faster than 6 here, the output 11-13 % larger (docs/performance.md)
CHUNK = 1 << 20  # plaintext per deflate task: fixed offsets, so the output never depends on timing
WINDOW = 32 * 1024  # the previous chunk's tail primes the next one (as pigz does): same ratio as one stream
READ = 1 << 20
ZIP64_LIMIT = (1 << 31) - 1  # as zipfile: beyond this, ZIP64 fields (some readers treat 32 bits as signed)
COUNT_LIMIT = 0xFFFF
DOS_DATE, DOS_TIME = (1 << 5) | 1, 0  # 1980-01-01 00:00:00
REGULAR_0644 = 0o100644 << 16  # external attributes: a Unix regular file, rw-r--r--
UNIX = 3 << 8  # "version made by": Unix, so the external attributes are read as a mode

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR = struct.Struct("<IIQI")
_END = struct.Struct("<IHHHHIIH")
_EXTRA = struct.Struct("<HH")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class Member:
    """One archive member, ready: its data (raw deflate when DEFLATED) in ``path`` or ``data``."""

    name: str
    method: int
    crc32: int
    size: int  # uncompressed
    compressed_size: int
    path: Path | None = None
    data: bytes | None = None

    def chunks(self) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
            return
        assert self.path is not None
        with open(self.path, "rb") as handle:
            while chunk := handle.read(READ):
                yield chunk


def member_of_bytes(name: str, data: bytes, *, level: int = LEVEL) -> Member:
    """A small member built in memory (README, manifest, checksums)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    packed = compressor.compress(data) + compressor.flush()
    return Member(name, DEFLATED, zlib.crc32(data), len(data), len(packed), data=packed)


def archive_chunks(members: Iterable[Member], *, force_zip64: bool = False) -> Iterator[bytes]:
    """The archive's bytes, front to back. ``force_zip64`` writes every ZIP64 field (tests)."""
    central: list[bytes] = []
    offset = 0
    for member in members:
        name = member.name.encode()
        flags = 0 if member.name.isascii() else 0x800
        big = force_zip64 or member.size > ZIP64_LIMIT or member.compressed_size > ZIP64_LIMIT
        far = force_zip64 or offset > ZIP64_LIMIT
        version = 45 if big or far else (20 if member.method == DEFLATED else 10)
        extra = _extra(_U64.pack(member.size) + _U64.pack(member.compressed_size)) if big else b""
        sizes = (0xFFFFFFFF, 0xFFFFFFFF) if big else (member.compressed_size, member.size)
        header = _LOCAL.pack(0x04034B50, version, flags, member.method, DOS_TIME, DOS_DATE,
                             member.crc32, *sizes, len(name), len(extra)) + name + extra
        yield header
        written = 0
        for chunk in member.chunks():
            written += len(chunk)
            yield chunk
        if written != member.compressed_size:  # a work file changed under us: never publish that
            raise ValueError(f"{member.name}: {written} bytes of data, declared {member.compressed_size}")
        wide = (_U64.pack(member.size) + _U64.pack(member.compressed_size) if big else b"") + (
            _U64.pack(offset) if far else b"")
        extra = _extra(wide) if wide else b""
        central.append(_CENTRAL.pack(
            0x02014B50, UNIX | version, version, flags, member.method, DOS_TIME, DOS_DATE,
            member.crc32, *sizes, len(name), len(extra), 0, 0, 0, REGULAR_0644,
            0xFFFFFFFF if far else offset) + name + extra)
        offset += len(header) + written
    directory = b"".join(central)
    yield directory
    yield _end(len(central), len(directory), offset, force_zip64)


def _extra(body: bytes) -> bytes:
    return _EXTRA.pack(0x0001, len(body)) + body


def _end(count: int, size: int, offset: int, force_zip64: bool) -> bytes:
    if not (force_zip64 or count >= COUNT_LIMIT or size > ZIP64_LIMIT or offset > ZIP64_LIMIT):
        return _END.pack(0x06054B50, 0, 0, count, count, size, offset, 0)
    end64 = _END64.pack(0x06064B50, _END64.size - 12, UNIX | 45, 45, 0, 0, count, count, size, offset)
    locator = _LOCATOR.pack(0x07064B50, 0, offset + size, 1)
    return end64 + locator + _END.pack(0x06054B50, 0, 0, min(count, COUNT_LIMIT), min(count, COUNT_LIMIT),
                                       min(size, 0xFFFFFFFF), min(offset, 0xFFFFFFFF), 0)


class Deflater:
    """A write-only file that deflates into ``target`` on the executor's threads (zlib releases
    the GIL): one raw deflate stream, cut into CHUNK-byte pieces that end on a byte boundary
    (Z_SYNC_FLUSH) and concatenate into one valid stream, the pigz way. At most ``inflight``
    pieces are pending, so memory stays a few MiB whatever the file's size.

    ``close()`` ends the stream (even an empty one); on an error call ``abandon()`` instead.
    """

    def __init__(self, target: BinaryIO, executor: Executor, *, level: int = LEVEL, inflight: int = 6
                 ) -> None:
        self.target, self.executor, self.level, self.inflight = target, executor, level, inflight
        self.compressed_bytes = 0
        self._pieces: list[memoryview] = []  # plaintext waiting for a whole chunk
        self._waiting = 0
        self._window = b""
        self._pending: deque[Future[bytes]] = deque()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview | pa.Buffer) -> int:
        view = memoryview(data).cast("B")
        if not isinstance(data, bytes | pa.Buffer):  # the caller may reuse a mutable buffer
            view = memoryview(view.tobytes())
        size = len(view)
        while view:
            take = min(CHUNK - self._waiting, len(view))
            self._pieces.append(view[:take])
            self._waiting += take
            view = view[take:]
            if self._waiting == CHUNK:
                self._submit(final=False)
        return size

    def _submit(self, *, final: bool) -> None:
        pieces = self._pieces
        self._pieces, self._waiting = [], 0
        self._pending.append(self.executor.submit(_deflate, pieces, self._window, self.level, final))
        self._window = _tail(pieces, WINDOW)  # every chunk but the last is CHUNK >= WINDOW long
        while len(self._pending) > self.inflight:
            self._drain_one()

    def _drain_one(self) -> None:
        packed = self._pending.popleft().result()
        self.target.write(packed)
        self.compressed_bytes += len(packed)

    def close(self) -> None:
        """The last piece, with the final block; waits for every piece to be written."""
        if self.closed:
            return
        self._submit(final=True)
        while self._pending:
            self._drain_one()
        self.closed = True

    def abandon(self) -> None:
        """Stop without finishing: pending pieces are dropped (their threads finish on their own)."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pieces, self.closed = [], True


def _deflate(pieces: list[memoryview], window: bytes, level: int, final: bool) -> bytes:
    """One chunk, fed piece by piece (zlib's output does not depend on how its input is split,
    so the pieces need no joining)."""
    compressor = (zlib.compressobj(level, zlib.DEFLATED, -15, zdict=window) if window
                  else zlib.compressobj(level, zlib.DEFLATED, -15))
    out = [compressor.compress(piece) for piece in pieces]
    out.append(compressor.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH))
    return b"".join(out)


def _tail(pieces: list[memoryview], size: int) -> bytes:
    """The last ``size`` bytes of the pieces, together."""
    tail: list[memoryview] = []
    for piece in reversed(pieces):
        tail.append(piece[-size:])
        size -= len(tail[-1])
        if size <= 0:
            break
    return b"".join(reversed(tail))
