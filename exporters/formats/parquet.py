"""Parquet (``stem.parquet``): the Arrow schema kept exactly — decimals with their precision and
scale, timestamps with their unit and time zone, field metadata — so that reading the file back
with pyarrow gives values and types equal to the source's.

zstd compression. Row groups hold ``ROW_GROUP_ROWS`` rows, or fewer when their values would
pass ``ROW_GROUP_BYTES`` (text counted by its length), the last one shorter; they are gathered
from the source's batches, so small batches do not make small row groups, and memory stays
bounded by one row group however wide the rows. Where a group ends depends on the rows only,
never on how they were batched. Dictionary encoding only for the columns whose values repeat
(``dictionary_columns``).

The one exception to "types kept": Parquet has no month/day/nanosecond interval. Such a column
is stored as ``struct<months: int32, days: int32, nanoseconds: int64>`` (exact, and readable
by any Parquet reader), and its field metadata says what it was:
``offboard.arrow_type = month_day_nano_interval``. Lists and structs holding intervals likewise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exporters.formats.encoding import PLAIN, FileSet, OutputFile, Storing, interval_parts, system_allocator

ROW_GROUP_ROWS = 131_072
ROW_GROUP_BYTES = 16 << 20  # values per row group, so a wide table's groups stay bounded too
DICTIONARY_BYTES = 1 << 20  # Parquet's dictionary_pagesize_limit: a bigger dictionary falls back
DISTINCT_SHARE = 0.25  # a dictionary pays when each value comes back four times on average
DISTINCT_PIECE = 4096  # rows of text hashed at a time while counting its distinct values
ARROW_TYPE_KEY = b"offboard.arrow_type"
INTERVAL = pa.struct([("months", pa.int32()), ("days", pa.int32()), ("nanoseconds", pa.int64())])


def write_parquet(reader: pa.RecordBatchReader, dest_dir: Path, stem: str, *,
                  storing: Storing = PLAIN) -> list[OutputFile]:
    """``stem.parquet``, written row group by row group."""
    schema = storable_schema(reader.schema)
    convert = not schema.equals(reader.schema, check_metadata=True)
    with system_allocator(), FileSet(dest_dir, storing) as files:
        sink = files.open(f"{stem}.parquet", "parquet")
        writer: pq.ParquetWriter | None = None

        def open_writer(first: pa.Table) -> pq.ParquetWriter:
            # Arrow's own list item names ("item"), not Parquet's "element": read back equal
            return pq.ParquetWriter(sink, schema, compression="zstd", use_compliant_nested_type=False,
                                    use_dictionary=dictionary_columns(first))

        groups = _RowGroups(schema)
        try:
            for batch in reader:
                for group in groups.add(_storable_batch(batch, schema) if convert else batch):
                    writer = writer or open_writer(group)
                    writer.write_table(group, row_group_size=group.num_rows)
                    sink.rows += group.num_rows
                    del group  # else it holds this row group while the next one gathers (2x memory)
            last = groups.finish()
            writer = writer or open_writer(last)
            if last.num_rows:
                writer.write_table(last, row_group_size=last.num_rows)
                sink.rows += last.num_rows
        finally:
            if writer is not None:
                writer.close()
    return files.outputs


class _RowGroups:
    """Cuts the rows into row groups of at most ROW_GROUP_ROWS rows and ROW_GROUP_BYTES of values
    (a row larger than that gets a group of its own), by the rows' own sizes: where a group ends
    never depends on how the rows were batched. Without a size (nested columns), by rows only."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.sized = all(_width(field.type) is not None for field in schema)
        self.pending: list[pa.RecordBatch] = []
        self.rows = self.bytes = 0

    def add(self, batch: pa.RecordBatch) -> Iterator[pa.Table]:
        """The groups this batch completes."""
        sizes = _row_bytes(batch) if self.sized else None
        start = 0
        while start < batch.num_rows:
            room = min(ROW_GROUP_ROWS - self.rows, batch.num_rows - start)
            take, full = room, self.rows + room == ROW_GROUP_ROWS
            if sizes is not None:
                spent = pc.cumulative_sum(sizes.slice(start, room))
                take = pc.sum(pc.less_equal(spent, ROW_GROUP_BYTES - self.bytes)).as_py() or 0
                take = take or (0 if self.rows else 1)  # a single huge row: a group of its own
                full = full or take < room
                self.bytes += spent[take - 1].as_py() if take else 0
            if take:
                self.pending.append(batch.slice(start, take))
                self.rows += take
                start += take
            if full:
                yield self.finish()

    def finish(self) -> pa.Table:
        """The rows gathered so far, as one group (maybe empty), and start anew."""
        group = pa.Table.from_batches(self.pending, self.schema)
        self.pending, self.rows, self.bytes = [], 0, 0
        return group


def _width(kind: pa.DataType) -> int | None:
    """Bytes a value takes, 0 for text (measured per value), None when not simply known."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind):
        return 0
    if pa.types.is_boolean(kind) or pa.types.is_null(kind):
        return 1
    try:
        return kind.byte_width  # type: ignore[no-any-return]
    except ValueError:
        return None


def _row_bytes(batch: pa.RecordBatch) -> pa.Array:
    """Each row's values in bytes: fixed widths plus the lengths of its texts."""
    total: pa.Array | int = sum(_width(column.type) or 0 for column in batch.columns)
    for column in batch.columns:
        if _width(column.type) == 0:
            total = pc.add(total, pc.binary_length(column).cast(pa.int64()).fill_null(0))
    if isinstance(total, int):
        return pa.array([total] * batch.num_rows, pa.int64())
    return total


def dictionary_columns(first: pa.Table) -> bool | list[str]:
    """The columns that get a dictionary: those whose values repeat in the first row group (at
    most a quarter of them distinct) and whose distinct values fit in one dictionary page
    (DICTIONARY_BYTES, Parquet's own limit). Others (ids, times, amounts, JSON documents,
    notes) are written plain: Parquet would start a dictionary and fall back, after holding
    ~25 MB per row group for it, or keep one that saves nothing; the file is smaller without.
    Decided on the first row group only, so the same rows always give the same file. Nested
    columns or dotted names (paths Parquet would not match): every column, as Parquet does."""
    if first.num_rows == 0 or any(pa.types.is_nested(field.type) or "." in field.name
                                  for field in first.schema):
        return True
    chosen = [field.name for field, column in zip(first.schema, first.columns, strict=True)
              if _repeats(column)]
    return True if len(chosen) == first.num_columns else chosen


def _repeats(column: pa.ChunkedArray) -> bool:
    """Whether the column's distinct values are few (DISTINCT_SHARE) and small (DICTIONARY_BYTES).
    Fixed-width values are counted in one go (their hash table is small); text is gathered
    DISTINCT_PIECE rows at a time and abandoned as soon as it is too much, so a column of unique
    JSON documents costs a few MB, not the size of the row group. The answer does not depend on
    how the rows were batched."""
    most = (len(column) - column.null_count) * DISTINCT_SHARE
    try:
        width = column.type.byte_width
    except ValueError:  # variable width
        width = 0
    try:
        if width:
            distinct = pc.count_distinct(column).as_py()
            return distinct <= most and distinct * width < DICTIONARY_BYTES
        seen: pa.Array | None = None
        for start in range(0, len(column), DISTINCT_PIECE):
            piece = pc.unique(column.slice(start, DISTINCT_PIECE))
            seen = piece if seen is None else pc.unique(pa.concat_arrays([seen, piece]))
            if len(seen) - seen.null_count > most or seen.nbytes >= DICTIONARY_BYTES:
                return False
    except pa.ArrowNotImplementedError:
        return True  # a type without a hash kernel: leave it to Parquet
    return True


def storable_schema(schema: pa.Schema) -> pa.Schema:
    """The schema with what Parquet cannot hold replaced, each replaced field tagged."""
    fields = []
    for field in schema:
        stored = _storable_type(field.type)
        tagged = {**(field.metadata or {}), ARROW_TYPE_KEY: str(field.type).encode()}
        fields.append(field if stored == field.type else pa.field(field.name, stored, field.nullable, tagged))
    return pa.schema(fields, metadata=schema.metadata)


def _storable_type(kind: pa.DataType) -> pa.DataType:
    if kind == pa.month_day_nano_interval():
        return INTERVAL
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        item = kind.value_field
        wrap = pa.large_list if pa.types.is_large_list(kind) else pa.list_
        return wrap(item.with_type(_storable_type(item.type)))
    if pa.types.is_struct(kind):
        return pa.struct([field.with_type(_storable_type(field.type)) for field in kind])
    return kind


def _storable_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    columns = [_storable(column) if field.type != column.type else column
               for field, column in zip(schema, batch.columns, strict=True)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _storable(array: pa.Array) -> pa.Array:
    kind = array.type
    if kind == _storable_type(kind):
        return array
    if kind == pa.month_day_nano_interval():
        if len(array) == 0:
            return pa.array([], INTERVAL)
        return pa.StructArray.from_arrays(list(interval_parts(array)), fields=list(INTERVAL),
                                          mask=array.is_null())
    if pa.types.is_struct(kind):
        return pa.StructArray.from_arrays([_storable(array.field(i)) for i in range(kind.num_fields)],
                                          fields=list(_storable_type(kind)), mask=array.is_null())
    offsets = array.offsets  # a list: its items converted, its offsets and nulls kept
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    items = _storable(array.values.slice(first, last - first))
    cls = pa.LargeListArray if pa.types.is_large_list(kind) else pa.ListArray
    return cls.from_arrays(pc.subtract(offsets, first), items, type=_storable_type(kind),
                           mask=array.is_null())
