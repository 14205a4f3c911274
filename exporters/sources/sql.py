"""An ``sql`` source: a tenant's rows in the tables of any database SQLAlchemy reaches.

Each table, declared or found in the schema (``sql_reflect``), is one dataset. A table holds
the tenant's rows either directly (``tenant_column``) or by referring to rows of another
table that do (``via``), to any depth; the chain is built as nested ``IN (SELECT ...)`` subqueries
with SQLAlchemy Core, so no value or name is ever formatted into SQL text.

For a single-person scope (``Scope.subject``) a table keeps the rows whose
``subject_column`` names the person, within the tenant; a ``via`` table without one
keeps the rows tied to the person's rows of its parent; a ``tenant_column`` table
without one holds nothing of the person (its rows are the whole tenant's, and
exporting or erasing them for one person would touch everybody else's data).

Reading a PostgreSQL table takes a fast path when the ``adbc-driver-postgresql`` package is
installed: the same scoped query runs as COPY BINARY and the ADBC driver decodes it into Arrow
in C, a few times faster than building batches from Python rows. Each column is selected so
that it arrives exactly as the generic path would build it, and is checked when it arrives
(``sql_types.fast_expression``, ``fast_array``); a table with a column that has no exact fast
form, a scope value of an unusual type, or a URL ADBC can't connect with is read the generic
way. The scope's values still never enter the SQL text: they are set as session settings,
through parameters, and the query reads them back.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import structlog
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    MetaData,
    Select,
    Table,
    Text,
    Uuid,
    any_,
    cast,
    create_engine,
    delete,
    event,
    false,
    func,
    inspect,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoReferenceError, SQLAlchemyError
from sqlalchemy.sql import sqltypes, visitors
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.types import TypeEngine

from exporters.sources.base import JSON_TEXT, Dataset, Scope, Source, SourceError, resolve_secret
from exporters.sources.sql_config import SqlConfig, parse_via
from exporters.sources.sql_reflect import table_specs
from exporters.sources.sql_types import (
    ColumnPlan,
    FastPathError,
    fast_array,
    fast_convertible,
    fast_expression,
    plan_for,
    register_exact_intervals,
    select_expression,
    to_batch,
)

ERASE_BATCH = 5_000  # rows per DELETE, each batch its own transaction
# PostgreSQL erases each batch in one statement picking rows by ctid; the generic batches of
# primary keys otherwise.
ERASE_BY_CTID = True
# PostgreSQL tables are read through the ADBC driver (COPY BINARY straight into Arrow) when it
# is installed and every column has an exact fast form; the generic path otherwise.
FAST_PATH = True
FAST_BATCH_BYTES = 4 << 20  # what ADBC decodes at a time, before the batches are cut to size
_PG_TEXT = postgresql.dialect(paramstyle="numeric_dollar")  # renders no value and no "%%"
_SETTING = "offboard.scope_{}"  # session settings carrying the scope's values
log = structlog.get_logger("offboard.sources.sql")


class SqlSource(Source):
    kind = "sql"
    config_schema = SqlConfig

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._found: dict[str, dict[str, Any]] = {}  # the tables exported, set by _reflect
        self._engine: Engine | None = None
        self._url: URL | None = None
        self._tables: dict[str, Table] | None = None

    def close(self) -> None:
        """Release the pooled connections; the next call connects afresh."""
        if self._engine is not None:
            self._engine.dispose()
        self._engine = self._url = self._tables = None

    # -- the contract --------------------------------------------------------------------

    @property
    def _specs(self) -> dict[str, dict[str, Any]]:
        """The exported tables' specs by name: declared, or found in the schema (``reflect``)."""
        self._reflect()
        return self._found

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
        where = self._in_scope(dataset.name, scope)
        query = (select(*(select_expression(column, plan)
                          for column, plan in zip(table.columns, plans, strict=True)))
                 .where(where)
                 .order_by(*table.primary_key.columns))
        schema = self._arrow_schema(table)
        if FAST_PATH and self._get_engine().dialect.name == "postgresql":
            return self._stream_fast(dataset.name, table, where, plans, schema, batch_rows,
                                     fallback=query)
        return self._stream(dataset.name, query, plans, schema, batch_rows)

    def _stream(self, name: str, query: Select[Any], plans: list[ColumnPlan], schema: pa.Schema,
                batch_rows: int) -> Iterator[pa.RecordBatch]:
        with self._errors(f"reading {name}"), self._get_engine().connect() as conn:
            # A server-side cursor: memory holds one batch whatever the table's size.
            result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(
                query)
            for rows in result.partitions():
                yield to_batch(rows, plans, schema)

    # -- the PostgreSQL fast path ---------------------------------------------------------

    def _stream_fast(self, name: str, table: Table, where: ColumnElement[bool],
                     plans: list[ColumnPlan], schema: pa.Schema, batch_rows: int,
                     fallback: Select[Any]) -> Iterator[pa.RecordBatch]:
        """The rows through ADBC, in batches of exactly ``batch_rows`` (the last one shorter),
        equal to the generic path's; that path instead when this one can't be exact."""
        statement = _fast_statement(table, where, plans)
        opened = self._open_fast(name, statement, plans) if statement is not None else None
        if opened is None:
            yield from self._stream(name, fallback, plans, schema, batch_rows)
            return
        connection, cursor, reader = opened
        width = len(plans)
        pending: list[pa.RecordBatch] = []
        waiting = 0
        ahead = _Prefetch(reader, lambda arrived: _fast_batch(arrived, plans, schema, table, width),
                          cancel=cursor.adbc_cancel)
        try:
            with self._fast_errors(f"reading {name}"):
                for converted in ahead:
                    batch = converted
                    while batch.num_rows:
                        take = min(batch_rows - waiting, batch.num_rows)
                        pending.append(batch.slice(0, take))
                        waiting += take
                        batch = batch.slice(take)
                        if waiting == batch_rows:
                            yield _joined(pending, schema)
                            pending, waiting = [], 0
                if waiting:
                    yield _joined(pending, schema)
        finally:
            ahead.close()
            _close_quietly(reader, cursor, connection)

    def _open_fast(self, name: str, statement: tuple[str, list[tuple[str, str]]],
                   plans: list[ColumnPlan]) -> tuple[Any, Any, pa.RecordBatchReader] | None:
        """The ADBC connection, cursor and reader of the query, or None when ADBC is missing,
        can't connect with this URL, or would not deliver every column exactly."""
        try:
            import adbc_driver_postgresql.dbapi as adbc
        except ImportError:
            return None
        sql, settings = statement
        assert self._url is not None  # made with the engine, before any read
        uri = (self._url.set(drivername="postgresql")
               .update_query_dict({"client_encoding": "UTF8"})  # Arrow strings are UTF-8
               .render_as_string(hide_password=False))
        try:
            connection = adbc.connect(uri, autocommit=True)
        except adbc.Error as error:
            log.warning("sql_fast_path_unavailable", dataset=name,
                        reason=str(self._failure("connecting through ADBC", error)))
            return None
        cursor = reader = None
        try:
            with self._fast_errors(f"reading {name}"):
                cursor = connection.cursor(adbc_stmt_kwargs={
                    "adbc.postgresql.batch_size_hint_bytes": str(FAST_BATCH_BYTES)})
                for setting, value in settings:  # values travel as parameters, never as SQL
                    cursor.execute("SELECT set_config($1, $2, false)", parameters=(setting, value))
                    cursor.fetchall()
                cursor.execute(sql)
                reader = cursor.fetch_record_batch()
            arrived = reader.schema
            if all(fast_convertible(arrived.field(index).type, plan.arrow)
                   for index, plan in enumerate(plans)):
                return connection, cursor, reader
            log.info("sql_fast_path_declined", dataset=name, arrived=str(arrived))
        except BaseException:
            _close_quietly(reader, cursor, connection)
            raise
        _close_quietly(reader, cursor, connection)
        return None

    @contextmanager
    def _fast_errors(self, doing: str) -> Iterator[None]:
        """ADBC's and Arrow's failures, and values the export can't hold, as a SourceError."""
        from adbc_driver_manager import Error as AdbcError

        try:
            yield
        except FastPathError as error:
            raise SourceError(f"{doing} failed: {error}") from error
        except (AdbcError, pa.ArrowException) as error:
            raise self._failure(doing, error) from error

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
        """Delete in batches of at most ``ERASE_BATCH`` rows, each its own transaction, so no
        transaction locks a whole tenant at once."""
        table, where = self._table(name), self._in_scope(name, scope)
        keys = list(table.primary_key.columns)
        removed = 0
        with self._errors(f"erasing {name}"):
            if not keys:  # nothing to batch by: one statement
                with self._get_engine().begin() as conn:
                    return conn.execute(delete(table).where(where)).rowcount
            if ERASE_BY_CTID and self._get_engine().dialect.name == "postgresql":
                return self._erase_by_ctid(name, table, where)
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

    def _erase_by_ctid(self, name: str, table: Table, where: ColumnElement[bool]) -> int:
        """PostgreSQL: one statement per batch, ``DELETE ... WHERE ctid = ANY(ARRAY(SELECT
        ctid ... LIMIT n)) AND <scope>``, a TID scan of rows the server picked itself, with no
        keys travelling to Python and back (several times faster than the generic batches).
        The scope is checked again on the rows deleted, so a row moved meanwhile is never
        taken for another."""
        ctid = literal_column("ctid")
        chosen = (select(ctid).select_from(table).where(where).limit(ERASE_BATCH)
                  .correlate(None).scalar_subquery())
        statement = delete(table).where(ctid == any_(func.array(chosen)), where)
        remaining = select(literal_column("1")).select_from(table).where(where).limit(1)
        removed = 0
        while True:
            with self._get_engine().begin() as conn:
                deleted = conn.execute(statement).rowcount
            removed += deleted
            # Whether rows remain is asked after the commit, holding no lock: cheap while they
            # do (the first match ends it), and it spares the last, empty DELETE, which would
            # scan the whole table inside a transaction.
            with self._get_engine().connect() as conn:
                if conn.execute(remaining).first() is None:
                    return removed
            if deleted == 0:
                raise SourceError(f"erasing {name}: rows in scope remain but DELETE removes "
                                  "none (a trigger or rule refuses it?)")

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
        """The exported tables as the database describes them, every named column checked."""
        if self._tables is not None:
            return self._tables
        schema = self.config.get("schema")
        with self._errors("connecting"), self._get_engine().connect() as conn:
            inspector = inspect(conn)
            specs = table_specs(self.config, inspector)
            columns = {name: {column["name"] for column in inspector.get_columns(name, schema)}
                       for name in specs if inspector.has_table(name, schema)}
            problems = _missing(specs, columns)
            if problems:
                where = f" in schema {schema!r}" if schema else ""
                raise SourceError(f"the database at {self._shown_url()} does not match the "
                                  f"source's tables{where}: {'; '.join(problems)}")
            metadata = MetaData(schema=schema)  # one, so keys between declared tables resolve
            self._tables = {name: Table(name, metadata, autoload_with=conn, resolve_fks=False)
                            for name in specs}
            self._found = specs
        return self._tables


    def _table(self, name: str) -> Table:
        tables = self._reflect()
        if name not in tables:
            raise SourceError(f"no table named {name!r} is declared in this source")
        return tables[name]

    def _plans(self, table: Table) -> list[ColumnPlan]:
        dialect = self._get_engine().dialect.name
        return [plan_for(column.type, dialect) for column in table.columns]

    def _arrow_schema(self, table: Table) -> pa.Schema:
        return pa.schema([pa.field(column.name, plan.arrow, nullable=bool(column.nullable),
                                   metadata=JSON_TEXT if plan.json_text else None)
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


def _missing(specs: dict[str, dict[str, Any]], columns: dict[str, set[str]]) -> list[str]:
    """Every table and column the specs name that the database lacks, in words."""
    problems = []
    for name, spec in specs.items():
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


def _fast_statement(table: Table, where: ColumnElement[bool], plans: list[ColumnPlan]
                    ) -> tuple[str, list[tuple[str, str]]] | None:
    """The fast path's SQL text and the session settings it reads the scope's values from, or
    None when a column or a scope value has no exact fast form.

    ADBC streams only a query without parameters (with parameters it loads the whole result),
    and no value is ever formatted into SQL text: each bound value becomes a session setting,
    set through a parameter, that the query reads once, in a scalar subquery.
    """
    columns = list(table.columns)
    selected = [fast_expression(column, plan) for column, plan in zip(columns, plans, strict=True)]
    if any(expression is None for expression in selected):
        return None
    # ADBC would flatten a two-dimensional value of an array column: count them, refuse them.
    guards = [func.array_ndims(column).label(f"offboard_ndims_{index}")
              for index, column in enumerate(columns) if isinstance(column.type, sqltypes.ARRAY)]
    settings: list[tuple[str, str]] = []
    refused = False

    def replace(element: Any) -> Any:
        nonlocal refused
        if not isinstance(element, BindParameter):
            return None
        kind = _setting_type(element.effective_value, element.type)
        if kind is None:
            refused = True
            return None
        name = _SETTING.format(len(settings))
        settings.append((name, str(element.effective_value)))
        return select(cast(func.current_setting(literal_column(f"'{name}'")), kind)
                      ).scalar_subquery()

    scoped = visitors.replacement_traverse(where, {}, replace)
    if refused:
        return None
    query = select(*selected, *guards).where(scoped).order_by(*table.primary_key.columns)
    compiled = query.compile(dialect=_PG_TEXT)
    if compiled.params:  # something bound that was not replaced: never run it as text
        return None
    return str(compiled), settings


def _setting_type(value: Any, column_type: TypeEngine[Any]) -> TypeEngine[Any] | None:
    """The SQL type a session setting (text) is cast to, to compare as the bound value would."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return BigInteger() if -(1 << 63) <= value < (1 << 63) else None
    if isinstance(value, uuid.UUID):
        return Uuid()
    if isinstance(value, str) and isinstance(column_type, sqltypes.String) and not isinstance(
            column_type, sqltypes.Enum | sqltypes.CHAR):
        return Text()  # not VARCHAR(n): a cast to it would cut a longer value short
    return None


def _fast_batch(arrived: pa.RecordBatch, plans: list[ColumnPlan], schema: pa.Schema,
                table: Table, width: int) -> pa.RecordBatch:
    """An ADBC batch as the generic path would have built it, every value checked."""
    arrays = []
    for index, plan in enumerate(plans):
        try:
            arrays.append(fast_array(arrived.column(index), plan.arrow))
        except FastPathError as error:
            raise FastPathError(f"column {table.columns[index].name}: {error}") from error
    for index in range(width, arrived.num_columns):  # the array dimension counts
        most = pc.max(arrived.column(index)).as_py()
        if most is not None and most > 1:
            column = int(arrived.schema.field(index).name.removeprefix("offboard_ndims_"))
            raise FastPathError(f"column {table.columns[column].name} holds an array of {most} "
                                "dimensions; the export reads one")
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class _Prefetch:
    """Reads and converts ADBC's batches in a thread, at most ``ahead`` of them waiting, so
    that the server's COPY and ADBC's decoding go on while the consumer writes a batch."""

    _DONE = object()

    def __init__(self, reader: pa.RecordBatchReader,
                 convert: Callable[[pa.RecordBatch], pa.RecordBatch], cancel: Callable[[], None],
                 ahead: int = 2) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._cancel = cancel
        self._thread = threading.Thread(target=self._run, args=(reader, convert), daemon=True,
                                        name="offboard-sql-prefetch")
        self._thread.start()

    def _run(self, reader: pa.RecordBatchReader,
             convert: Callable[[pa.RecordBatch], pa.RecordBatch]) -> None:
        try:
            for arrived in reader:
                if not self._put(convert(arrived)):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            self._put(error)
            return
        self._put(self._DONE)

    def _put(self, item: Any) -> bool:
        """Queue ``item`` unless the consumer has gone; False if it has."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
            except queue.Full:
                continue
            return True
        return False

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while (item := self._queue.get()) is not self._DONE:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop reading (cancelling a read under way) and wait for the thread to end, so that
        nothing uses the connection when it is closed."""
        self._stop.set()
        if self._thread.is_alive():
            with suppress(Exception):
                self._cancel()
        self._thread.join()


def _joined(pieces: list[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    if len(pieces) == 1:
        return pieces[0]
    return pa.Table.from_batches(pieces, schema).combine_chunks().to_batches()[0]


def _close_quietly(*handles: Any) -> None:
    """Close what the fast path opened, reader first: ADBC refuses to close a connection
    whose statement is open."""
    for handle in handles:
        if handle is not None:
            with suppress(Exception):  # best effort: an error already raised is the one to tell
                handle.close()


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
