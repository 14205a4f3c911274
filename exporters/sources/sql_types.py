"""How a reflected SQL column becomes an Arrow column, exactly or as the database's own text.

Decisions (an export must not round anything):

* integers by size (SMALLINT int16, INTEGER int32, BIGINT int64); SQLite stores every
  integer in 8 bytes whatever the declaration, so there all are int64;
* NUMERIC(p, s) is decimal128(p, s), decimal256 above 38 digits; NUMERIC without a
  precision (or above 76 digits) is a string, the database's own rendering of the value,
  because no fixed Arrow scale holds every value such a column accepts;
* INTERVAL is month_day_nano_interval: months, days and time are kept apart, as
  PostgreSQL keeps them (psycopg's own timedelta folds a month into 30 days);
* UUID is its canonical text, JSON is the database's own JSON text (decoding it would
  round big numbers through float and turn a JSON null into a missing value), arrays are
  lists of their mapped item, types without an exact Arrow peer (inet, money, time with
  time zone, ...) are the database's text.

On PostgreSQL the same plans are also met by the fast path (``fast_expression`` and
``fast_array``, bottom of this module): the rows arrive as Arrow columns from ADBC, selected
and converted so that they equal, value for value and type for type, what ``to_batch`` builds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Column, Text, cast
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class ColumnPlan:
    """What to select for a column and how its values become Arrow values."""

    arrow: pa.DataType
    as_text: bool = False  # select CAST(column AS TEXT): the database's rendering is exact
    convert: Convert | None = None  # applied to each non-null value
    json_text: bool = False  # the text is a JSON document: marked so JSON writers embed it


def plan_for(type_: TypeEngine[Any], dialect: str) -> ColumnPlan:
    """The plan for a column type as reflected by ``dialect`` ("postgresql", "sqlite", ...)."""
    for kinds, make in _RULES:  # first match wins: Float before Numeric, its base class
        if isinstance(type_, kinds):
            return make(type_, dialect)
    if _python_type(type_) is timedelta:  # INTERVAL, whatever the dialect calls it
        return ColumnPlan(pa.month_day_nano_interval(), convert=_interval)
    return _TEXT  # NullType, inet, money, tsvector, ...


_TEXT = ColumnPlan(pa.string(), as_text=True)
_JSON = ColumnPlan(pa.string(), as_text=True, json_text=True)


def _array(type_: Any, dialect: str) -> ColumnPlan:
    item = plan_for(type_.item_type, dialect)
    item_convert = item.convert or (str if item.as_text else None)  # no CAST inside an array
    depth = type_.dimensions or 1
    arrow = pa.string() if item.as_text else item.arrow
    for _ in range(depth):
        arrow = pa.list_(arrow)
    return ColumnPlan(arrow, convert=_each(item_convert, depth) if item_convert else None)


_RULES: tuple[tuple[type | tuple[type, ...], Callable[[Any, str], ColumnPlan]], ...] = (
    (sqltypes.ARRAY, _array),
    (sqltypes.Boolean, lambda _t, _d: ColumnPlan(pa.bool_())),
    (sqltypes.Integer, lambda t, d: ColumnPlan(_integer(t, d))),
    (sqltypes.Float, lambda _t, _d: ColumnPlan(pa.float64())),
    (sqltypes.Numeric, lambda t, _d: _numeric(t)),
    (sqltypes.DateTime,
     lambda t, _d: ColumnPlan(pa.timestamp("us", tz="UTC" if t.timezone else None))),
    (sqltypes.Date, lambda _t, _d: ColumnPlan(pa.date32())),
    (sqltypes.Time, lambda t, _d: _TEXT if t.timezone else ColumnPlan(pa.time64("us"))),
    (sqltypes.Uuid, lambda _t, _d: ColumnPlan(pa.string(), convert=str)),
    (sqltypes.JSON, lambda _t, _d: _JSON),  # the stored text: no float rounding, null kept
    ((sqltypes.LargeBinary, sqltypes.BINARY, sqltypes.VARBINARY),
     lambda _t, _d: ColumnPlan(pa.binary(), convert=bytes)),
    (sqltypes.String, lambda _t, _d: ColumnPlan(pa.string())),
)


def select_expression(column: Column[Any], plan: ColumnPlan) -> ColumnElement[Any]:
    """The column as the plan wants it selected, still labelled with its own name."""
    return cast(column, Text).label(column.name) if plan.as_text else column


def to_batch(rows: Sequence[Sequence[Any]], plans: Sequence[ColumnPlan],
             schema: pa.Schema) -> pa.RecordBatch:
    """Rows as fetched, column by column, into one record batch of ``schema``."""
    arrays = []
    for index, plan in enumerate(plans):
        values = [row[index] for row in rows]
        if plan.convert is not None:
            convert = plan.convert
            values = [None if value is None else convert(value) for value in values]
        arrays.append(pa.array(values, type=plan.arrow))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _python_type(type_: TypeEngine[Any]) -> type | None:
    try:
        return type_.python_type
    except NotImplementedError:
        return None


def _integer(type_: sqltypes.Integer, dialect: str) -> pa.DataType:
    if dialect == "sqlite":
        return pa.int64()
    unsigned = bool(getattr(type_, "unsigned", False))  # MySQL
    if isinstance(type_, sqltypes.BigInteger):
        return pa.uint64() if unsigned else pa.int64()
    if isinstance(type_, sqltypes.SmallInteger):
        return pa.int32() if unsigned else pa.int16()
    return pa.int64() if unsigned else pa.int32()


def _numeric(type_: sqltypes.Numeric[Any]) -> ColumnPlan:
    precision, scale = type_.precision, type_.scale or 0
    if precision is None or precision > 76 or not 0 <= scale <= precision:
        return _TEXT
    return ColumnPlan(pa.decimal128(precision, scale) if precision <= 38
                      else pa.decimal256(precision, scale))


def _each(convert: Convert, depth: int) -> Convert:
    """``convert`` applied to every item of a ``depth``-dimensional array."""
    inner = _each(convert, depth - 1) if depth > 1 else convert
    return lambda values: [None if value is None else inner(value) for value in values]


# PostgreSQL's default IntervalStyle: "1 year 2 mons -3 days +04:05:06.789".
_PG_INTERVAL = re.compile(
    r"(?:(?P<years>[+-]?\d+) years? ?)?(?:(?P<months>[+-]?\d+) mons? ?)?"
    r"(?:(?P<days>[+-]?\d+) days? ?)?"
    r"(?:(?P<sign>[+-])?(?P<h>\d+):(?P<m>\d+):(?P<s>\d+)(?:\.(?P<frac>\d{1,6}))?)?")


def _interval(value: Any) -> tuple[int, int, int]:
    """(months, days, nanoseconds) from our exact loader's tuple or a driver's timedelta."""
    if isinstance(value, tuple | list):  # SQLAlchemy's ARRAY hands an item's tuple on as a list
        return (value[0], value[1], value[2])
    return (0, value.days, (value.seconds * 1_000_000 + value.microseconds) * 1000)


def parse_pg_interval(text: str) -> tuple[int, int, int]:
    """PostgreSQL interval text as (months, days, nanoseconds), nothing folded or rounded."""
    match = _PG_INTERVAL.fullmatch(text)
    if match is None or not text:
        raise ValueError(f"cannot read the interval {text!r} (IntervalStyle must be postgres)")
    parts = match.groupdict()
    months = int(parts["years"] or 0) * 12 + int(parts["months"] or 0)
    micros = 0
    if parts["h"] is not None:
        seconds = int(parts["h"]) * 3600 + int(parts["m"]) * 60 + int(parts["s"])
        micros = seconds * 1_000_000 + int((parts["frac"] or "").ljust(6, "0"))
        if parts["sign"] == "-":
            micros = -micros
    return (months, int(parts["days"] or 0), micros * 1000)


def register_exact_intervals(dbapi_connection: Any) -> None:
    """Make a psycopg connection load intervals as (months, days, nanoseconds)."""
    from psycopg.adapt import Loader

    class IntervalParts(Loader):
        def load(self, data: Any) -> tuple[int, int, int]:
            return parse_pg_interval(bytes(data).decode())

    dbapi_connection.adapters.register_loader("interval", IntervalParts)


# -- the PostgreSQL fast path ------------------------------------------------------------------
#
# PostgreSQL hands a query's rows over as COPY BINARY, which the ADBC driver decodes into Arrow
# in C, with no Python per row. What arrives must equal what the generic path builds from the
# driver's Python values, so each column is selected the way that makes it so, and every
# column that arrives is checked against its plan; a column with no exact fast form sends the
# whole table down the generic path.

# Python's datetime, which the generic path goes through, holds years 1..9999 only: outside
# them (and for 'infinity') that path fails, and so does this one rather than export a value
# the other cannot.
_MIN_DAY, _MAX_DAY = -719_162, 2_932_896  # 0001-01-01 and 9999-12-31, in days since 1970
_MIN_MICROS, _MAX_MICROS = _MIN_DAY * 86_400_000_000, (_MAX_DAY + 1) * 86_400_000_000 - 1
_DAY_MICROS = 86_400_000_000  # time '24:00:00' exists in PostgreSQL, not in Python


class FastPathError(ValueError):
    """A value the fast path will not export (the generic path fails on it too)."""


def fast_expression(column: Column[Any], plan: ColumnPlan) -> ColumnElement[Any] | None:
    """What the fast path selects for ``column`` so that it arrives as ``plan`` makes it, or
    None when no selection does (the table is then read the generic way)."""
    type_ = column.type
    if isinstance(type_, sqltypes.ARRAY):
        return _fast_array(column, type_)
    if plan.as_text or isinstance(type_, sqltypes.Uuid):  # str(UUID) is PostgreSQL's own text
        expression: ColumnElement[Any] = cast(column, Text)
    elif _is_single(type_):
        # The generic path reads a REAL as the float its shortest text names (1.1, not
        # 1.100000023841858): the same text, read as double precision by the server.
        expression = cast(cast(column, Text), sqltypes.Double())
    else:
        expression = column
    return expression.label(column.name)


def _fast_array(column: Column[Any], type_: sqltypes.ARRAY[Any]) -> ColumnElement[Any] | None:
    if (type_.dimensions or 1) != 1:  # ADBC flattens nested arrays; the plan keeps them
        return None
    item = type_.item_type
    if isinstance(item, sqltypes.Uuid):
        return cast(column, sqltypes.ARRAY(Text)).label(column.name)
    if _is_single(item):
        return cast(cast(column, sqltypes.ARRAY(Text)), sqltypes.ARRAY(sqltypes.Double())).label(
            column.name)
    if plan_for(item, "postgresql").as_text:  # the generic path takes str() of Python values
        return None
    return column.label(column.name)


def _is_single(type_: TypeEngine[Any]) -> bool:
    return isinstance(type_, sqltypes.Float) and not isinstance(type_, sqltypes.Double)


def fast_convertible(arrived: pa.DataType, wanted: pa.DataType) -> bool:
    """Whether ``fast_array`` turns a column of type ``arrived`` into ``wanted`` exactly."""
    arrived = _storage_type(arrived)
    if pa.types.is_list(wanted):
        return pa.types.is_list(arrived) and fast_convertible(arrived.value_type,
                                                               wanted.value_type)
    if pa.types.is_decimal(wanted):  # ADBC gives NUMERIC as its digits
        return pa.types.is_string(arrived)
    return arrived == wanted


def fast_array(array: pa.Array, wanted: pa.DataType) -> pa.Array:
    """An array as ADBC delivers it, as ``wanted`` (see ``fast_convertible``), checked."""
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    if pa.types.is_list(wanted):
        values = fast_array(array.values, wanted.value_type)  # the whole child; offsets index it
        return pa.ListArray.from_arrays(array.offsets, values, type=wanted,
                                        mask=array.is_null() if array.null_count else None)
    if pa.types.is_decimal(wanted) and pa.types.is_string(array.type):
        try:
            return array.cast(wanted)  # refuses what would not fit exactly (and NaN)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise FastPathError(f"a NUMERIC value does not fit {wanted}: {error}") from error
    if array.type != wanted:
        raise FastPathError(f"arrived as {array.type}, not {wanted}")
    _check_range(array)
    return array


def _check_range(array: pa.Array) -> None:
    kind = array.type
    outside_years = "is infinite or outside years 1..9999, which the export cannot hold"
    if pa.types.is_timestamp(kind) and kind.unit == "us":
        low, high, raw = _MIN_MICROS, _MAX_MICROS, array.view(pa.int64())
        refusal = f"a timestamp {outside_years}"
    elif pa.types.is_date32(kind):
        low, high, raw = _MIN_DAY, _MAX_DAY, array.view(pa.int32())
        refusal = f"a date {outside_years}"
    elif pa.types.is_time64(kind) and kind.unit == "us":
        low, high, raw = 0, _DAY_MICROS - 1, array.view(pa.int64())
        refusal = "a time of day is 24:00:00, which the export cannot hold"
    else:
        return
    if raw.null_count == len(raw):
        return
    bounds = pc.min_max(raw)
    if bounds["min"].as_py() < low or bounds["max"].as_py() > high:
        raise FastPathError(refusal)


def _storage_type(kind: pa.DataType) -> pa.DataType:
    return kind.storage_type if isinstance(kind, pa.BaseExtensionType) else kind
