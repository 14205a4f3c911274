"""The format writers: every value reads back exactly under the documented conventions, files
appear only when complete, and the same input always gives the same bytes.

CSV is read back with Python's ``csv`` module (plus a small tokenizer that also reports whether
a field was quoted, which 3.11's ``csv`` cannot: NULL is the empty *unquoted* field), JSON with
``json``, Parquet with pyarrow.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import tempfile
from base64 import b64decode
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporters.formats import WRITERS, OutputFile, write_csv, write_json, write_jsonl, write_parquet
from exporters.formats.parquet import ARROW_TYPE_KEY, storable_schema

JSON_TEXT = {b"offboard.json": b"true"}
MDN = pa.MonthDayNano
TEXTS = ["plain", "", None, 'say "hi"', "a,b", "line\r\nbreak\nlf\rcr", "😀 emoji", "שלום עולם",
         "tab\tnul\x00bell\x07", "back\\slash", "\u2028sep"]


def every_type() -> pa.Table:
    """One column per Arrow type the sources produce, with their edge values."""
    n = len(TEXTS)
    big = Decimal("12345678901234567890123456789012345678")
    columns: list[tuple[str, pa.DataType, list[Any]]] = [
        ("text", pa.string(), TEXTS),
        ("i16", pa.int16(), [-32768, 32767, None, 0]),
        ("i32", pa.int32(), [-2**31, 2**31 - 1, None]),
        ("i64", pa.int64(), [-2**63, 2**63 - 1, None, 0]),
        ("d38_0", pa.decimal128(38, 0), [big, -big, None, Decimal(0)]),
        ("d38_37", pa.decimal128(38, 37), [Decimal("1E-37"), Decimal("-1." + "2" * 37), Decimal("0E-37"),
                                           None]),
        ("d12_2", pa.decimal128(12, 2), [Decimal("12.50"), Decimal("-0.01"), None, Decimal("0.00")]),
        ("d76", pa.decimal256(76, 10), [Decimal("9" * 66 + ".0000000001"), None]),
        ("flag", pa.bool_(), [True, False, None]),
        ("real", pa.float64(), [0.1, -0.0, 1e300, 5e-324, None, 1.0]),
        ("day", pa.date32(), [date(1, 1, 1), date(9999, 12, 31), None, date(2024, 2, 29)]),
        ("at", pa.time64("us"), [time(0, 0), time(23, 59, 59, 999999), None]),
        ("ts_utc", pa.timestamp("us", "UTC"),  # both sides of New York's spring-forward
         [datetime(2024, 3, 10, 6, 59, 59, 999999, UTC), datetime(2024, 3, 10, 7, 0, tzinfo=UTC), None,
          datetime(1, 1, 1, tzinfo=UTC)]),
        ("ts_naive", pa.timestamp("us"),  # local times that do not exist / exist twice in New York
         [datetime(2024, 3, 10, 2, 30), datetime(2024, 11, 3, 1, 30, 0, 1), None]),
        ("blob", pa.binary(), [b"\x00\x00", b"", None, bytes(range(256))]),
        ("span", pa.month_day_nano_interval(),
         [MDN([14, -3, 14_706_789_000_000]), MDN([0, 0, 0]), None, MDN([-1, 0, -500_000_000]),
          MDN([2**31 - 1, -2**31, -2**63])]),
        ("ints", pa.list_(pa.int64()), [[1, None, 2**63 - 1], [], None]),
        ("tags", pa.list_(pa.string()), [['q"', "", None], None, ["😀", "a\nb"]]),
        ("doc", pa.string(), ['{"b": 1, "a": [1.5, "x"]}', "null", None, "[1,\n2]", '"s"']),
    ]
    fields = [pa.field(name, kind, metadata=JSON_TEXT if name == "doc" else None)
              for name, kind, _ in columns]
    arrays = [pa.array((values * n)[:n], kind) for _, kind, values in columns]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def reader_of(table: pa.Table, batch_rows: int = 3) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=batch_rows))


def failing_reader(table: pa.Table) -> pa.RecordBatchReader:
    def batches() -> Iterator[pa.RecordBatch]:
        yield from table.to_batches(max_chunksize=2)
        raise RuntimeError("source went away")

    return pa.RecordBatchReader.from_batches(table.schema, batches())


# -- reading back ------------------------------------------------------------------------------

_DURATION = re.compile(r"P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)D)?"
                       r"(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?)(\d+)(?:\.(\d{1,9}))?S)?)?")


def parse_duration(text: str) -> MDN:
    match = _DURATION.fullmatch(text)
    assert match and text not in ("P", "PT"), text
    years, months, days, hours, minutes, sign, whole, fraction = match.groups()
    seconds = int(whole or 0) * 10**9 + int((fraction or "").ljust(9, "0"))
    nanos = int(hours or 0) * 3600 * 10**9 + int(minutes or 0) * 60 * 10**9 + (-seconds if sign else seconds)
    return MDN([int(years or 0) * 12 + int(months or 0), int(days or 0), nanos])


def from_text(text: str, field: pa.Field) -> Any:
    """A non-null value rendered as text (CSV field, or JSON string), back to its Python value."""
    kind = field.type
    if pa.types.is_decimal(kind):
        value = Decimal(text)
        assert value.as_tuple().exponent == -kind.scale and "E" not in text, text  # plain, full scale
        return value
    if pa.types.is_timestamp(kind):
        assert "T" in text and text.endswith("Z") == (kind.tz == "UTC"), text
        return datetime.fromisoformat(text)
    if pa.types.is_date(kind):
        return date.fromisoformat(text)
    if pa.types.is_time(kind):
        return time.fromisoformat(text)
    if pa.types.is_binary(kind):
        return b64decode(text, validate=True)
    if pa.types.is_interval(kind):
        return parse_duration(text)
    raise AssertionError(f"{kind} is not rendered as text")


def from_json(value: Any, field: pa.Field) -> Any:
    """A value as ``json`` parsed it, back to its Python value (embedded JSON re-serialised)."""
    kind = field.type
    if value is None:
        return None
    if (field.metadata or {}).get(b"offboard.json"):
        return json.dumps(value)
    if pa.types.is_list(kind):
        return [from_json(item, kind.value_field) for item in value]
    for accepts, python in JSON_NATIVE:
        if accepts(kind):
            assert type(value) is python, (value, kind)
            return value
    assert type(value) is str
    return from_text(value, field)


JSON_NATIVE = ((pa.types.is_string, str), (pa.types.is_integer, int), (pa.types.is_floating, float),
               (pa.types.is_boolean, bool))


def from_csv(text: str, quoted: bool, field: pa.Field) -> Any:
    kind = field.type
    if text == "" and not quoted:
        return None
    if pa.types.is_string(kind):
        assert quoted
        return text
    if pa.types.is_integer(kind):
        return int(text)
    if pa.types.is_floating(kind):
        return float(text)
    if pa.types.is_boolean(kind):
        return {"true": True, "false": False}[text]
    if pa.types.is_list(kind):
        return from_json(json.loads(text), field)
    return from_text(text, field)


def csv_fields(text: str) -> list[list[tuple[str, bool]]]:
    """RFC 4180 records as (value, quoted) pairs; checked against the csv module's reading."""
    records: list[list[tuple[str, bool]]] = []
    record: list[tuple[str, bool]] = []
    at = 0
    while at < len(text):
        if text[at] == '"':
            end, parts = at + 1, []
            while True:
                close = text.index('"', end)
                parts.append(text[end:close])
                if text.startswith('""', close):
                    parts.append('"')
                    end = close + 2
                else:
                    break
            record.append(("".join(parts), True))
            at = close + 1
        else:
            end = min(i for i in (text.find(",", at), text.find("\r\n", at), len(text)) if i >= 0)
            assert '"' not in text[at:end] and "\n" not in text[at:end]
            record.append((text[at:end], False))
            at = end
        if text.startswith("\r\n", at):
            records.append(record)
            record, at = [], at + 2
        else:
            assert text[at] == ",", text[at:at + 20]
            at += 1
    assert not record and text.endswith("\r\n")
    # a blank line is one empty field to RFC 4180, no field to the csv module
    by_csv = [row or [""] for row in csv.reader(io.StringIO(text, newline=""), strict=True)]
    assert [[value for value, _ in row] for row in records] == by_csv
    return records


def read_csv(paths: list[Path], schema: pa.Schema) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        raw = path.read_bytes()
        assert not raw.startswith(b"\xef\xbb\xbf")
        header, *records = csv_fields(raw.decode("utf-8"))
        assert header == [(name, True) for name in schema.names]
        rows += [{field.name: from_csv(text, quoted, field)
                  for field, (text, quoted) in zip(schema, record, strict=True)} for record in records]
    return rows


def read_jsonl(path: Path, schema: pa.Schema) -> list[dict[str, Any]]:
    text = path.read_text("utf-8")
    assert text == "" or text.endswith("\n")
    rows = [json.loads(line) for line in text.split("\n")[:-1]]  # JSON Lines end at LF only
    assert all(list(row) == schema.names for row in rows)
    return [{field.name: from_json(row[field.name], field) for field in schema} for row in rows]


def expected(table: pa.Table, as_json: bool = False) -> list[dict[str, Any]]:
    """The source's rows as the readers above give them back."""
    rows = table.to_pylist()
    for field in table.schema if as_json else []:
        for row in rows:
            value = row[field.name]
            if isinstance(value, float) and not math.isfinite(value):
                row[field.name] = None  # JSON has no NaN or infinity
            elif value is not None and (field.metadata or {}).get(b"offboard.json"):
                parsed = json.loads(value)  # embedded: a JSON null reads like NULL (documented)
                row[field.name] = None if parsed is None else json.dumps(parsed)
    return rows


def same(left: Any, right: Any) -> bool:
    """Equality, NaN equal to NaN, -0.0 apart from 0.0."""
    if isinstance(left, float) and isinstance(right, float):
        if math.isnan(left) or math.isnan(right):
            return math.isnan(left) and math.isnan(right)
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    return left == right and type(left) is type(right)


def assert_same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for index, (a, b) in enumerate(zip(got, want, strict=True)):
        assert same(a, b), f"row {index}: {a} != {b}"


def files_of(outputs: list[OutputFile], directory: Path) -> list[Path]:
    return [directory / output.name for output in outputs]


# -- round trips of every type -----------------------------------------------------------------


def test_writers_table_names_every_format() -> None:
    assert {"csv": write_csv, "jsonl": write_jsonl, "json": write_json, "parquet": write_parquet} == WRITERS


def test_csv_round_trips_every_type(tmp_path: Path) -> None:
    table = every_type()
    outputs = write_csv(reader_of(table), tmp_path, "all")
    assert [output.name for output in outputs] == ["all.csv"]
    assert_same(read_csv(files_of(outputs, tmp_path), table.schema), expected(table))


def test_csv_spells_values_by_the_conventions(tmp_path: Path) -> None:
    table = pa.table({"s": pa.array(["", None, 'a"b', "x,\r\ny"]), "n": pa.array([1, None, 3, 4]),
                      "f": pa.array([float("nan"), float("inf"), None, 1e20])})
    write_csv(reader_of(table), tmp_path, "t")
    assert (tmp_path / "t.csv").read_bytes() == (
        b'"s","n","f"\r\n"",1,nan\r\n,,inf\r\n"a""b",3,\r\n"x,\r\ny",4,1e+20\r\n')


def test_jsonl_round_trips_every_type(tmp_path: Path) -> None:
    table = every_type()
    [output] = write_jsonl(reader_of(table), tmp_path, "all")
    assert output.name == "all.jsonl" and output.format == "jsonl"
    assert_same(read_jsonl(tmp_path / output.name, table.schema), expected(table, as_json=True))


def test_json_document_round_trips_every_type(tmp_path: Path) -> None:
    table = every_type()
    write_json(reader_of(table), tmp_path, "all")
    document = json.loads((tmp_path / "all.json").read_text("utf-8"))
    assert list(document) == ["dataset", "rows"] and document["dataset"] == "all"
    rows = [{field.name: from_json(row[field.name], field) for field in table.schema}
            for row in document["rows"]]
    assert_same(rows, expected(table, as_json=True))


def test_json_spells_values_by_the_conventions(tmp_path: Path) -> None:
    table = pa.table({"i": pa.array([2**63 - 1]), "f": pa.array([1.0]), "nan": pa.array([float("nan")]),
                      "d": pa.array([Decimal("0.10")], pa.decimal128(5, 2)), "s": pa.array(["😀\"\n"]),
                      "ts": pa.array([datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)], pa.timestamp("us", "UTC")),
                      "b": pa.array([b"\x00"]), "l": pa.array([[1, None]]), "n": pa.array([None], pa.int8())})
    write_jsonl(reader_of(table), tmp_path, "t")
    assert (tmp_path / "t.jsonl").read_text("utf-8") == (
        '{"i":9223372036854775807,"f":1.0,"nan":null,"d":"0.10","s":"😀\\"\\n",'
        '"ts":"2024-01-02T03:04:05.000000Z","b":"AA==","l":[1,null],"n":null}\n')


def test_json_text_columns_are_embedded_and_other_strings_quoted(tmp_path: Path) -> None:
    text = pa.array(['{"a": [1, 2],\n "b": "x\\ny"}', None])
    table = pa.Table.from_arrays([text, text], schema=pa.schema(
        [pa.field("doc", pa.string(), metadata=JSON_TEXT), pa.field("plain", pa.string())]))
    write_jsonl(reader_of(table), tmp_path, "t")
    lines = (tmp_path / "t.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"doc": {"a": [1, 2], "b": "x\ny"}, "plain": text[0].as_py()}, {"doc": None, "plain": None}]


def test_parquet_round_trips_every_type(tmp_path: Path) -> None:
    table = every_type()
    [output] = write_parquet(reader_of(table), tmp_path, "all")
    back = pq.read_table(tmp_path / output.name)
    assert back.schema.equals(storable_schema(table.schema), check_metadata=True)
    for name in table.column_names:
        if name != "span":
            assert back.column(name).equals(table.column(name)), name
    assert back.schema.field("doc").metadata == JSON_TEXT
    assert back.schema.field("span").metadata == {ARROW_TYPE_KEY: b"month_day_nano_interval"}
    spans = [None if value is None else MDN([value["months"], value["days"], value["nanoseconds"]])
             for value in back.column("span").to_pylist()]
    assert spans == table.column("span").to_pylist()


def test_parquet_row_groups_are_bounded(tmp_path: Path) -> None:
    table = pa.table({"i": pa.array(range(300_000))})
    write_parquet(reader_of(table, batch_rows=7_000), tmp_path, "t")
    meta = pq.ParquetFile(tmp_path / "t.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [131_072, 131_072, 37_856]
    assert meta.row_group(0).column(0).compression == "ZSTD"


@pytest.mark.parametrize(("span", "text"), [
    (MDN([14, -3, 14_706_789_000_000]), "P1Y2M-3DT4H5M6.789S"), (MDN([0, 0, 0]), "PT0S"),
    (MDN([-1, 0, -500_000_000]), "P-1MT-0.5S"), (MDN([-25, 1, -3_600 * 10**9]), "P-2Y-1M1DT-1H"),
    (MDN([0, 0, 1]), "PT0.000000001S"), (MDN([12, 0, 0]), "P1Y")])
def test_intervals_read_as_iso_8601_durations(tmp_path: Path, span: MDN, text: str) -> None:
    table = pa.table({"span": pa.array([span], pa.month_day_nano_interval())})
    write_csv(reader_of(table), tmp_path, "t")
    assert (tmp_path / "t.csv").read_text().splitlines()[1] == f'"{text}"'


def test_timestamps_keep_the_instant_across_a_dst_change(tmp_path: Path) -> None:
    instants = [datetime(2024, 10, 27, 0, 30, tzinfo=UTC) + timedelta(minutes=30 * i) for i in range(4)]
    table = pa.table({"paris": pa.array(instants, pa.timestamp("us", "Europe/Paris")),
                      "utc": pa.array(instants, pa.timestamp("us", "UTC"))})
    write_jsonl(reader_of(table), tmp_path, "t")
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [row["paris"][-6:] for row in rows] == ["+02:00", "+01:00", "+01:00", "+01:00"]
    assert [datetime.fromisoformat(row["paris"]) for row in rows] == instants
    assert [datetime.fromisoformat(row["utc"]) for row in rows] == instants


# -- empty inputs, parts ----------------------------------------------------------------------

SMALL = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())])


@pytest.mark.parametrize(("format", "content"), [
    ("csv", b'"id","name"\r\n'), ("jsonl", b""), ("json", b'{"dataset": "t", "rows": [\n]}\n')])
def test_an_empty_table_is_a_header_or_an_empty_array(tmp_path: Path, format: str, content: bytes) -> None:
    [output] = WRITERS[format](pa.RecordBatchReader.from_batches(SMALL, []), tmp_path, "t")
    assert (tmp_path / output.name).read_bytes() == content and output.rows == 0
    if format == "json":
        assert json.loads(content) == {"dataset": "t", "rows": []}


def test_an_empty_table_is_a_parquet_file_with_its_schema(tmp_path: Path) -> None:
    [output] = write_parquet(pa.RecordBatchReader.from_batches(SMALL, []), tmp_path, "t")
    back = pq.read_table(tmp_path / output.name)
    assert back.num_rows == 0 and back.schema.equals(SMALL)


def test_csv_splits_into_parts_each_with_the_header(tmp_path: Path) -> None:
    names = [f"name {i}" * (i % 5) for i in range(200)]
    table = pa.table({"id": pa.array(range(200)), "name": pa.array(names)})
    outputs = write_csv(reader_of(table, batch_rows=64), tmp_path, "t", max_part_bytes=400)
    assert [output.name for output in outputs] == [f"t.part-{i:04d}.csv" for i in range(1, len(outputs) + 1)]
    assert len(outputs) > 5 and sorted(p.name for p in tmp_path.iterdir()) == [o.name for o in outputs]
    for output in outputs:
        data = (tmp_path / output.name).read_bytes()
        assert data.startswith(b'"id","name"\r\n') and len(data) == output.bytes <= 400
        assert output.rows == len(csv_fields(data.decode())) - 1 > 0
    assert sum(output.rows for output in outputs) == 200
    assert_same(read_csv(files_of(outputs, tmp_path), table.schema), table.to_pylist())


def test_a_row_larger_than_a_part_gets_a_part_of_its_own(tmp_path: Path) -> None:
    table = pa.table({"text": pa.array(["a", "b" * 500, "c"])})
    outputs = write_csv(reader_of(table), tmp_path, "t", max_part_bytes=100)
    assert [output.rows for output in outputs] == [1, 1, 1]
    assert outputs[1].bytes > 100 >= max(outputs[0].bytes, outputs[2].bytes)


# -- the files: facts, determinism, crash safety ----------------------------------------------


@pytest.mark.parametrize("format", sorted(WRITERS))
def test_output_files_report_their_rows_bytes_and_sha256(tmp_path: Path, format: str) -> None:
    table = every_type()
    outputs = WRITERS[format](reader_of(table), tmp_path, "all")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(o.name for o in outputs)
    for output in outputs:
        data = (tmp_path / output.name).read_bytes()
        assert output.format == format and output.rows == table.num_rows
        assert output.bytes == len(data) and output.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("format", sorted(WRITERS))
def test_the_same_input_gives_the_same_bytes(tmp_path: Path, format: str) -> None:
    first, second, third = (tmp_path / "first", tmp_path / "second", tmp_path / "third")
    for directory in (first, second, third):
        directory.mkdir()
    table = every_type()
    outputs = WRITERS[format](reader_of(table), first, "t")
    assert WRITERS[format](reader_of(table), second, "t") == outputs  # same names, sizes, sha256
    if format != "parquet":  # text does not even depend on how the source cut its batches
        assert WRITERS[format](reader_of(table, batch_rows=1), third, "t") == outputs


@pytest.mark.parametrize("format", sorted(WRITERS))
def test_a_failing_source_leaves_no_file(tmp_path: Path, format: str) -> None:
    options = {"max_part_bytes": 300} if format == "csv" else {}
    with pytest.raises(RuntimeError, match="source went away"):
        WRITERS[format](failing_reader(every_type()), tmp_path, "t", **options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("format", sorted(WRITERS))
def test_a_failed_rewrite_keeps_the_previous_file(tmp_path: Path, format: str) -> None:
    [before] = WRITERS[format](reader_of(every_type()), tmp_path, "t")
    with pytest.raises(RuntimeError):
        WRITERS[format](failing_reader(every_type()), tmp_path, "t")
    assert [path.name for path in tmp_path.iterdir()] == [before.name]
    assert hashlib.sha256((tmp_path / before.name).read_bytes()).hexdigest() == before.sha256


# -- properties over generated tables ---------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=("Cs",)))  # any unicode a string can hold
INT32, INT64 = st.integers(-2**31, 2**31 - 1), st.integers(-2**63, 2**63 - 1)
COLUMN_KINDS: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "text": (pa.string(), TEXT),
    "int64": (pa.int64(), INT64),
    "int16": (pa.int16(), st.integers(-2**15, 2**15 - 1)),
    "real": (pa.float64(), st.floats()),
    "flag": (pa.bool_(), st.booleans()),
    "ts_utc": (pa.timestamp("us", "UTC"), st.datetimes(timezones=st.just(UTC))),
    "ts_naive": (pa.timestamp("us"), st.datetimes()),
    "blob": (pa.binary(), st.binary()),
    "span": (pa.month_day_nano_interval(), st.builds(lambda *parts: MDN(list(parts)), INT32, INT32, INT64)),
    "tags": (pa.list_(pa.string()), st.lists(st.none() | TEXT, max_size=3)),
}
_WIDE = Context(prec=100)


@st.composite
def decimals(draw: st.DrawFn) -> tuple[pa.DataType, st.SearchStrategy[Decimal]]:
    precision = draw(st.sampled_from([1, 12, 38]))
    scale = draw(st.integers(0, precision))
    digits = st.integers(-(10**precision - 1), 10**precision - 1)
    return pa.decimal128(precision, scale), digits.map(lambda whole: _WIDE.scaleb(Decimal(whole), -scale))


@st.composite
def tables(draw: st.DrawFn) -> tuple[pa.Table, int]:
    """A table of generated columns with NULLs anywhere, and the batch size its reader uses."""
    rows = draw(st.integers(0, 12))
    names = draw(st.lists(TEXT, min_size=1, max_size=5, unique=True))
    arrays = []
    for _ in names:
        kind = draw(st.sampled_from([*COLUMN_KINDS, "decimal"]))
        arrow, values = draw(decimals()) if kind == "decimal" else COLUMN_KINDS[kind]
        arrays.append(pa.array(draw(st.lists(st.none() | values, min_size=rows, max_size=rows)), arrow))
    return pa.Table.from_arrays(arrays, names=names), draw(st.integers(1, 5))


PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(tables(), st.sampled_from([1 << 30, 150, 1000]))
def test_csv_reads_back_any_table(case: tuple[pa.Table, int], max_part_bytes: int) -> None:
    table, batch_rows = case
    with tempfile.TemporaryDirectory() as directory:
        outputs = write_csv(reader_of(table, batch_rows), Path(directory), "t", max_part_bytes=max_part_bytes)
        assert sum(output.rows for output in outputs) == table.num_rows
        assert_same(read_csv(files_of(outputs, Path(directory)), table.schema), expected(table))


@PROPERTY
@given(tables())
def test_jsonl_reads_back_any_table(case: tuple[pa.Table, int]) -> None:
    table, batch_rows = case
    with tempfile.TemporaryDirectory() as directory:
        [output] = write_jsonl(reader_of(table, batch_rows), Path(directory), "t")
        assert_same(read_jsonl(Path(directory) / output.name, table.schema), expected(table, as_json=True))


@PROPERTY
@given(tables())
def test_json_reads_back_any_table(case: tuple[pa.Table, int]) -> None:
    table, batch_rows = case
    with tempfile.TemporaryDirectory() as directory:
        [output] = write_json(reader_of(table, batch_rows), Path(directory), "t")
        document = json.loads((Path(directory) / output.name).read_text("utf-8"))
    rows = [{field.name: from_json(row[field.name], field) for field in table.schema}
            for row in document["rows"]]
    assert_same(rows, expected(table, as_json=True))


@PROPERTY
@given(tables())
def test_parquet_reads_back_any_table(case: tuple[pa.Table, int]) -> None:
    table, batch_rows = case
    with tempfile.TemporaryDirectory() as directory:
        [output] = write_parquet(reader_of(table, batch_rows), Path(directory), "t")
        back = pq.read_table(Path(directory) / output.name)
    assert back.schema.equals(storable_schema(table.schema), check_metadata=True)
    spans = [name for name, kind in zip(table.column_names, table.schema.types, strict=True)
             if kind == pa.month_day_nano_interval()]
    rows = back.to_pylist()
    for row in rows:
        for name in spans:
            value = row[name]
            row[name] = None if value is None else MDN([value["months"], value["days"], value["nanoseconds"]])
    assert_same(rows, table.to_pylist())


@PROPERTY
@given(st.lists(st.tuples(st.none() | TEXT, st.none() | INT64, st.none() | st.booleans()), max_size=8))
def test_jsonl_lines_are_what_json_dumps_writes(rows: list[tuple[Any, Any, Any]]) -> None:
    table = pa.Table.from_pylist([dict(zip("sib", row, strict=True)) for row in rows], schema=pa.schema(
        [("s", pa.string()), ("i", pa.int64()), ("b", pa.bool_())]))
    with tempfile.TemporaryDirectory() as directory:
        write_jsonl(reader_of(table), Path(directory), "t")
        text = (Path(directory) / "t.jsonl").read_text("utf-8")
    lines = [json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n" for row in table.to_pylist()]
    for char in "\x85\u2028\u2029":  # escaped too, so that no line splitter breaks a row
        lines = [line.replace(char, f"\\u{ord(char):04x}") for line in lines]
    assert text == "".join(lines)


def test_other_arrow_types_read_by_the_same_conventions(tmp_path: Path) -> None:
    """What third-party sources may yield beyond the sql source's types."""
    table = pa.table({
        "dict": pa.array(["a", None]).dictionary_encode(),
        "large": pa.array(['"', None], pa.large_string()),
        "nested": pa.array([[[1], [None], []], None], pa.list_(pa.list_(pa.int32()))),
        "fixed": pa.array([[1, None], None], pa.list_(pa.int8(), 2)),
        "view": pa.array([[2], None], pa.list_view(pa.int64())),
        "record": pa.array([{"a": 1, "b": [date(2020, 1, 2)]}, None]),
        "took": pa.array([-1_500, None], pa.duration("ms")),
        "u64": pa.array([2**64 - 1, None], pa.uint64()),
        "key": pa.array([b"\x00\x01", None], pa.binary(2)),
        "nothing": pa.nulls(2),
        "ns": pa.array([1, None], pa.timestamp("ns", "Asia/Kolkata")),
    })
    write_jsonl(reader_of(table), tmp_path, "t")
    write_csv(reader_of(table), tmp_path, "t")
    assert [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()] == [
        {"dict": "a", "large": '"', "nested": [[1], [None], []], "fixed": [1, None], "view": [2],
         "record": {"a": 1, "b": ["2020-01-02"]}, "took": "PT-1.5S", "u64": 2**64 - 1, "key": "AAE=",
         "nothing": None, "ns": "1970-01-01T05:30:00.000000001+05:30"},
        dict.fromkeys(table.column_names)]
    assert (tmp_path / "t.csv").read_text().splitlines()[1:] == [
        '"a","""","[[1],[null],[]]","[1,null]","[2]","{""a"":1,""b"":[""2020-01-02""]}","PT-1.5S",'
        '18446744073709551615,"AAE=",,"1970-01-01T05:30:00.000000001+05:30"', ",,,,,,,,,,"]


def test_a_dataset_name_is_not_a_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a plain file name"):
        write_jsonl(reader_of(every_type()), tmp_path, "../escape")
    assert list(tmp_path.iterdir()) == []


def test_every_control_and_separator_character_is_escaped_as_json_dumps_does(tmp_path: Path) -> None:
    texts = [chr(code) for code in [*range(128), 0x85, 0x2028, 0x2029]] + ["".join(map(chr, range(40)))]
    write_jsonl(reader_of(pa.table({"s": pa.array(texts)}), batch_rows=50), tmp_path, "t")
    lines = (tmp_path / "t.jsonl").read_text("utf-8").split("\n")[:-1]
    assert [json.loads(line)["s"] for line in lines] == texts
    assert lines[:128] == [json.dumps({"s": text}, ensure_ascii=False, separators=(",", ":"))
                           for text in texts[:128]]
