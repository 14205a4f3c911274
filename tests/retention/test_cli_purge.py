"""`offboard purge` and `offboard holds`, run as an operator runs them: a subprocess on a private
SQLite database, with a real SQL source to purge. A dry run changes nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from compliance.models import SourceConfig, Tenant
from exporters.sources import registry

CLOSED = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)  # long enough ago for a real run as of today


@pytest.fixture
def offboard(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(OFFBOARD_INSTANCE_DIR=str(tmp_path), OFFBOARD_PULL_RETRY_INTERVALS="0,0", USER="ops")

    def run(*args: str):  # type: ignore[no-untyped-def]
        return subprocess.run([sys.executable, "-m", "compliance.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    assert run("db", "upgrade").returncode == 0
    run.db = tmp_path / "offboard.db"  # type: ignore[attr-defined]
    return run


@pytest.fixture
def tenants(offboard: Any, tmp_path: Path) -> dict[str, Any]:
    """Two closed tenants, due since April 2025, whose accounts live in one app database."""
    app_db = tmp_path / "app.db"
    with sqlite3.connect(app_db) as connection:
        connection.executescript("""
            CREATE TABLE accounts (id INTEGER PRIMARY KEY, tenant TEXT, name TEXT);
            INSERT INTO accounts VALUES (1, 'acme', 'Ann'), (2, 'acme', 'Al'), (3, 'held', 'Bob');
        """)
    engine = create_engine(f"sqlite:///{offboard.db}")
    with Session(engine) as session:
        acme = Tenant(external_ref="acme", name="Acme", region="DE", closed_at=CLOSED)
        held = Tenant(external_ref="held", name="Held", region="DE", closed_at=CLOSED)
        session.add_all([acme, held])
        session.flush()
        settings = {"url": f"sqlite:///{app_db}",
                    "tables": [{"name": "accounts", "tenant_column": "tenant", "category": "account"}]}
        session.add(SourceConfig(tenant_id=None, kind="sql", name="crm",
                                 config=registry.get("sql").validate(settings)))
        session.commit()
        ids = {"acme": acme.id, "held": held.id}
    engine.dispose()
    return {**ids, "app_db": app_db}


def rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(query).fetchall()


def test_holds_place_list_release(offboard: Any, tenants: dict[str, Any]) -> None:
    held, acme = str(tenants["held"]), str(tenants["acme"])
    placed = offboard("holds", "place", held, "--reason", "litigation", "--matter", "Doe v. Held")
    assert placed.returncode == 0, placed.stderr
    assert placed.stdout.strip() == f"placed hold 1 on tenant {tenants['held']} (Doe v. Held)"
    listed = offboard("holds", "list", str(tenants["held"]))
    assert listed.returncode == 0 and listed.stdout.split("\t")[:2] == ["1", "active"]
    assert "cli:ops" in listed.stdout and "Doe v. Held" in listed.stdout
    assert offboard("holds", "list", acme).stdout.strip() == f"tenant {acme} has no holds"

    released = offboard("holds", "release", "1", "--reason", "settled")
    assert released.returncode == 0 and released.stdout.strip() == f"released hold 1 of tenant {held}"
    again = offboard("holds", "release", "1", "--reason", "again")
    assert again.returncode == 0 and "already released" in again.stdout
    assert rows(offboard.db, "SELECT released_by, release_reason FROM legal_holds") == [
        ("cli:ops", "settled")]
    assert rows(offboard.db, "SELECT action FROM audit_events WHERE action LIKE 'hold.%' ORDER BY id") == [
        ("hold.placed",), ("hold.released",)]


def test_holds_errors_are_one_line(offboard: Any, tenants: dict[str, Any]) -> None:
    for args, message in (
        (("holds", "place", "999", "--reason", "r", "--matter", "m"), "Error: tenant 999 not found"),
        (("holds", "place", "1", "--reason", " ", "--matter", "m"), "must not be blank"),
        (("holds", "place", "1", "--reason", "r", "--matter", "m" * 201), "at most 200"),
        (("holds", "release", "42", "--reason", "r"), "Error: hold 42 not found"),
        (("holds", "list", "999"), "Error: tenant 999 not found"),
    ):
        result = offboard(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert rows(offboard.db, "SELECT count(*) FROM legal_holds") == [(0,)]


def test_a_dry_run_prints_the_plan_and_changes_nothing(offboard: Any, tenants: dict[str, Any]) -> None:
    offboard("holds", "place", str(tenants["held"]), "--reason", "litigation", "--matter", "M-1")
    events_before = rows(offboard.db, "SELECT count(*) FROM audit_events")
    result = offboard("purge", "--as-of", "2025-06-01", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "2 tenant(s) due, 1 held; nothing was deleted" in out.splitlines()[0]
    assert f"tenant {tenants['acme']} (acme), due 2025-04-06T12:00:00+00:00: would be purged" in out
    assert f"tenant {tenants['held']} (held), due 2025-04-06T12:00:00+00:00: HELD, would not be purged" in out
    assert "  source crm (sql): accounts 2" in out and "  source crm (sql): accounts 1" in out
    assert "bundles: 0 (0 bytes)" in out and "hold 1: M-1" in out

    assert rows(tenants["app_db"], "SELECT id FROM accounts ORDER BY id") == [(1,), (2,), (3,)]
    assert rows(offboard.db, "SELECT count(*) FROM tenants WHERE purged_at IS NOT NULL") == [(0,)]
    assert rows(offboard.db, "SELECT count(*) FROM purge_steps") == [(0,)]
    assert rows(offboard.db, "SELECT count(*) FROM audit_events") == events_before
    assert rows(offboard.db, "SELECT dry_run, status FROM retention_runs") == [(1, "done")]

    one = offboard("purge", "--as-of", "2025-06-01", "--dry-run", "--tenant", str(tenants["acme"]))
    assert one.returncode == 0 and "1 tenant(s) due, 0 held" in one.stdout and "(held)" not in one.stdout
    early = offboard("purge", "--as-of", "2025-04-06", "--dry-run")  # due at noon, not at the day's start
    assert early.returncode == 0 and "0 tenant(s) due" in early.stdout


def test_a_real_run_purges_inline_and_skips_the_held(offboard: Any, tenants: dict[str, Any]) -> None:
    offboard("holds", "place", str(tenants["held"]), "--reason", "litigation", "--matter", "M-1")
    today = datetime.now(UTC).date().isoformat()
    result = offboard("purge", "--as-of", today)
    assert result.returncode == 0, result.stderr
    assert "2 tenant(s) due, 1 held" in result.stdout
    assert f"tenant {tenants['acme']}: purged" in result.stdout
    assert f"tenant {tenants['held']}: held, not purged" in result.stdout
    assert rows(tenants["app_db"], "SELECT tenant FROM accounts") == [("held",)]
    assert rows(offboard.db, "SELECT external_ref FROM tenants WHERE purged_at IS NOT NULL") == [("acme",)]
    assert rows(offboard.db, "SELECT dry_run, status, requested_by FROM retention_runs") == [
        (0, "done", "cli:ops")]
    assert ("purge.completed",) in rows(offboard.db, "SELECT action FROM audit_events")


def test_purge_errors_are_one_line(offboard: Any, tenants: dict[str, Any]) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    for args, message in (
        (("--as-of", "2025-13-01"), "Error: --as-of '2025-13-01' is not a date (YYYY-MM-DD)"),
        (("--as-of", "20250601"), "Error: --as-of '20250601' is not a date (YYYY-MM-DD)"),
        (("--as-of", "2025-06-01", "--tenant", "999"), "Error: tenant 999 not found"),
        (("--as-of", tomorrow), "Error: a real purge cannot run as of"),
    ):
        result = offboard("purge", *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith(message), result.stderr
    assert rows(tenants["app_db"], "SELECT count(*) FROM accounts") == [(3,)]
    assert rows(offboard.db, "SELECT count(*) FROM retention_runs") == [(0,)]
