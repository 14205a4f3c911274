"""Engine, session and the declarative base shared by every model.

Nothing connects at import time: ``configure`` binds the session when an app,
worker or CLI command starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Engine,
    Integer,
    MetaData,
    create_engine,
    event,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Integer primary keys: BIGINT identity on PostgreSQL, the rowid alias on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Amount = BigId  # money in whole currency units: 64 bits (a yen or won contract outgrows 32)
JsonDoc = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused; use compliance.clock")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JsonDoc, list[str]: JsonDoc}


session: scoped_session[Session] = scoped_session(sessionmaker(expire_on_commit=False))
_engine: Engine | None = None


def make_engine(url: str) -> Engine:
    """An engine with the per-backend settings the service relies on."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, future=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, open transactions, so SAVEPOINT works,
        # and use WAL so the web server, worker and scheduler can share the file.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: two writers wait for each
        # other instead of failing when a read turns into a write.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def configure(url: str) -> Engine:
    """Bind the shared session to a new engine for ``url``; returns the engine."""
    global _engine
    dispose()
    _engine = make_engine(url)
    session.remove()
    session.configure(bind=_engine)
    return _engine


def engine() -> Engine:
    if _engine is None:
        raise RuntimeError("the database is not configured; call compliance.db.configure first")
    return _engine


def dispose() -> None:
    """Close pooled connections, e.g. before a worker forks, so children never share sockets."""
    session.remove()
    if _engine is not None:
        _engine.dispose()


@contextmanager
def transaction() -> Iterator[Session]:
    """A unit of work for jobs and commands: commit on success, roll back on error."""
    current = session()
    try:
        yield current
        current.commit()
    except BaseException:
        current.rollback()
        raise
