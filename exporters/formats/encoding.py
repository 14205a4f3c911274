"""What every writer shares: files that appear under their final name only once complete, and
Arrow values rendered as exact text, column at a time (pyarrow.compute, no per-row Python).

Text renderings, the same in CSV and JSON so that a value reads alike in both:

* timestamps: ISO 8601 with ``T`` and every digit of the column's unit
  (``2024-03-31T01:30:00.000000``); UTC columns end in ``Z``, other zones carry their offset
  (``+02:00``), naive columns carry none;
* dates ``YYYY-MM-DD``; times ``HH:MM:SS.ffffff`` (the unit's digits);
* decimals: plain notation with every digit of the scale (``0.10``, never ``1E-1``);
* binary: standard base64 with padding (RFC 4648);
* intervals: ISO 8601 durations as PostgreSQL's ``iso_8601`` IntervalStyle writes them,
  ``P1Y2M-3DT4H5M6.789S``: each part carries its own sign, zero parts are left out, a zero
  interval is ``PT0S``, seconds keep up to nine fractional digits, and months, days and time
  stay apart as stored (a month is never folded into days); durations likewise (``PT1.5S``);
* lists and structs: JSON arrays and objects, rendered by ``jsonl``.

Little-endian machines only (``interval_parts`` reads Arrow's buffers in place).
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import zlib
from base64 import b64encode
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol

import pyarrow as pa
import pyarrow.compute as pc

CHUNK_ROWS = 65_536
CHUNK_BYTES = 4 << 20  # input bytes per chunk: bounded memory, and text far below 2 GiB string offsets
NULL_TEXT = pa.scalar(None, pa.string())
_UTC = {"UTC", "Etc/UTC", "+00:00"}


@dataclass(frozen=True)
class OutputFile:
    name: str  # file name inside dest_dir
    format: str  # "csv" | "jsonl" | "json" | "parquet"
    rows: int
    bytes: int
    sha256: str  # hex digest of the file's bytes
    crc32: int = 0  # of the file's bytes, as a ZIP member needs it
    compressed_bytes: int | None = None  # bytes on disk when stored as raw deflate data


class Compressor(Protocol):
    """What a FileSet writes through when asked to compress (``zipstream.Deflater``)."""

    compressed_bytes: int

    def write(self, data: bytes | memoryview | pa.Buffer) -> int: ...
    def close(self) -> None: ...
    def abandon(self) -> None: ...


@dataclass(frozen=True)
class Storing:
    """How a FileSet keeps its files. The default, plain and synced, is what a customer opens.
    The bundle asks for raw deflate data (``compress``: the body of a ZIP member, made while
    the text is rendered) and no fsync: its work files are private, never published, and
    rebuilt from the staging files if the worker dies."""

    compress: Callable[[BinaryIO], Compressor] | None = None
    durable: bool = True


PLAIN = Storing()


class Sink:
    """A file being written: every byte is counted, hashed and CRC'd on its way out, so neither
    the manifest nor the ZIP ever reads a file back. Also the file object pyarrow's writers are
    given."""

    def __init__(self, file: BinaryIO, temp: Path, name: str, format: str,
                 storing: Storing = PLAIN) -> None:
        self._file, self.temp, self.name, self.format = file, temp, name, format
        self._durable = storing.durable
        self._compressor = storing.compress(file) if storing.compress is not None else None
        self.rows = 0
        self.bytes = 0
        self._sha = hashlib.sha256()
        self._crc = 0

    def write(self, data: bytes | memoryview | pa.Buffer) -> int:
        view = memoryview(data).cast("B")
        if self._compressor is not None:
            self._compressor.write(data)  # an immutable buffer is deflated without a copy
        else:
            self._file.write(view)
        self._sha.update(view)
        self._crc = zlib.crc32(view, self._crc)
        self.bytes += view.nbytes
        return view.nbytes

    @property
    def closed(self) -> bool:
        return self._file.closed

    def tell(self) -> int:
        return self.bytes

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        """Kept open: the FileSet that owns the file syncs and closes it (pyarrow calls this)."""

    def finish(self) -> OutputFile:
        compressed = None
        if self._compressor is not None:
            self._compressor.close()
            compressed = self._compressor.compressed_bytes
        self._file.flush()
        if self._durable:
            os.fsync(self._file.fileno())
        self._file.close()
        return OutputFile(self.name, self.format, self.rows, self.bytes, self._sha.hexdigest(),
                          self._crc, compressed)

    def discard(self) -> None:
        if self._compressor is not None:
            self._compressor.abandon()
        if not self._file.closed:
            self._file.close()
        self.temp.unlink(missing_ok=True)


class FileSet:
    """Files written under hidden temporary names and renamed into place together once all are
    complete (and, unless told otherwise, synced): an error or a crash never leaves a partial
    file under a final name."""

    def __init__(self, dest_dir: Path, storing: Storing = PLAIN) -> None:
        self.dest_dir = Path(dest_dir)
        self.storing = storing
        self.sinks: list[Sink] = []
        self.outputs: list[OutputFile] = []

    def open(self, name: str, format: str) -> Sink:
        if Path(name).name != name or name.startswith("."):  # a dataset name is not a path
            raise ValueError(f"{name!r} is not a plain file name")
        fd, temp = tempfile.mkstemp(prefix=f".{name}.tmp-", dir=self.dest_dir)
        sink = Sink(os.fdopen(fd, "wb"), Path(temp), name, format, self.storing)
        self.sinks.append(sink)
        return sink

    def __enter__(self) -> FileSet:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if kind is None:
                outputs = [sink.finish() for sink in self.sinks]
                for sink in self.sinks:
                    os.replace(sink.temp, self.dest_dir / sink.name)
                if self.storing.durable:
                    _sync_directory(self.dest_dir)
                self.outputs = outputs
        finally:
            for sink in self.sinks:
                sink.discard()  # after the renames only the failed run's leftovers remain


@contextmanager
def system_allocator() -> Iterator[None]:
    """Arrow allocates from the system allocator (glibc) inside, and what it kept goes back to
    the system on the way out. Why: mimalloc, pyarrow's default, keeps the freed pages of the
    batch and text buffers per thread; the benchmark's bundle worker peaked ~30 MB higher with
    it, at the same speed. Buffers remember the pool they came from, so restoring the default
    afterwards is safe, and nesting (writers inside the bundle) is harmless."""
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)
        release_memory()


def release_memory() -> None:
    """Give the memory Arrow's allocator keeps for reuse back to the system (glibc:
    ``malloc_trim``; mimalloc: a collection), between the phases of a job: otherwise what one
    phase freed stays in the worker's RSS while the next allocates its own."""
    pa.default_memory_pool().release_unused()


def _sync_directory(path: Path) -> None:
    """Make the renames durable too (POSIX only: a directory cannot be opened on Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def chunks(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """The reader's batches cut to bounded slices, whatever batch size the source picked."""
    for batch in reader:
        if batch.num_rows == 0:
            continue
        per_row = max(1, batch.nbytes // batch.num_rows)
        step = max(1, min(CHUNK_ROWS, CHUNK_BYTES // per_row))
        for start in range(0, batch.num_rows, step):
            yield batch.slice(start, step)


def concat(*parts: pa.Array | str) -> pa.Array:
    """Arrays and literals (at least one array) concatenated row by row; a null makes a null."""
    return pc.binary_join_element_wise(*parts, "")


def string_data(array: pa.Array) -> pa.Buffer:
    """The values of a string array without nulls, back to back, as they lie in its data buffer."""
    _, offsets, data = array.buffers()
    (first,) = struct.unpack_from("<i", offsets, 4 * array.offset)
    (last,) = struct.unpack_from("<i", offsets, 4 * (array.offset + len(array)))
    return data.slice(first, last - first)


def temporal_text(array: pa.Array) -> pa.Array:
    """Timestamps, dates and times in ISO 8601."""
    kind = array.type
    if not pa.types.is_timestamp(kind):
        return array.cast(pa.string())
    if kind.tz in _UTC:  # the zone-free cast is ~20x faster than rendering through a time zone
        naive = array.cast(pa.timestamp(kind.unit)).cast(pa.string())
        return concat(pc.replace_substring(naive, " ", "T", max_replacements=1), "Z")
    text = pc.replace_substring(array.cast(pa.string()), " ", "T", max_replacements=1)
    return text if kind.tz is None else pc.replace_substring_regex(text, r"([+-]\d\d)(\d\d)$", r"\1:\2")


def decimal_text(array: pa.Array) -> pa.Array:
    """Plain notation with the full scale; pyarrow writes tiny values in E notation."""
    text = array.cast(pa.string())
    exponent = pc.match_substring(text, "E").fill_null(False)
    if pc.any(exponent).as_py():
        plain = [format(value, "f") for value in array.filter(exponent).to_pylist()]
        text = pc.replace_with_mask(text, exponent, pa.array(plain, pa.string()))
    return text


def base64_text(array: pa.Array) -> pa.Array:
    """Binary as base64: one Python call per value, as pyarrow has no base64 kernel."""
    return pa.array([None if value is None else b64encode(value).decode("ascii")
                     for value in array.to_pylist()], pa.string())


def interval_parts(array: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(months, days, nanoseconds) of a month_day_nano_interval array, read in place: its values
    are 16-byte little-endian (int32, int32, int64) records that no kernel takes apart."""
    size = array.offset + len(array)
    data = array.buffers()[1]
    ints = pa.FixedSizeListArray.from_arrays(pa.Array.from_buffers(pa.int32(), 4 * size, [None, data]), 4)
    longs = pa.FixedSizeListArray.from_arrays(pa.Array.from_buffers(pa.int64(), 2 * size, [None, data]), 2)
    ints, longs = ints.slice(array.offset, len(array)), longs.slice(array.offset, len(array))
    return pc.list_element(ints, 0), pc.list_element(ints, 1), pc.list_element(longs, 1)


def interval_text(array: pa.Array) -> pa.Array:
    """Intervals and durations as ISO 8601 durations (see the module docstring)."""
    if len(array) == 0:
        return pa.array([], pa.string())
    if pa.types.is_duration(array.type):
        nanos = array.cast(pa.duration("ns")).cast(pa.int64())
        date: list[pa.Array | str] = []
    else:
        months, days, nanos = interval_parts(array)
        years = pc.divide(months, 12)  # truncates toward zero, like PostgreSQL
        date = [_part(years, "Y"), _part(pc.subtract(months, pc.multiply(years, 12)), "M"),
                _part(days, "D")]
    hours = pc.divide(nanos, 3_600_000_000_000)
    rest = pc.subtract(nanos, pc.multiply(hours, 3_600_000_000_000))
    minutes = pc.divide(rest, 60_000_000_000)
    rest = pc.subtract(rest, pc.multiply(minutes, 60_000_000_000))
    whole = pc.divide(rest, 1_000_000_000)
    fraction = pc.abs(pc.subtract(rest, pc.multiply(whole, 1_000_000_000)))
    digits = pc.utf8_rtrim(pc.utf8_lpad(fraction.cast(pa.string()), 9, "0"), "0")
    sign = pc.if_else(pc.and_(pc.less(rest, 0), pc.equal(whole, 0)), "-", "")  # -0.5 s has no -0
    seconds = concat(sign, whole.cast(pa.string()),
                     pc.if_else(pc.equal(fraction, 0), "", concat(".", digits)), "S")
    time = concat(_part(hours, "H"), _part(minutes, "M"), pc.if_else(pc.equal(rest, 0), "", seconds))
    text = concat("P", *date, pc.if_else(pc.equal(time, ""), "", concat("T", time)))
    text = pc.if_else(pc.equal(text, "P"), "PT0S", text)
    return pc.if_else(array.is_valid(), text, NULL_TEXT)


def _part(value: pa.Array, unit: str) -> pa.Array:
    return pc.if_else(pc.equal(value, 0), "", concat(value.cast(pa.string()), unit))


def is_binary_like(kind: pa.DataType) -> bool:
    types = pa.types
    return (types.is_binary(kind) or types.is_large_binary(kind) or types.is_fixed_size_binary(kind)
            or types.is_binary_view(kind))


def is_list_like(kind: pa.DataType) -> bool:
    types = pa.types
    return (types.is_list(kind) or types.is_large_list(kind) or types.is_fixed_size_list(kind)
            or types.is_list_view(kind) or types.is_large_list_view(kind))


def is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def is_span(kind: pa.DataType) -> bool:
    """Intervals and durations: both read as ISO 8601 durations."""
    return pa.types.is_interval(kind) or pa.types.is_duration(kind)
