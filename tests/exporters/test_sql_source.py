"""The ``sql`` source against a real database.

PostgreSQL when ``TEST_DATABASE_URL`` names one (tables live in the schema
``sqlsrc_test``, dropped before and after), otherwise a temporary SQLite file.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from time import monotonic, sleep
from typing import Any

import pyarrow as pa
import pytest
from marshmallow import ValidationError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import IntegrityError

from exporters.sources import sql as sql_module
from exporters.sources.base import Dataset, Scope, SourceError
from exporters.sources.sql import SqlSource
from exporters.sources.sql_types import parse_pg_interval

PG_URL = os.environ.get("TEST_DATABASE_URL")
HAVE_ADBC = importlib.util.find_spec("adbc_driver_postgresql") is not None
SCHEMA = "sqlsrc_test"
ACME, GLOBEX = Scope("acme"), Scope("globex")
BOB = "bob@example.test"

CHAIN = [
    {"name": "accounts", "category": "account", "tenant_column": "tenant_id",
     "subject_column": "email"},
    {"name": "posts", "category": "content", "via": "account_id -> accounts.id"},
    {"name": "comments", "category": "content", "via": "post_id -> posts.id",
     "subject_column": "author_email"},
    {"name": "typed", "category": "usage", "tenant_column": "tenant_id"},
]

PG_TYPED = """CREATE TABLE {p}typed (
    id BIGINT PRIMARY KEY, tenant_id TEXT NOT NULL, small SMALLINT, medium INTEGER, big BIGINT,
    exact NUMERIC(38, 9), wide NUMERIC(50, 5), loose NUMERIC, single REAL, dbl DOUBLE PRECISION,
    label VARCHAR(20), body TEXT, flag BOOLEAN, day DATE, at TIME, at_tz TIMETZ, ts TIMESTAMP,
    tstz TIMESTAMPTZ, span INTERVAL, uid UUID, doc JSON, docb JSONB, nums INTEGER[], tags TEXT[],
    uids UUID[], blob BYTEA, addr INET)"""
PG_TYPED_ROWS = """INSERT INTO {p}typed VALUES
    (1, 'acme', -32768, 2147483647, 9223372036854775807, 12345678901234567890.123456789,
     123456789012345678901234567890123456789012345.12345, 0.0000001, 1.5, 2.25, 'x', 'héllo',
     true, '2024-02-29', '23:59:59.999999', '03:04:05+02', '2024-01-02 03:04:05.5',
     '2024-01-02 03:04:05.5+02', '1 year 2 mons -3 days 04:05:06.789',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{"b": 1, "a": [1, 2]}}', '{{"b": 1, "a": "x"}}',
     '{{1,NULL,3}}', '{{a,b}}', '{{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}}', '\\x00ff',
     '10.0.0.1/8'),
    (2, 'acme', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (3, 'globex', 7, 7, 7, 7, 7, 7, 7, 7, 'g', 'g', false, '2020-01-01', '00:00:00', '00:00:00+00',
     '2020-01-01', '2020-01-01 00:00:00+00', '1 day', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12',
     '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', '\\x01', '10.0.0.2')"""
PG_TYPED_SCHEMA = [
    ("id", pa.int64()), ("tenant_id", pa.string()), ("small", pa.int16()),
    ("medium", pa.int32()), ("big", pa.int64()), ("exact", pa.decimal128(38, 9)),
    ("wide", pa.decimal256(50, 5)), ("loose", pa.string()), ("single", pa.float64()),
    ("dbl", pa.float64()), ("label", pa.string()), ("body", pa.string()), ("flag", pa.bool_()),
    ("day", pa.date32()), ("at", pa.time64("us")), ("at_tz", pa.string()),
    ("ts", pa.timestamp("us")), ("tstz", pa.timestamp("us", tz="UTC")),
    ("span", pa.month_day_nano_interval()), ("uid", pa.string()), ("doc", pa.string()),
    ("docb", pa.string()), ("nums", pa.list_(pa.int32())), ("tags", pa.list_(pa.string())),
    ("uids", pa.list_(pa.string())), ("blob", pa.binary()), ("addr", pa.string()),
]
PG_TYPED_VALUES = {
    "id": 1, "tenant_id": "acme", "small": -32768, "medium": 2147483647,
    "big": 9223372036854775807, "exact": Decimal("12345678901234567890.123456789"),
    "wide": Decimal("123456789012345678901234567890123456789012345.12345"),
    "loose": "0.0000001", "single": 1.5, "dbl": 2.25, "label": "x", "body": "héllo",
    "flag": True, "day": date(2024, 2, 29), "at": time(23, 59, 59, 999999), "at_tz": "03:04:05+02",
    "ts": datetime(2024, 1, 2, 3, 4, 5, 500000),
    "tstz": datetime(2024, 1, 2, 1, 4, 5, 500000, tzinfo=UTC),
    "span": (14, -3, (4 * 3600 + 5 * 60 + 6) * 10**9 + 789 * 10**6),
    "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "doc": '{"b": 1, "a": [1, 2]}',
    "docb": '{"a": "x", "b": 1}', "nums": [1, None, 3], "tags": ["a", "b"],
    "uids": ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None], "blob": b"\x00\xff",
    "addr": "10.0.0.1/8",
}

LITE_TYPED = """CREATE TABLE typed (
    id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, small SMALLINT, medium INTEGER, big BIGINT,
    exact NUMERIC(10, 2), loose NUMERIC, single REAL, dbl DOUBLE, label VARCHAR(20), body TEXT,
    flag BOOLEAN, day DATE, at TIME, ts DATETIME, doc JSON, blob BLOB)"""
LITE_TYPED_ROWS = """INSERT INTO typed VALUES
    (1, 'acme', -32768, 4294967296, 9223372036854775807, 12.34, 1.5, 1.5, 2.25, 'x', 'héllo', 1,
     '2024-02-29', '23:59:59.999999', '2024-01-02 03:04:05.500000', '{"b": 1, "a": [1, 2]}',
     x'00ff'),
    (2, 'acme', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL),
    (3, 'globex', 7, 7, 7, 7, 7, 7, 7, 'g', 'g', 0, '2020-01-01', '00:00:00.000000',
     '2020-01-01 00:00:00.000000', '{}', x'01')"""
LITE_TYPED_SCHEMA = [
    ("id", pa.int64()), ("tenant_id", pa.string()), ("small", pa.int64()),
    ("medium", pa.int64()), ("big", pa.int64()), ("exact", pa.decimal128(10, 2)),
    ("loose", pa.string()), ("single", pa.float64()), ("dbl", pa.float64()),
    ("label", pa.string()), ("body", pa.string()), ("flag", pa.bool_()), ("day", pa.date32()),
    ("at", pa.time64("us")), ("ts", pa.timestamp("us")), ("doc", pa.string()),
    ("blob", pa.binary()),
]
LITE_TYPED_VALUES = {
    "id": 1, "tenant_id": "acme", "small": -32768, "medium": 4294967296,
    "big": 9223372036854775807, "exact": Decimal("12.34"), "loose": "1.5", "single": 1.5,
    "dbl": 2.25, "label": "x", "body": "héllo", "flag": True, "day": date(2024, 2, 29),
    "at": time(23, 59, 59, 999999), "ts": datetime(2024, 1, 2, 3, 4, 5, 500000),
    "doc": '{"b": 1, "a": [1, 2]}', "blob": b"\x00\xff",
}


@dataclass
class Db:
    url: str
    schema: str | None
    engine: Engine

    @property
    def prefix(self) -> str:
        return f"{self.schema}." if self.schema else ""

    def ids(self, table: str) -> list[int]:
        with self.engine.connect() as conn:
            return [row[0] for row in conn.exec_driver_sql(
                f"SELECT id FROM {self.prefix}{table} ORDER BY id")]


def _statements(db: Db) -> list[str]:
    p, pg = db.prefix, db.schema is not None
    return [
        f"CREATE TABLE {p}accounts (id INTEGER PRIMARY KEY, tenant_id VARCHAR(20) NOT NULL, "
        "email VARCHAR(100) NOT NULL, name TEXT)",
        f"CREATE TABLE {p}posts (id INTEGER PRIMARY KEY, "
        f"account_id INTEGER NOT NULL REFERENCES {p}accounts (id), title TEXT)",
        f"CREATE TABLE {p}comments (id INTEGER PRIMARY KEY, "
        f"post_id INTEGER NOT NULL REFERENCES {p}posts (id), author_email VARCHAR(100), body TEXT)",
        f"CREATE TABLE {p}likes (id INTEGER PRIMARY KEY, tenant_id VARCHAR(20) NOT NULL, "
        f"account_id INTEGER NOT NULL REFERENCES {p}accounts (id))",
        f"INSERT INTO {p}accounts VALUES (1, 'acme', 'alice@acme.test', 'Alice'), "
        f"(2, 'acme', '{BOB}', 'Bob'), (3, 'globex', '{BOB}', 'Bob G'), "
        "(4, 'globex', 'carol@globex.test', 'Carol')",
        f"INSERT INTO {p}posts VALUES (12, 2, 'b1'), (10, 1, 'a1'), (14, 4, 'g-carol'), "
        "(11, 1, 'a2'), (13, 3, 'g-bob')",
        # Out of key order on purpose: the source must sort, not trust the heap.
        f"INSERT INTO {p}comments VALUES (103, 12, '{BOB}', 'x'), (100, 10, '{BOB}', 'x'), "
        "(106, 14, 'carol@globex.test', 'x'), (101, 10, 'alice@acme.test', 'x'), "
        "(104, 11, 'alice@acme.test', 'x'), (102, 12, 'alice@acme.test', 'x'), "
        f"(105, 13, '{BOB}', 'x')",
        f"INSERT INTO {p}likes VALUES (1000, 'acme', 2), (1001, 'globex', 4)",
        *((PG_TYPED.format(p=p), PG_TYPED_ROWS.format(p=p)) if pg
          else (LITE_TYPED, LITE_TYPED_ROWS)),
    ]


@pytest.fixture
def db(tmp_path: Any) -> Iterator[Db]:
    if PG_URL:
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {SCHEMA}")
        database = Db(PG_URL, SCHEMA, engine)
    else:
        engine = create_engine(f"sqlite:///{tmp_path / 'source.db'}")
        event.listen(engine, "connect",
                     lambda dbapi, _: dbapi.execute("PRAGMA foreign_keys=ON"))
        database = Db(engine.url.render_as_string(hide_password=False), None, engine)
    with engine.begin() as conn:
        for statement in _statements(database):
            conn.exec_driver_sql(statement)
    yield database
    if PG_URL:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    engine.dispose()


@pytest.fixture
def make_source(db: Db) -> Iterator[Callable[..., SqlSource]]:
    made: list[SqlSource] = []

    def make(tables: list[dict[str, Any]] | None = CHAIN, url: str | None = None,
             reflect: dict[str, Any] | None = None) -> SqlSource:
        config: dict[str, Any] = {"url": url or db.url}
        if tables is not None:
            config["tables"] = tables
        if reflect is not None:
            config["reflect"] = reflect
        if db.schema:
            config["schema"] = db.schema
        source = SqlSource(SqlSource.validate(config))
        made.append(source)
        return source

    yield make
    for source in made:  # before the schema is dropped: no connection may hold a lock
        source.close()


def _dataset(source: SqlSource, name: str, scope: Scope = ACME) -> Dataset:
    return next(dataset for dataset in source.datasets(scope) if dataset.name == name)


def _rows(source: SqlSource, name: str, scope: Scope = ACME) -> list[dict[str, Any]]:
    batches = list(source.read(_dataset(source, name, scope), scope, 100))
    return [row for batch in batches for row in batch.to_pylist()]


def _ids(source: SqlSource, name: str, scope: Scope = ACME) -> list[int]:
    return [row["id"] for row in _rows(source, name, scope)]


# -- check ---------------------------------------------------------------------------------


def test_check_accepts_the_declared_tables(make_source: Callable[..., SqlSource]) -> None:
    make_source().check()


def test_check_names_a_missing_table(make_source: Callable[..., SqlSource]) -> None:
    source = make_source([CHAIN[0], {"name": "ghosts", "tenant_column": "tenant_id"}])
    with pytest.raises(SourceError) as caught:
        source.check()
    message = str(caught.value)
    assert "table 'ghosts' does not exist" in message
    assert "accounts" not in message


def test_check_names_every_missing_column(make_source: Callable[..., SqlSource]) -> None:
    source = make_source([
        {"name": "accounts", "tenant_column": "tenant", "subject_column": "mail"},
        {"name": "posts", "via": "acct_id -> accounts.id"},
        {"name": "comments", "via": "post_id -> posts.uid"},
    ])
    with pytest.raises(SourceError) as caught:
        source.check()
    message = str(caught.value)
    for missing in ("table 'accounts' has no column 'tenant'",
                    "table 'accounts' has no column 'mail'",
                    "table 'posts' has no column 'acct_id'",
                    "table 'posts' has no column 'uid'"):
        assert missing in message
    assert "'post_id'" not in message


def test_check_unreachable_database_hides_the_password(
        make_source: Callable[..., SqlSource]) -> None:
    source = make_source(url="postgresql+psycopg://offboard:s3cret-pw@127.0.0.1:1/none")
    with pytest.raises(SourceError) as caught:
        source.check()
    message = str(caught.value)
    assert "postgresql+psycopg://offboard:***@127.0.0.1:1/none" in message
    assert "s3cret-pw" not in message
    assert "s3cret-pw" not in repr(caught.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("not a url s3cret-pw", "not a valid SQLAlchemy URL"),
    ("nosuchdb://user:s3cret-pw@host/db", "nosuchdb://user:***@host/db"),
    # The driver repeats the option in its error: the password must still not show.
    ("postgresql+psycopg://user:s3cret-pw@127.0.0.1:1/db?sslmode=s3cret-pw",
     'invalid sslmode value: "***"'),
])
def test_check_bad_url_hides_the_password(make_source: Callable[..., SqlSource],
                                          url: str, shown: str) -> None:
    with pytest.raises(SourceError) as caught:
        make_source(url=url).check()
    assert shown in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


def test_url_from_the_environment(make_source: Callable[..., SqlSource], db: Db,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLSRC_TEST_URL", db.url)
    source = make_source(url="env:SQLSRC_TEST_URL")
    source.check()
    assert source.count(ACME)["accounts"] == 2
    assert source.config["url"] == "env:SQLSRC_TEST_URL"

    monkeypatch.delenv("SQLSRC_TEST_URL")
    with pytest.raises(SourceError, match="SQLSRC_TEST_URL"):
        make_source(url="env:SQLSRC_TEST_URL").check()


# -- datasets ------------------------------------------------------------------------------


def test_datasets_one_per_table_with_category(make_source: Callable[..., SqlSource],
                                              db: Db) -> None:
    datasets = make_source().datasets(ACME)
    assert [(d.name, d.category) for d in datasets] == [
        ("accounts", "account"), ("posts", "content"), ("comments", "content"),
        ("typed", "usage")]
    integer = pa.int32() if db.schema else pa.int64()  # SQLite integers are all 8 bytes
    assert [(f.name, f.type) for f in datasets[1].schema] == [
        ("id", integer), ("account_id", integer),
        ("title", pa.string())]


def test_datasets_map_column_types(make_source: Callable[..., SqlSource], db: Db) -> None:
    schema = _dataset(make_source(), "typed").schema
    expected = PG_TYPED_SCHEMA if db.schema else LITE_TYPED_SCHEMA
    assert [(field.name, field.type) for field in schema] == expected
    assert not schema.field("tenant_id").nullable
    assert schema.field("small").nullable


# -- read ----------------------------------------------------------------------------------


def test_read_gives_exact_values(make_source: Callable[..., SqlSource], db: Db) -> None:
    rows = _rows(make_source(), "typed")
    expected = PG_TYPED_VALUES if db.schema else LITE_TYPED_VALUES
    assert [row["id"] for row in rows] == [1, 2]
    assert rows[0] == expected
    assert str(rows[0]["exact"]) == str(expected["exact"])  # same digits, same scale
    assert rows[1] == {name: (2 if name == "id" else "acme" if name == "tenant_id" else None)
                       for name in expected}


def test_read_follows_the_chain_within_the_tenant(make_source: Callable[..., SqlSource]) -> None:
    source = make_source()
    assert [_ids(source, name) for name in ("accounts", "posts", "comments")] == [
        [1, 2], [10, 11, 12], [100, 101, 102, 103, 104]]
    assert [_ids(source, name, GLOBEX) for name in ("accounts", "posts", "comments")] == [
        [3, 4], [13, 14], [105, 106]]
    assert _ids(source, "typed", Scope("nobody")) == []


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "generic-path"])
def test_read_in_batches(make_source: Callable[..., SqlSource], db: Db, fast: bool,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    if fast and not (db.schema and HAVE_ADBC):
        pytest.skip("the fast path reads PostgreSQL through ADBC")
    monkeypatch.setattr(sql_module, "FAST_PATH", fast)
    source = make_source()
    dataset = _dataset(source, "comments")
    cursors: list[str] = []

    def spy(_conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "comments" in statement:
            cursors.append(type(cursor).__name__)

    event.listen(Engine, "before_cursor_execute", spy)
    try:
        batches = list(source.read(dataset, ACME, 2))
    finally:
        event.remove(Engine, "before_cursor_execute", spy)
    if db.schema:  # PostgreSQL: rows stay on the server until fetched, batch by batch
        # (the fast path streams COPY BINARY through ADBC, not through SQLAlchemy)
        assert cursors == ([] if fast else ["ServerCursor"])
    assert [batch.num_rows for batch in batches] == [2, 2, 1]
    assert all(batch.schema == dataset.schema for batch in batches)
    assert [row["id"] for batch in batches for row in batch.to_pylist()] == [
        100, 101, 102, 103, 104]
    assert [batch.num_rows for batch in source.read(dataset, ACME, 1)] == [1] * 5


def test_read_rejects_an_undeclared_dataset(make_source: Callable[..., SqlSource]) -> None:
    with pytest.raises(SourceError, match="ghosts"):
        make_source().read(Dataset("ghosts", "content", pa.schema([])), ACME, 10)


def test_subject_scope(make_source: Callable[..., SqlSource]) -> None:
    source = make_source()
    bob = Scope("acme", BOB)
    assert _ids(source, "accounts", bob) == [2]
    assert _ids(source, "posts", bob) == [12]  # via his account
    assert _ids(source, "comments", bob) == [100, 103]  # his own, on anyone's acme post
    assert _ids(source, "typed", bob) == []  # the tenant's rows, nobody's in particular
    assert source.count(bob) == {"accounts": 1, "posts": 1, "comments": 2, "typed": 0}
    assert [_ids(source, name, Scope("globex", BOB)) for name in ("accounts", "comments")] == [
        [3], [105]]


def test_tenant_value_takes_the_column_type(make_source: Callable[..., SqlSource]) -> None:
    source = make_source([{"name": "accounts", "tenant_column": "id"}])
    assert _ids(source, "accounts", Scope("2")) == [2]
    with pytest.raises(SourceError, match=r"accounts\.id"):
        source.count(Scope("two"))


# -- reflect -------------------------------------------------------------------------------

FOUND = [("accounts", "tenant_column", "tenant_id"), ("likes", "tenant_column", "tenant_id"),
         ("typed", "tenant_column", "tenant_id"), ("posts", "via", "account_id -> accounts.id"),
         ("comments", "via", "post_id -> posts.id")]


def _found(source: SqlSource) -> list[tuple[str, str, str]]:
    return [(dataset.name, *next((key, spec[key]) for key in ("tenant_column", "via")
                                 if key in spec))
            for dataset in source.datasets(ACME) for spec in [source._specs[dataset.name]]]


def test_reflect_finds_the_tenant_tables_and_their_children(
        make_source: Callable[..., SqlSource], db: Db) -> None:
    source = make_source(None, reflect={"tenant_column": "tenant_id", "subject_column": "email",
                                        "categories": {"accounts": "account"}})
    assert _found(source) == FOUND  # parents before the children found through them
    assert [(d.name, d.category) for d in source.datasets(ACME)] == [
        ("accounts", "account"), ("likes", "content"), ("typed", "content"),
        ("posts", "content"), ("comments", "content")]
    declared = make_source()
    for name in ("accounts", "posts", "comments", "typed"):
        assert _rows(source, name) == _rows(declared, name)
    assert _ids(source, "comments", GLOBEX) == [105, 106]
    assert _ids(source, "posts", Scope("acme", BOB)) == [12]  # the subject column was found

    removed = source.erase(ACME)  # children first: no foreign key refuses a delete
    assert removed == {"accounts": 2, "likes": 1, "typed": 2, "posts": 3, "comments": 5}
    assert set(source.count(ACME).values()) == {0}
    assert source.count(GLOBEX) == {"accounts": 2, "likes": 1, "typed": 1, "posts": 2,
                                    "comments": 2}
    assert db.ids("comments") == [105, 106]


def test_reflect_with_declared_tables_excludes_and_no_keys(
        make_source: Callable[..., SqlSource]) -> None:
    comments = {"name": "comments", "category": "usage", "via": "post_id -> posts.id",
                "subject_column": "author_email"}
    source = make_source([comments], reflect={"tenant_column": "tenant_id",
                                              "exclude": ["likes", "typed"]})
    assert [name for name, *_ in _found(source)] == ["accounts", "posts", "comments"]
    assert source._specs["comments"] == comments  # declared takes the found one's place
    assert _ids(source, "comments", Scope("acme", BOB)) == [100, 103]

    direct = make_source(None, reflect={"tenant_column": "tenant_id",
                                        "follow_foreign_keys": False})
    assert [name for name, *_ in _found(direct)] == ["accounts", "likes", "typed"]


@pytest.mark.parametrize(("tables", "reflect", "message"), [
    (None, {"tenant_column": "org_id"}, "reflect found no table with the column 'org_id'"),
    ([{"name": "accounts", "via": "id -> comments.post_id"}], {"tenant_column": "tenant_id"},
     "the references form a cycle: accounts -> comments -> posts -> accounts"),
    ([{"name": "extra", "via": "id -> ghosts.id"}], {"tenant_column": "tenant_id"},
     "table 'extra' refers to 'ghosts', which is neither declared nor found by reflect"),
])
def test_reflect_names_what_cannot_be_resolved(make_source: Callable[..., SqlSource],
                                               tables: list[dict[str, Any]] | None,
                                               reflect: dict[str, Any], message: str) -> None:
    with pytest.raises(SourceError) as caught:
        make_source(tables, reflect=reflect).check()
    assert message in str(caught.value)


def test_reflect_config_is_validated() -> None:
    with pytest.raises(ValidationError) as caught:
        SqlSource.validate({"url": "sqlite://"})
    assert caught.value.messages == {"tables": ["give tables, reflect, or both"]}
    with pytest.raises(ValidationError) as caught:
        SqlSource.validate({"url": "sqlite://", "reflect": {
            "tenant_column": "t", "categories": {"a": "nope"}, "exclude": ["x y"]}})
    assert set(caught.value.messages["reflect"]) == {"categories", "exclude"}
    with pytest.raises(ValidationError, match="declared twice"):
        SqlSource.validate({"url": "sqlite://", "reflect": {"tenant_column": "t"},
                            "tables": [{"name": "a", "tenant_column": "t"}] * 2})


# -- erase and count -----------------------------------------------------------------------


def test_foreign_keys_refuse_a_parent_first_delete(db: Db) -> None:
    """The premise of the erase tests: deleting parents first fails in this database."""
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM {db.prefix}posts WHERE account_id = 1")


def test_erase_children_first_and_only_the_tenant(make_source: Callable[..., SqlSource],
                                                  db: Db) -> None:
    source = make_source()
    assert source.count(ACME) == {"accounts": 2, "posts": 3, "comments": 5, "typed": 2}
    with db.engine.begin() as conn:  # likes is not declared here; it would block accounts
        conn.exec_driver_sql(f"DELETE FROM {db.prefix}likes")

    removed = source.erase(ACME)

    assert removed == {"accounts": 2, "posts": 3, "comments": 5, "typed": 2}
    assert list(removed) == ["accounts", "posts", "comments", "typed"]
    assert source.count(ACME) == {"accounts": 0, "posts": 0, "comments": 0, "typed": 0}
    assert source.count(GLOBEX) == {"accounts": 2, "posts": 2, "comments": 2, "typed": 1}
    # Nothing orphaned, the other tenant untouched, row for row.
    assert [db.ids(name) for name in ("accounts", "posts", "comments", "typed")] == [
        [3, 4], [13, 14], [105, 106], [3]]


def test_erase_refuses_to_orphan_rows_of_undeclared_tables(
        make_source: Callable[..., SqlSource], db: Db) -> None:
    source = make_source([CHAIN[0]])  # posts refer to accounts but are not declared
    with pytest.raises(SourceError, match="erasing accounts"):
        source.erase(ACME)
    assert db.ids("accounts") == [1, 2, 3, 4]
    assert db.ids("posts") == [10, 11, 12, 13, 14]


def test_erase_follows_foreign_keys_not_only_declaration_order(
        make_source: Callable[..., SqlSource], db: Db) -> None:
    likes = {"name": "likes", "category": "usage", "tenant_column": "tenant_id"}
    source = make_source([likes, *CHAIN])  # likes -> accounts, yet declared before it
    assert source.erase(ACME) == {"likes": 1, "accounts": 2, "posts": 3, "comments": 5,
                                  "typed": 2}
    assert db.ids("likes") == [1001]
    assert db.ids("accounts") == [3, 4]
    assert set(source.count(ACME).values()) == {0}


def test_erase_in_bounded_batches(make_source: Callable[..., SqlSource], db: Db,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_module, "ERASE_BATCH", 2)
    deletes: list[str] = []

    def spy(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE") and "comments" in statement:
            deletes.append(statement)

    source = make_source([spec for spec in CHAIN if spec["name"] != "typed"])
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM {db.prefix}likes")
    event.listen(Engine, "before_cursor_execute", spy)
    try:
        removed = source.erase(ACME)
    finally:
        event.remove(Engine, "before_cursor_execute", spy)
    assert removed == {"accounts": 2, "posts": 3, "comments": 5}
    assert len(deletes) == 3  # 5 comments, 2 keys per DELETE
    assert db.ids("comments") == [105, 106]


def test_close_disposes_the_engine_and_a_later_call_reconnects(
        make_source: Callable[..., SqlSource]) -> None:
    source = make_source()
    disposed: list[Engine] = []

    def on_dispose(engine: Engine) -> None:
        disposed.append(engine)

    assert source.count(ACME)["accounts"] == 2
    event.listen(Engine, "engine_disposed", on_dispose)
    try:
        source.close()
        assert len(disposed) == 1
        assert source.count(GLOBEX)["accounts"] == 2
    finally:
        event.remove(Engine, "engine_disposed", on_dispose)


# -- PostgreSQL interval text ----------------------------------------------------------------


@pytest.mark.parametrize(("text", "parts"), [
    ("1 year 2 mons -3 days +04:05:06.789", (14, -3, 14_706_789_000_000)),
    ("-1 years -2 mons +3 days -04:05:06", (-14, 3, -14_706_000_000_000)),
    ("1 day", (0, 1, 0)),
    ("00:00:00", (0, 0, 0)),
    ("-00:00:00.5", (0, 0, -500_000_000)),
    ("100:00:00.000001", (0, 0, 360_000_000_001_000)),
])
def test_pg_interval_text_keeps_months_days_and_time_apart(
        text: str, parts: tuple[int, int, int]) -> None:
    assert parse_pg_interval(text) == parts


@pytest.mark.parametrize("text", ["", "P1Y2M", "1 fortnight"])
def test_pg_interval_text_other_styles_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="IntervalStyle"):
        parse_pg_interval(text)


# -- the PostgreSQL fast path ----------------------------------------------------------------

# Every type the sql source maps, with the values that tell exact from nearly so: NULL next
# to the empty string, 38-digit decimals, REAL's shortest digits, time zones, intervals that
# keep months and days apart, uuid, JSON text as stored, arrays with NULLs, bytea.
EVERY_TYPE = """CREATE TABLE {p}every (
    id BIGINT PRIMARY KEY, tenant_id VARCHAR(20) NOT NULL, small SMALLINT, medium INTEGER,
    big BIGINT, d38 NUMERIC(38, 9), d38i NUMERIC(38, 0), money2 NUMERIC(12, 2),
    wide NUMERIC(50, 5), loose NUMERIC, single REAL, dbl DOUBLE PRECISION, body TEXT,
    label VARCHAR(10), code CHAR(4), flag BOOLEAN, day DATE, at TIME, at_tz TIMETZ,
    ts TIMESTAMP, tstz TIMESTAMPTZ, span INTERVAL, uid UUID, doc JSON, docb JSONB,
    nums INTEGER[], tags TEXT[], uids UUID[], amounts NUMERIC(10, 2)[], singles REAL[],
    days DATE[], stamps TIMESTAMPTZ[], flags BOOLEAN[], spans INTERVAL[], blobs BYTEA[],
    blob BYTEA, addr INET, cash MONEY, mood {p}mood)"""
EVERY_ROWS = """INSERT INTO {p}every VALUES
    (1, 'acme', -32768, -2147483648, -9223372036854775808,
     12345678901234567890123456789.123456789, -99999999999999999999999999999999999999, 0.10,
     123456789012345678901234567890123456789012345.12345, 1e-30, 1.1, 0.1, '', '', '', false,
     '0001-01-01', '00:00:00', '00:00:00-12', '0001-01-01 00:00:00', '2024-03-31 01:30:00.000001+02',
     '-1 years -2 mons +3 days -04:05:06.000001', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
     '{{"b": 1,  "a": [1, 2], "b": 2}}', '{{"b": 1, "a": null}}', '{{}}', '{{"",NULL}}', '{{}}',
     '{{0.10,NULL}}', '{{1.1,NULL}}', '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', '', '::1', 0, 'sad'),
    (2, 'acme', 32767, 2147483647, 9223372036854775807,
     -99999999999999999999999999999.999999999, 99999999999999999999999999999999999999, -0.01,
     -0.00001, 'NaN', 3.4028235e38, -0.0, E'quote" comma, newline\\n tab\\t back\\\\slash é 😀',
     'ten chars!', 'ab', true, '9999-12-31', '23:59:59.999999', '23:59:59.999999+14',
     '9999-12-31 23:59:59.999999', '1970-01-01 00:00:00+00', '1 mon 1 day 00:00:00.000001',
     'ffffffff-ffff-ffff-ffff-ffffffffffff', 'null', '[1, 2.50, "x"]', '{{1,NULL,-3}}',
     '{{a,"b,c","d\\"e",NULL,"NULL",""}}', '{{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}}',
     '{{-12345678.90}}', '{{-0,3.4028235e38}}', '{{2024-02-29,NULL}}',
     '{{"2024-01-01 00:00:00+05:30",NULL}}', '{{t,f,NULL}}', '{{"1 year",NULL,"-00:00:01"}}',
     '{{"\\\\x00",NULL,""}}', '\\x00ff10', '10.0.0.1/8', -12.34, 'ok'),
    (3, 'acme', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (4, 'acme', 0, 0, 0, 0, 0, 0, 0, 0, 'Infinity', '-Infinity', 'x', 'x', 'x', true,
     '2024-02-29', '12:00:00', '12:00:00+05:30', '2024-02-29 12:00:00', '2024-02-29 12:00:00-08',
     '0 seconds', '00000000-0000-0000-0000-000000000000', '{{}}', '[]', '{{NULL}}', '{{NULL}}',
     '{{NULL}}', '{{NULL}}', '{{NULL}}', '{{NULL}}', '{{NULL}}', '{{NULL}}', '{{NULL}}', '{{NULL}}',
     '\\x', '192.168.0.1', 1e6, 'sad'),
    (5, 'globex', 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 'g', 'g', 'g', true, '2020-01-01', '01:00:00',
     '01:00:00+00', '2020-01-01', '2020-01-01 00:00:00+00', '1 day',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '1', '1', '{{1}}', '{{g}}', '{{}}', '{{}}', '{{}}',
     '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', '\\x01', '10.0.0.2', 1, 'ok')"""
EVERY = {"name": "every", "category": "usage", "tenant_column": "tenant_id"}

needs_fast_path = pytest.mark.skipif(not (PG_URL and HAVE_ADBC),
                                     reason="the fast path reads PostgreSQL through ADBC")


def _create_every(db: Db) -> None:
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TYPE {db.prefix}mood AS ENUM ('sad', 'ok')")
        conn.exec_driver_sql(EVERY_TYPE.format(p=db.prefix))
        conn.exec_driver_sql(EVERY_ROWS.format(p=db.prefix))


def _read_table(source: SqlSource, name: str, scope: Scope, batch_rows: int
                ) -> tuple[pa.Table, list[int]]:
    dataset = _dataset(source, name, scope)
    batches = list(source.read(dataset, scope, batch_rows))
    return pa.Table.from_batches(batches, dataset.schema), [b.num_rows for b in batches]


def _only_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the generic path is taken."""
    def generic(*_: Any) -> Iterator[pa.RecordBatch]:
        raise AssertionError("the generic path was taken")

    monkeypatch.setattr(SqlSource, "_stream", generic)


def _generic(make_source: Callable[..., SqlSource], tables: list[dict[str, Any]], name: str,
             scope: Scope, batch_rows: int, monkeypatch: pytest.MonkeyPatch
             ) -> tuple[pa.Table, list[int]]:
    with monkeypatch.context() as patch:
        patch.setattr(sql_module, "FAST_PATH", False)
        return _read_table(make_source(tables), name, scope, batch_rows)


@needs_fast_path
@pytest.mark.parametrize("batch_rows", [1, 2, 100])
def test_fast_path_equals_the_generic_path_for_every_type(
        make_source: Callable[..., SqlSource], db: Db, monkeypatch: pytest.MonkeyPatch,
        batch_rows: int) -> None:
    _create_every(db)
    generic, generic_sizes = _generic(make_source, [EVERY], "every", ACME, batch_rows, monkeypatch)
    _only_fast(monkeypatch)
    fast, fast_sizes = _read_table(make_source([EVERY]), "every", ACME, batch_rows)

    assert fast.schema.equals(generic.schema, check_metadata=True)
    for name in generic.column_names:  # column by column, so a failure names the column
        assert fast[name].equals(generic[name]), (name, fast[name], generic[name])
    assert fast.equals(generic, check_metadata=True)
    assert fast_sizes == generic_sizes
    assert fast.num_rows == 4
    rows = {row["id"]: row for row in fast.to_pylist()}
    assert (rows[1]["body"], rows[3]["body"]) == ("", None)  # the empty string is not NULL
    assert (rows[1]["blob"], rows[3]["blob"]) == (b"", None)
    assert rows[1]["single"] == 1.1  # the REAL's own digits, as the generic path reads them
    assert rows[1]["d38"] == Decimal("12345678901234567890123456789.123456789")
    assert rows[1]["tstz"] == datetime(2024, 3, 30, 23, 30, 0, 1, tzinfo=UTC)
    assert rows[1]["span"] == (-14, 3, -(4 * 3600 + 5 * 60 + 6) * 10**9 - 1000)
    assert rows[2]["tags"] == ["a", "b,c", 'd"e', None, "NULL", ""]
    assert rows[1]["doc"] == '{"b": 1,  "a": [1, 2], "b": 2}'  # JSON as stored, not re-encoded


@needs_fast_path
def test_fast_path_follows_the_scope(make_source: Callable[..., SqlSource], db: Db,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    bob = Scope("acme", BOB)
    expected = {(name, scope): _generic(make_source, CHAIN, name, scope, 2, monkeypatch)[0]
                for name in ("accounts", "posts", "comments", "typed")
                for scope in (ACME, GLOBEX, bob, Scope("nobody"))}
    _only_fast(monkeypatch)
    source = make_source()
    for (name, scope), table in expected.items():
        assert _read_table(source, name, scope, 2)[0].equals(table), (name, scope)
    assert [row["id"] for row in _read_table(source, "comments", bob, 2)[0].to_pylist()] == [
        100, 103]


@needs_fast_path
def test_fast_path_never_writes_a_scope_value_into_sql(make_source: Callable[..., SqlSource],
                                                       db: Db,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    odd = "o'brien\\'); DROP TABLE accounts; --"
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO {db.prefix}accounts VALUES (9, %s, %s, 'O')",
                             (odd[:20], odd))
    source = make_source()
    table = source._table("accounts")
    where = source._in_scope("accounts", Scope(odd[:20], odd))
    statement = sql_module._fast_statement(table, where, source._plans(table))
    assert statement is not None
    sql, settings = statement
    assert "brien" not in sql
    assert [value for _name, value in settings] == [odd[:20], odd]

    _only_fast(monkeypatch)
    assert _ids(source, "accounts", Scope(odd[:20], odd)) == [9]
    assert _ids(source, "accounts", Scope(odd[:20])) == [9]
    # A value longer than VARCHAR(20) is compared whole, never cut to the column's length.
    assert _ids(source, "accounts", Scope(odd)) == []


@needs_fast_path
def test_fast_path_falls_back_per_table(make_source: Callable[..., SqlSource], db: Db,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A column with no exact fast form (here JSON items, which the generic path renders its
    own way) sends its table down the generic path; the other tables still go fast."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {db.prefix}docs (id INTEGER PRIMARY KEY, "
                             "tenant_id TEXT, items JSONB[])")
        conn.exec_driver_sql(f"""INSERT INTO {db.prefix}docs VALUES (1, 'acme', '{{"{{}}"}}')""")
    tables = [*CHAIN, {"name": "docs", "tenant_column": "tenant_id"}]
    expected = _generic(make_source, tables, "docs", ACME, 10, monkeypatch)[0]
    taken: list[str] = []
    generic = SqlSource._stream

    def spy(self: SqlSource, name: str, *args: Any) -> Iterator[pa.RecordBatch]:
        taken.append(name)
        return generic(self, name, *args)

    monkeypatch.setattr(SqlSource, "_stream", spy)
    source = make_source(tables)
    assert _read_table(source, "docs", ACME, 10)[0].equals(expected)
    assert _ids(source, "accounts") == [1, 2]
    assert taken == ["docs"]


def test_without_adbc_postgresql_reads_the_generic_way(make_source: Callable[..., SqlSource],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "adbc_driver_postgresql.dbapi", None)  # import fails
    rows = _rows(make_source(), "typed")
    assert [row["id"] for row in rows] == [1, 2]


@needs_fast_path
@pytest.mark.parametrize(("column", "value", "refusal"), [
    ("TIMESTAMPTZ", "'infinity'", "outside years 1..9999"),
    ("TIMESTAMP", "'-infinity'", "outside years 1..9999"),
    ("TIMESTAMP", "'0044-03-15 12:00:00 BC'", "outside years 1..9999"),
    ("DATE", "'infinity'", "outside years 1..9999"),
    ("DATE", "'10000-01-01'", "outside years 1..9999"),
    ("TIME", "'24:00:00'", "24:00:00"),
    ("INTEGER[]", "'{{1,2},{3,4}}'", "2 dimensions"),
    ("NUMERIC(5, 2)", "'NaN'", "NUMERIC"),
])
def test_fast_path_refuses_what_the_generic_path_cannot_read(
        make_source: Callable[..., SqlSource], db: Db, monkeypatch: pytest.MonkeyPatch,
        column: str, value: str, refusal: str) -> None:
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {db.prefix}odd (id INTEGER PRIMARY KEY, "
                             f"tenant_id TEXT, value {column})")
        conn.exec_driver_sql(f"INSERT INTO {db.prefix}odd VALUES (1, 'acme', NULL), "
                             f"(2, 'acme', {value})")
    tables = [{"name": "odd", "tenant_column": "tenant_id"}]
    with pytest.raises(Exception):  # noqa: B017 - how it fails is the driver's business
        _generic(make_source, tables, "odd", ACME, 10, monkeypatch)
    _only_fast(monkeypatch)
    with pytest.raises(SourceError, match=refusal) as caught:
        _read_table(make_source(tables), "odd", ACME, 10)
    assert "reading odd" in str(caught.value) and "value" in str(caught.value)


@needs_fast_path
def test_fast_path_stops_cleanly_when_the_reader_stops(make_source: Callable[..., SqlSource],
                                                       db: Db) -> None:
    source = make_source()
    batches = source.read(_dataset(source, "comments"), ACME, 1)
    assert next(batches).num_rows == 1
    batches.close()  # e.g. a failed staging write: the ADBC connection closes with it
    deadline = monotonic() + 10
    while True:  # the server notices a closed connection a moment later
        with db.engine.connect() as conn:
            open_reads = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%offboard.scope_%%' "
                "AND pid <> pg_backend_pid()").scalar()
        if open_reads == 0 or monotonic() > deadline:
            break
        sleep(0.05)
    assert open_reads == 0
