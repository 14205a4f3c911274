"""An ``sql`` source: a tenant's rows in the tables of any database SQLAlchemy reaches.

Each declared table is one dataset. A table holds the tenant's rows either directly
(``tenant_column``) or by referring to rows of an earlier declared table that do
(``via``), to any depth; the chain is built as nested ``IN (SELECT ...)`` subqueries
with SQLAlchemy Core, so no value or name is ever formatted into SQL text.

For a single-person scope (``Scope.subject``) a table keeps the rows whose
``subject_column`` names the person, within the tenant; a ``via`` table without one
keeps the rows tied to the person's rows of its parent; a ``tenant_column`` table
without one holds nothing of the person (its rows are the whole tenant's, and
exporting or erasing them for one person would touch everybody else's data).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    Select,
    Table,
    create_engine,
    delete,
    event,
    false,
    func,
    inspect,
    select,
    tuple_,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoReferenceError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from exporters.sources.base import Dataset, Scope, Source, SourceError, resolve_secret
from exporters.sources.sql_config import SqlConfig, parse_via
from exporters.sources.sql_types import (
    ColumnPlan,
    plan_for,
    register_exact_intervals,
    select_expression,
    to_batch,
)

ERASE_BATCH = 5_000  # primary keys per DELETE, each batch its own transaction


class SqlSource(Source):
    kind = "sql"
    config_schema = SqlConfig

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._specs: dict[str, dict[str, Any]] = {spec["name"]: spec for spec in config["tables"]}
        self._engine: Engine | None = None
        self._url: URL | None = None
        self._tables: dict[str, Table] | None = None

    def close(self) -> None:
        """Release the pooled connections; the next call connects afresh."""
        if self._engine is not None:
            self._engine.dispose()
        self._engine = self._url = self._tables = None

    def __enter__(self) -> SqlSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the contract --------------------------------------------------------------------

    def check(self) -> None:
        self._tables = None  # look again: the database may have changed since
        self._reflect()

    def datasets(self, scope: Scope) -> list[Dataset]:
        tables = self._reflect()
        return [Dataset(name, spec["category"], self._arrow_schema(tables[name]))
                for name, spec in self._specs.items()]

    def read(self, dataset: Dataset, scope: Scope, batch_rows: int) -> Iterator[pa.RecordBatch]:
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        table = self._table(dataset.name)  # checked now, not at the first batch
        plans = self._plans(table)
        query = (select(*(select_expression(column, plan)
                          for column, plan in zip(table.columns, plans, strict=True)))
                 .where(self._in_scope(dataset.name, scope))
                 .order_by(*table.primary_key.columns))
        return self._stream(dataset.name, query, plans, self._arrow_schema(table), batch_rows)

    def _stream(self, name: str, query: Select[Any], plans: list[ColumnPlan], schema: pa.Schema,
                batch_rows: int) -> Iterator[pa.RecordBatch]:
        with self._errors(f"reading {name}"), self._get_engine().connect() as conn:
            # A server-side cursor: memory holds one batch whatever the table's size.
            result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(
                query)
            for rows in result.partitions():
                yield to_batch(rows, plans, schema)

    def erase(self, scope: Scope) -> dict[str, int]:
        removed = {name: self._erase_table(name, scope) for name in self._erase_order()}
        return {name: removed[name] for name in self._specs}

    def count(self, scope: Scope) -> dict[str, int]:
        tables = self._reflect()
        with self._errors("counting rows"), self._get_engine().connect() as conn:
            return {name: conn.execute(select(func.count()).select_from(tables[name])
                                       .where(self._in_scope(name, scope))).scalar_one()
                    for name in self._specs}

    # -- scope -----------------------------------------------------------------------------

    def _in_scope(self, name: str, scope: Scope) -> ColumnElement[bool]:
        """The condition selecting the scope's rows of a declared table."""
        spec, table = self._specs[name], self._table(name)
        if scope.subject is not None and "subject_column" in spec:
            column = table.c[spec["subject_column"]]
            return self._in_scope(name, Scope(scope.tenant)) & (
                column == _bind_value(column, scope.subject))
        if "via" in spec:
            column_name, parent, parent_column = parse_via(spec["via"])
            parents = select(self._table(parent).c[parent_column]).where(
                self._in_scope(parent, scope))
            return table.c[column_name].in_(parents)
        if scope.subject is not None:
            return false()  # the whole tenant's rows, none of them one person's
        column = table.c[spec["tenant_column"]]
        return column == _bind_value(column, scope.tenant)

    # -- erasure ---------------------------------------------------------------------------

    def _erase_order(self) -> list[str]:
        """Children before parents, by ``via`` links and the database's own foreign keys."""
        tables = self._reflect()
        parents: dict[str, set[str]] = {}
        for name, spec in self._specs.items():
            parents[name] = {parse_via(spec["via"])[1]} if "via" in spec else set()
            for key in tables[name].foreign_keys:
                try:
                    target = key.column.table
                except NoReferenceError:
                    continue
                parents[name] |= {other for other, table in tables.items() if table is target}
        left, order = list(reversed(self._specs)), []
        while left:
            # Next: a table no remaining table refers to; on a cycle, declaration order decides.
            leaf = next((name for name in left
                         if not any(name in parents[other] for other in left if other != name)),
                        left[0])
            order.append(leaf)
            left.remove(leaf)
        return order

    def _erase_table(self, name: str, scope: Scope) -> int:
        """Delete in batches of primary keys so no transaction locks a whole tenant at once."""
        table, where = self._table(name), self._in_scope(name, scope)
        keys = list(table.primary_key.columns)
        removed = 0
        with self._errors(f"erasing {name}"):
            if not keys:  # nothing to batch by: one statement
                with self._get_engine().begin() as conn:
                    return conn.execute(delete(table).where(where)).rowcount
            key = keys[0] if len(keys) == 1 else tuple_(*keys)
            while True:
                with self._get_engine().begin() as conn:
                    batch = conn.execute(select(*keys).where(where).limit(ERASE_BATCH)).all()
                    if not batch:
                        return removed
                    values = [row[0] for row in batch] if len(keys) == 1 else [
                        tuple(row) for row in batch]
                    deleted = conn.execute(delete(table).where(key.in_(values), where)).rowcount
                if deleted == 0:
                    raise SourceError(f"erasing {name}: {len(batch)} rows in scope remain but "
                                      "DELETE removes none (a trigger or rule refuses it?)")
                removed += deleted

    # -- database --------------------------------------------------------------------------

    def _get_engine(self) -> Engine:
        """One engine per source, made on first use (the URL may name the environment)."""
        if self._engine is None:
            try:
                self._url = make_url(resolve_secret(self.config["url"]))
            except (ArgumentError, ValueError) as error:  # never echo it: it may hold a password
                raise SourceError("the database URL is not a valid SQLAlchemy URL "
                                  "(dialect+driver://user:password@host/database)") from error
            try:
                engine = create_engine(self._url, pool_pre_ping=True)
            except (SQLAlchemyError, ImportError) as error:
                raise self._failure("opening the database URL", error) from error
            event.listen(engine, "connect", _on_connect(engine))
            self._engine = engine
        return self._engine

    def _reflect(self) -> dict[str, Table]:
        """The declared tables as the database describes them, every named column checked."""
        if self._tables is not None:
            return self._tables
        schema = self.config.get("schema")
        with self._errors("connecting"), self._get_engine().connect() as conn:
            inspector = inspect(conn)
            columns = {name: {column["name"] for column in inspector.get_columns(name, schema)}
                       for name in self._specs if inspector.has_table(name, schema)}
            problems = self._missing(columns)
            if problems:
                where = f" in schema {schema!r}" if schema else ""
                raise SourceError(f"the database at {self._shown_url()} does not match the "
                                  f"source's tables{where}: {'; '.join(problems)}")
            metadata = MetaData(schema=schema)  # one, so keys between declared tables resolve
            self._tables = {name: Table(name, metadata, autoload_with=conn, resolve_fks=False)
                            for name in self._specs}
        return self._tables

    def _missing(self, columns: dict[str, set[str]]) -> list[str]:
        problems = []
        for name, spec in self._specs.items():
            if name not in columns:
                problems.append(f"table {name!r} does not exist")
                continue
            wanted = [(name, spec.get("tenant_column")), (name, spec.get("subject_column"))]
            if "via" in spec:
                column, parent, parent_column = parse_via(spec["via"])
                wanted += [(name, column), (parent, parent_column)]
            problems += [f"table {table!r} has no column {column!r}" for table, column in wanted
                         if column and table in columns and column not in columns[table]]
        return list(dict.fromkeys(problems))

    def _table(self, name: str) -> Table:
        tables = self._reflect()
        if name not in tables:
            raise SourceError(f"no table named {name!r} is declared in this source")
        return tables[name]

    def _plans(self, table: Table) -> list[ColumnPlan]:
        dialect = self._get_engine().dialect.name
        return [plan_for(column.type, dialect) for column in table.columns]

    def _arrow_schema(self, table: Table) -> pa.Schema:
        return pa.schema([pa.field(column.name, plan.arrow, nullable=bool(column.nullable))
                          for column, plan in zip(table.columns, self._plans(table),
                                                  strict=True)])

    def _shown_url(self) -> str:
        return self._url.render_as_string(hide_password=True) if self._url else "(no URL)"

    def _failure(self, doing: str, error: BaseException) -> SourceError:
        """The driver's first line after what we were doing, never with the password."""
        text = str(getattr(error, "orig", None) or error).strip()
        reason = text.splitlines()[0] if text else type(error).__name__
        message = f"{doing} failed on {self._shown_url()}: {reason}"
        password = self._url.password if self._url else None
        return SourceError(message.replace(str(password), "***") if password else message)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Database failures as a SourceError a human can act on."""
        try:
            yield
        except SQLAlchemyError as error:
            raise self._failure(doing, error) from error


def _on_connect(engine: Engine) -> Any:
    """Per-connection set-up: exact intervals from psycopg, foreign keys enforced by SQLite."""
    dialect, driver = engine.dialect.name, engine.dialect.driver

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        if driver == "psycopg":
            register_exact_intervals(dbapi_connection)
        if dialect == "sqlite":
            # SQLite enforces declared foreign keys only when asked; erase must not orphan.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return on_connect


def _bind_value(column: Column[Any], value: str) -> Any:
    """A scope value as the column's own Python type, so no database has to guess a cast."""
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return value
    try:
        if kind is int:
            return int(value)
        if kind is uuid.UUID:
            return uuid.UUID(value)
    except ValueError as error:
        raise SourceError(f"{value!r} cannot match column {column.table.name}.{column.name}, "
                          f"which holds {kind.__name__} values") from error
    return value
