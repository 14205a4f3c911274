"""Fixtures on real services: SQLite + embedded Redis by default, or PostgreSQL and a Redis
server when TEST_DATABASE_URL / TEST_REDIS_URL are set. With CI=true an unreachable
service fails the run instead of skipping."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import SimpleWorker
from sqlalchemy import create_engine, text

from compliance import clock as clock_module
from compliance import config, db, queues, schema
from compliance.app import create_app
from compliance.auth import create_api_key

FROZEN_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing service is a failure)", pytrace=False)
    pytest.skip(reason)


def reset_postgres(url: str) -> None:
    """Start from an empty public schema: the test database belongs to the tests."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    except Exception as error:
        unavailable(f"PostgreSQL at {url} is unreachable: {error}")
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def instance_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("instance")


@pytest.fixture(scope="session")
def settings(instance_dir: Path) -> config.Settings:
    database_url = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{instance_dir / 'test.db'}"
    env = {"OFFBOARD_ENV": "test", "OFFBOARD_INSTANCE_DIR": str(instance_dir),
           "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING",
           "OFFBOARD_PULL_RETRY_INTERVALS": "0,0"}  # retries run at once under a burst worker
    if os.environ.get("TEST_REDIS_URL"):
        env["REDIS_URL"] = os.environ["TEST_REDIS_URL"]
    return config.load(env)


@pytest.fixture(scope="session")
def app(settings: config.Settings) -> Iterator[Flask]:
    if settings.database_url.startswith("postgresql"):
        reset_postgres(settings.database_url)
    schema.upgrade(settings.database_url)
    try:
        flask_app = create_app(settings)
        queues.connection().ping()
    except Exception as error:
        unavailable(f"Redis is unreachable: {error}")
    flask_app.config["TESTING"] = True
    yield flask_app
    db.dispose()


@pytest.fixture
def session(app: Flask, settings: config.Settings) -> Iterator[None]:
    """Everything a test writes is rolled back at its end (commits become savepoints),
    and the bundles it stored are removed (ids repeat once rows are rolled back)."""
    shutil.rmtree(settings.storage, ignore_errors=True)
    connection = db.engine().connect()
    outer = connection.begin()
    db.session.remove()
    db.session.configure(bind=connection, join_transaction_mode="create_savepoint")
    yield
    db.session.remove()
    outer.rollback()
    connection.close()
    db.session.configure(bind=db.engine())
    shutil.rmtree(settings.storage, ignore_errors=True)


@pytest.fixture
def redis(app: Flask) -> Iterator[Redis]:
    connection = queues.connection()
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.fixture
def client(app: Flask, session: None, redis: Redis) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def as_role(session: None) -> Callable[[str], dict[str, str]]:
    """Headers carrying a fresh API key of the given role."""

    def headers(role: str) -> dict[str, str]:
        _key, plain = create_api_key(name=f"test-{role}", role=role, created_by="test")
        db.session.commit()
        return {"Authorization": f"Bearer {plain}"}

    return headers


@pytest.fixture
def clock() -> Iterator[type[clock_module]]:  # type: ignore[valid-type]
    clock_module.freeze(FROZEN_AT)
    yield clock_module
    clock_module.unfreeze()


@pytest.fixture
def work(redis: Redis) -> Callable[[], None]:
    """Run every queued job to the end, in this process, as a worker would."""

    def run() -> None:
        worker = SimpleWorker([queues.queue(name) for name in queues.QUEUE_NAMES],
                              connection=redis)
        worker.work(burst=True)

    return run


@pytest.fixture
def own_keys(settings: config.Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keys of this test's own (audit signing, master, link keys): a rotation here reaches no
    other test."""
    monkeypatch.delenv("OFFBOARD_AUDIT_SIGNING_KEY", raising=False)
    config.use(dataclasses.replace(settings, keys_dir=tmp_path / "keys"))
    yield
    config.use(settings)
