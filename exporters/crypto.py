"""Encryption at rest for bundles: segmented AES-256-GCM, the STREAM construction as Tink and age use it.

Why segments: bundles are served with HTTP Range and read back by pyarrow, so any byte range must
decrypt by reading only the segments that cover it, in bounded memory, while a damaged, cut,
reordered or extended file still fails. Layout (integers big-endian)::

    header   "OBX1" | info_len u32 | info | salt (32 B) | nonce_prefix (7 B)
    segment  AES-256-GCM(plaintext[i*S : (i+1)*S]) | tag (16 B)    repeated, S = 64 KiB

segment key = HKDF-SHA256(data key, salt, info="offboard OBX1 segment key\\0" | sha256(header)), so
any change to the header breaks every segment; nonce = nonce_prefix | u32 index | u8 last flag.
Every segment but the last holds exactly S bytes, the last 1..S (0 only for an empty file): the
plaintext size follows from the ciphertext size, and a cut at a segment boundary makes a non-final
segment the "final" one, which fails its last flag. ``info`` is readable without the key
(``read_info``) but authenticated only once a segment decrypts.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"OBX1"
SEGMENT_SIZE = 64 * 1024
TAG_SIZE = 16
KEY_SIZE = 32
SALT_SIZE = 32
NONCE_PREFIX_SIZE = 7
MAX_INFO_SIZE = 64 * 1024
MAX_SEGMENTS = 2**32  # the u32 counter in the nonce
READ_SEGMENTS = 16  # segments per read_at call: 1 MiB, few round trips when read_at is an S3 GET

_CT_SEGMENT = SEGMENT_SIZE + TAG_SIZE
_FIXED = struct.Struct(">4sI")
_NONCE_TAIL = struct.Struct(">IB")
_KDF_LABEL = b"offboard OBX1 segment key\x00"

ReadAt = Callable[[int, int], bytes]  # (offset, length) -> exactly that many ciphertext bytes
BytesLike = bytes | bytearray | memoryview


class DecryptionError(Exception):
    """Not an intact OBX1 file under this key: damaged, cut, reordered, extended, or the wrong key."""


def _segment_aead(key: bytes, header: bytes, salt: bytes) -> AESGCM:
    """The per-file key, bound to the whole header so a changed header breaks every segment."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"the data key must be {KEY_SIZE} bytes")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt,
                info=_KDF_LABEL + hashlib.sha256(header).digest())
    return AESGCM(hkdf.derive(key))


def _open(aead: AESGCM, prefix: bytes, index: int, last: bool, segment: BytesLike) -> bytes:
    try:
        return aead.decrypt(prefix + _NONCE_TAIL.pack(index, last), segment, None)
    except InvalidTag:
        raise DecryptionError(f"segment {index} failed authentication (damaged, cut, reordered, "
                              "or the wrong key)") from None


def _read_exact(read_at: ReadAt, offset: int, length: int) -> bytes:
    data = read_at(offset, length)
    if len(data) != length:
        raise DecryptionError("the ciphertext is shorter than its stated size")
    return data


@dataclass(frozen=True)
class _Layout:
    header: bytes
    salt: bytes
    prefix: bytes
    size: int  # of the ciphertext
    segments: int
    plaintext_size: int

    def segment_span(self, first: int, stop: int) -> tuple[int, int]:
        """Offset and length of the ciphertext of segments [first, stop)."""
        offset = len(self.header) + first * _CT_SEGMENT
        return offset, min(len(self.header) + stop * _CT_SEGMENT, self.size) - offset


def _read_header(read_at: ReadAt) -> tuple[bytes, bytes, bytes, bytes]:
    fixed = bytes(_read_exact(read_at, 0, _FIXED.size))
    magic, info_len = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise DecryptionError("not an OBX1 file (unknown magic)")
    if info_len > MAX_INFO_SIZE:
        raise DecryptionError("the header's info length is implausible")
    rest = bytes(_read_exact(read_at, _FIXED.size, info_len + SALT_SIZE + NONCE_PREFIX_SIZE))
    return fixed + rest, rest[:info_len], rest[info_len:info_len + SALT_SIZE], rest[-NONCE_PREFIX_SIZE:]


def _layout(read_at: ReadAt, ciphertext_size: int) -> _Layout:
    header, _info, salt, prefix = _read_header(read_at)
    body = ciphertext_size - len(header)
    if body < TAG_SIZE:
        raise DecryptionError("truncated: the final segment is missing")
    segments = -(-body // _CT_SEGMENT)
    last = body - (segments - 1) * _CT_SEGMENT
    if last < TAG_SIZE or (last == TAG_SIZE and segments > 1) or segments > MAX_SEGMENTS:
        raise DecryptionError("truncated or extended: the ciphertext size fits no OBX1 file")
    return _Layout(header, salt, prefix, ciphertext_size, segments, body - segments * TAG_SIZE)


def read_info(read_at: ReadAt) -> bytes:
    """The caller's ``info`` blob, readable without the key (unauthenticated until a segment decrypts)."""
    return _read_header(read_at)[1]


def plaintext_size(read_at: ReadAt, ciphertext_size: int) -> int:
    """The plaintext size implied by the ciphertext size (confirmed only by reading the final segment)."""
    return _layout(read_at, ciphertext_size).plaintext_size


def ciphertext_size(plaintext_len: int, info_len: int) -> int:
    """The size of the file that ``plaintext_len`` bytes with an ``info_len``-byte info encrypt to."""
    segments = max(1, -(-plaintext_len // SEGMENT_SIZE))
    return _FIXED.size + info_len + SALT_SIZE + NONCE_PREFIX_SIZE + plaintext_len + segments * TAG_SIZE


def decrypt_range(read_at: ReadAt, ciphertext_size: int, key: bytes, start: int, stop: int
                  ) -> Iterator[bytes]:
    """Yield plaintext [start, stop) (stop clamped to the end), reading only the covering segments.

    One piece per READ_SEGMENTS segments (1 MiB), yielded once all of them have authenticated:
    a server then makes one write per MiB, not per 64 KiB, with a sixteenth of the system
    calls and thread hand-overs (docs/performance.md, "Download"). A range that does not reach
    the end does not prove the rest of the file intact (read to the end for that).
    """
    if start < 0 or stop < start:
        raise ValueError("need 0 <= start <= stop")
    layout = _layout(read_at, ciphertext_size)
    aead = _segment_aead(key, layout.header, layout.salt)
    stop = min(stop, layout.plaintext_size)
    if layout.plaintext_size == 0:  # the file is its one empty final segment: check it anyway
        _open(aead, layout.prefix, 0, True, _read_exact(read_at, *layout.segment_span(0, 1)))
        return
    if start >= stop:
        return
    first, last = start // SEGMENT_SIZE, (stop - 1) // SEGMENT_SIZE
    for batch in range(first, last + 1, READ_SEGMENTS):
        batch_stop = min(batch + READ_SEGMENTS, last + 1)
        data = memoryview(_read_exact(read_at, *layout.segment_span(batch, batch_stop)))
        pieces: list[bytes] = []
        for index in range(batch, batch_stop):
            at = (index - batch) * _CT_SEGMENT
            plain = _open(aead, layout.prefix, index, index == layout.segments - 1,
                          data[at:at + _CT_SEGMENT])
            lo = start - index * SEGMENT_SIZE if index == first else 0
            hi = stop - index * SEGMENT_SIZE if index == last else len(plain)
            pieces.append(plain if (lo, hi) == (0, len(plain)) else plain[lo:hi])
        yield b"".join(pieces)


class EncryptingWriter(io.RawIOBase):
    """A write-only file object that encrypts as it goes; ``close()`` seals the final segment.

    Leaving a ``with`` block on an exception, or dropping the writer unclosed, does NOT seal:
    the file then lacks its final segment and can never decrypt as if complete.
    ``tell()`` is the plaintext position (what pyarrow.PythonFile expects).
    """

    def __init__(self, dst: BinaryIO, key: bytes, info: bytes, *, close_dst: bool = False) -> None:
        super().__init__()
        self._dst, self._close_dst = dst, close_dst
        self._buffer = bytearray()
        if len(info) > MAX_INFO_SIZE:
            raise ValueError(f"info is limited to {MAX_INFO_SIZE} bytes")
        salt, self._prefix = os.urandom(SALT_SIZE), os.urandom(NONCE_PREFIX_SIZE)
        header = _FIXED.pack(MAGIC, len(info)) + info + salt + self._prefix
        self._aead = _segment_aead(key, header, salt)
        self._index = self._plain = 0
        dst.write(header)
        self.bytes_written = len(header)  # ciphertext bytes so far

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._plain

    def write(self, data: BytesLike) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("write to a closed EncryptingWriter")
        view = memoryview(data).cast("B")
        size, pos, buffer = len(view), 0, self._buffer
        while pos < size:
            if len(buffer) == SEGMENT_SIZE:  # more data follows, so it is not the final segment
                self._seal(buffer, last=False)
                buffer.clear()
            if not buffer:  # whole segments straight from the caller's buffer, no copy
                while size - pos > SEGMENT_SIZE:
                    self._seal(view[pos:pos + SEGMENT_SIZE], last=False)
                    pos += SEGMENT_SIZE
            take = min(SEGMENT_SIZE - len(buffer), size - pos)
            buffer += view[pos:pos + take]
            pos += take
        self._plain += size
        return size

    def _seal(self, chunk: BytesLike, *, last: bool) -> None:
        if self._index >= MAX_SEGMENTS:
            raise ValueError("the plaintext is too large for one OBX1 file")
        sealed = self._aead.encrypt(self._prefix + _NONCE_TAIL.pack(self._index, last), chunk, None)
        self._dst.write(sealed)
        self._index += 1
        self.bytes_written += len(sealed)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._seal(self._buffer, last=True)
            self._buffer.clear()
            self._dst.flush()
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Close without sealing: the output stays incomplete and will not decrypt as complete."""
        if not self.closed:
            self._buffer.clear()
            super().close()
            if self._close_dst:
                self._dst.close()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    def __del__(self) -> None:
        self.abandon()


def encrypt_stream(src: BinaryIO, dst: BinaryIO, key: bytes, info: bytes) -> int:
    """Encrypt all of ``src`` into ``dst`` in bounded memory; returns the ciphertext bytes written."""
    writer = EncryptingWriter(dst, key, info)
    try:
        while chunk := src.read(READ_SEGMENTS * SEGMENT_SIZE):
            writer.write(chunk)
    except BaseException:
        writer.abandon()
        raise
    writer.close()
    return writer.bytes_written


class DecryptingReader(io.RawIOBase):
    """A readable, seekable plaintext view over ``read_at`` for sequential consumers (pyarrow.ipc).

    Reads READ_SEGMENTS of ciphertext ahead and keeps one decrypted segment. Reaching the end
    first authenticates the final segment, so a clean EOF means the file was not cut.
    """

    def __init__(self, read_at: ReadAt, ciphertext_size: int, key: bytes) -> None:
        super().__init__()
        self._read_at = read_at
        self._layout = _layout(read_at, ciphertext_size)
        self._aead = _segment_aead(key, self._layout.header, self._layout.salt)
        self._pos = 0
        self._batch_first, self._batch = 0, memoryview(b"")
        self._index, self._segment = -1, b""
        self._final_ok = False

    @property
    def plaintext_size(self) -> int:
        return self._layout.plaintext_size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.plaintext_size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def _decrypted(self, index: int) -> bytes:
        if index != self._index:
            at = (index - self._batch_first) * _CT_SEGMENT
            if not (0 <= at < len(self._batch)):
                stop = min(index + READ_SEGMENTS, self._layout.segments)
                self._batch = memoryview(_read_exact(self._read_at, *self._layout.segment_span(index, stop)))
                self._batch_first, at = index, 0
            self._index, self._segment = -1, b""  # never keep a stale segment if this one fails
            self._segment = _open(self._aead, self._layout.prefix, index,
                                  index == self._layout.segments - 1, self._batch[at:at + _CT_SEGMENT])
            self._index = index
            self._final_ok = self._final_ok or index == self._layout.segments - 1
        return self._segment

    def readinto(self, buffer: BytesLike) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self.plaintext_size:
            index, offset = divmod(self._pos, SEGMENT_SIZE)
            segment = self._decrypted(index)
            take = min(len(segment) - offset, len(view) - done)
            view[done:done + take] = segment[offset:offset + take]
            done += take
            self._pos += take
        if self._pos >= self.plaintext_size and not self._final_ok:
            self._decrypted(self._layout.segments - 1)  # EOF only once the final segment holds
        return done

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self.plaintext_size - self._pos)
        buffer = bytearray(size)
        del buffer[self.readinto(buffer):]
        return bytes(buffer)

    def readall(self) -> bytes:
        return self.read(-1)
