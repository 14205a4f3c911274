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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyarrow as pa
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


def plan_for(type_: TypeEngine[Any], dialect: str) -> ColumnPlan:
    """The plan for a column type as reflected by ``dialect`` ("postgresql", "sqlite", ...)."""
    for kinds, make in _RULES:  # first match wins: Float before Numeric, its base class
        if isinstance(type_, kinds):
            return make(type_, dialect)
    if _python_type(type_) is timedelta:  # INTERVAL, whatever the dialect calls it
        return ColumnPlan(pa.month_day_nano_interval(), convert=_interval)
    return _TEXT  # NullType, inet, money, tsvector, ...


_TEXT = ColumnPlan(pa.string(), as_text=True)


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
    (sqltypes.JSON, lambda _t, _d: _TEXT),  # the stored text: no float rounding, null kept
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
    if isinstance(value, tuple):
        return value
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
