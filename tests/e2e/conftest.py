"""Fixtures for tests that run the service as separate processes, on private data."""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def service_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private database (and Redis db) for the service under test."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "REDIS_URL", "OFFBOARD_INSTANCE_DIR")}
    env.update(OFFBOARD_INSTANCE_DIR=str(tmp_path / "instance"), PORT=str(free_port()))
    pg_url = os.environ.get("TEST_DATABASE_URL")
    database = f"offboard_e2e_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT") if pg_url else None
    if admin is not None:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
        env["DATABASE_URL"] = make_url(pg_url).set(database=database).render_as_string(False)
    if os.environ.get("TEST_REDIS_URL"):
        redis_url = re.sub(r"/\d+$", "", os.environ["TEST_REDIS_URL"]) + "/14"
        Redis.from_url(redis_url).flushdb()
        env["REDIS_URL"] = redis_url
    yield env
    if admin is not None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


