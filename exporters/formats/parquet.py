"""Parquet (``stem.parquet``): the Arrow schema kept exactly — decimals with their precision and
scale, timestamps with their unit and time zone, field metadata — so that reading the file back
with pyarrow gives values and types equal to the source's.

zstd compression; row groups of ``ROW_GROUP_ROWS`` rows (the last one shorter), accumulated
from the source's batches so small batches do not make small row groups, and memory stays
bounded by one row group.

The one exception to "types kept": Parquet has no month/day/nanosecond interval. Such a column
is stored as ``struct<months: int32, days: int32, nanoseconds: int64>`` (exact, and readable
by any Parquet reader), and its field metadata says what it was:
``offboard.arrow_type = month_day_nano_interval``. Lists and structs holding intervals likewise.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exporters.formats.encoding import FileSet, OutputFile, interval_parts

ROW_GROUP_ROWS = 131_072
ARROW_TYPE_KEY = b"offboard.arrow_type"
INTERVAL = pa.struct([("months", pa.int32()), ("days", pa.int32()), ("nanoseconds", pa.int64())])


def write_parquet(reader: pa.RecordBatchReader, dest_dir: Path, stem: str) -> list[OutputFile]:
    """``stem.parquet``, written row group by row group."""
    schema = storable_schema(reader.schema)
    convert = not schema.equals(reader.schema, check_metadata=True)
    with FileSet(dest_dir) as files:
        sink = files.open(f"{stem}.parquet", "parquet")
        # Arrow's own list item names ("item"), not Parquet's "element": read back equal
        with pq.ParquetWriter(sink, schema, compression="zstd", use_compliant_nested_type=False) as writer:
            pending: list[pa.RecordBatch] = []
            waiting = 0
            for batch in reader:
                pending.append(_storable_batch(batch, schema) if convert else batch)
                waiting += batch.num_rows
                if waiting >= ROW_GROUP_ROWS:
                    table = pa.Table.from_batches(pending, schema)
                    full = waiting - waiting % ROW_GROUP_ROWS
                    writer.write_table(table.slice(0, full), row_group_size=ROW_GROUP_ROWS)
                    pending, waiting = table.slice(full).to_batches(), waiting - full
                    sink.rows += full
            if waiting:
                writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=ROW_GROUP_ROWS)
                sink.rows += waiting
    return files.outputs


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
