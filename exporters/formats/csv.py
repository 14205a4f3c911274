"""CSV (RFC 4180): ``stem.csv``, or ``stem.part-0001.csv``, ``stem.part-0002.csv``, ... when the
rows do not fit in ``max_part_bytes``; every part starts with the header row.

Conventions:

* UTF-8 without a byte order mark; records end in CRLF, as RFC 4180 says; ``,`` separates;
* the header holds the column names, each quoted;
* NULL is an empty unquoted field; every non-null text value is quoted, so the empty string
  is ``""`` and differs from NULL. Values rendered as text here (decimals, timestamps, binary,
  intervals, lists) are quoted too; numbers, booleans, dates and times are not;
* inside quotes a ``"`` is doubled and commas, CR and LF stay as they are (readers must honour
  quoted line breaks, as RFC 4180 readers do). So in a one-column file a NULL row is an empty
  line, which some readers skip (Python's ``csv`` returns ``[]``): the manifest's row count
  tells;
* booleans ``true``/``false``; integers in decimal digits;
* floats: shortest digits that read back to the same float (``0.1``, ``1e+20``, ``-0``);
  ``nan``, ``inf``, ``-inf`` for the non-finite ones (Python's ``float()`` reads them all);
* decimals in plain notation with every digit of their scale (``12.50``);
* timestamps ISO 8601 (``2024-03-31T01:30:00.000000Z`` for UTC, ``+02:00`` for another zone,
  no suffix for naive columns), dates ``YYYY-MM-DD``, times ``HH:MM:SS.ffffff``;
* binary is base64; intervals ISO 8601 durations (``P1Y2M-3DT4H5M6.789S``, see ``encoding``);
* lists and structs are JSON text, with the conventions of the JSON writers.

Values are written as they are: nothing is prefixed to defuse spreadsheet formulas, since the
export must be exact.

Speed: pyarrow's C++ CSV writer renders everything; only the types it would not render
exactly or conventionally (timestamps, decimals, binary, intervals, lists) are converted to
text first, column at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from exporters.formats.encoding import (
    PLAIN,
    FileSet,
    OutputFile,
    Sink,
    Storing,
    base64_text,
    chunks,
    decimal_text,
    interval_text,
    is_binary_like,
    is_list_like,
    is_span,
    system_allocator,
    temporal_text,
)
from exporters.formats.jsonl import is_json_text, json_values

_ROWS = pacsv.WriteOptions(include_header=False, eol="\r\n", quoting_style="needed")
_HEADER = pacsv.WriteOptions(include_header=True, eol="\r\n", quoting_style="needed",
                             quoting_header="needed")


def write_csv(reader: pa.RecordBatchReader, dest_dir: Path, stem: str, *,
              max_part_bytes: int = 1 << 30, storing: Storing = PLAIN) -> list[OutputFile]:
    """The dataset as CSV, in parts of at most ``max_part_bytes`` (a part is larger only when
    a single row is)."""
    if max_part_bytes < 1:
        raise ValueError(f"max_part_bytes must be positive, not {max_part_bytes}")
    empty = pa.RecordBatch.from_pylist([], schema=reader.schema)
    with system_allocator(), FileSet(dest_dir, storing) as files:
        parts = _Parts(files, stem, max_part_bytes, _render(csv_ready(empty), _HEADER))
        for chunk in chunks(reader):
            parts.add(csv_ready(chunk))
        parts.name_them()
    return files.outputs


def csv_ready(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with every column pyarrow's writer would not render by the conventions as text."""
    fields, columns = [], []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        converted = _column(column, field)
        fields.append(field if converted is column else pa.field(field.name, converted.type,
                                                                   metadata=field.metadata))
        columns.append(converted)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def _column(array: pa.Array, field: pa.Field) -> pa.Array:
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    for accepts, convert in _CONVERSIONS:
        if accepts(array.type):
            return convert(array, field)
    return array  # pyarrow renders it by the conventions already: numbers, booleans, text, ...


# What pyarrow's writer would not render exactly or conventionally, and its text instead
_CONVERSIONS: tuple[tuple[Callable[[pa.DataType], bool], Callable[[pa.Array, pa.Field], pa.Array]], ...] = (
    (lambda kind: pa.types.is_timestamp(kind) or pa.types.is_date64(kind),  # "T", not " "
     lambda array, _: temporal_text(array)),
    (pa.types.is_decimal, lambda array, _: decimal_text(array)),  # never E notation
    (is_binary_like, lambda array, _: base64_text(array)),  # raw bytes are not text
    (is_span, lambda array, _: interval_text(array)),  # no rendering at all
    (lambda kind: is_list_like(kind) or pa.types.is_struct(kind),
     lambda array, field: json_values(array, is_json_text(field))),
    (pa.types.is_string_view, lambda array, _: array.cast(pa.string())),
    (pa.types.is_float16, lambda array, _: array.cast(pa.float32())),
)


def _render(batch: pa.RecordBatch, options: pacsv.WriteOptions = _ROWS) -> pa.Buffer:
    out = pa.BufferOutputStream()
    pacsv.write_csv(batch, out, options)
    return out.getvalue()


class _Parts:
    """The part files of one dataset; rows go to the current part until it would overflow."""

    def __init__(self, files: FileSet, stem: str, max_bytes: int, header: pa.Buffer) -> None:
        self.files, self.stem, self.max_bytes, self.header = files, stem, max_bytes, header
        self.parts: list[Sink] = []
        self.row_bytes = 0.0  # mean size of the rows rendered last: how many fit in what is left
        self._start()

    def _start(self) -> None:
        part = self.files.open(f"{self.stem}.part-{len(self.parts) + 1:04d}.csv", "csv")
        part.write(self.header)
        self.parts.append(part)

    def add(self, batch: pa.RecordBatch) -> None:
        while batch.num_rows:
            part = self.parts[-1]
            room = self.max_bytes - part.bytes
            rows = batch.num_rows
            if self.row_bytes:  # as many as should fit, by the size of the rows so far
                rows = min(rows, max(1, int(room / self.row_bytes)))
            data = _render(batch.slice(0, rows))
            while data.size > room and rows > 1:  # fewer rows, in proportion, until they fit
                rows = max(1, min(rows - 1, rows * room // data.size))
                data = _render(batch.slice(0, rows))
            if data.size > room and part.rows:  # not even one more row fits: the next part
                self._start()
                continue
            part.write(data)  # fits, or a single row larger than any part gets one of its own
            part.rows += rows
            self.row_bytes = data.size / rows
            batch = batch.slice(rows)

    def name_them(self) -> None:
        """One part is simply ``stem.csv``; the names are final only now that the count is."""
        if len(self.parts) == 1:
            self.parts[0].name = f"{self.stem}.csv"
