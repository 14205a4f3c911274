"""``offboard users``: list, unlock, set-password and disable, run as an admin runs them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PASSWORD = {"OFFBOARD_PASSWORD": "correct horse battery"}


@pytest.fixture
def offboard(tmp_path: Path) -> Any:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["OFFBOARD_INSTANCE_DIR"] = str(tmp_path)

    def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "compliance.cli", *args], env={**env, **(extra or {})},
                              capture_output=True, text=True, timeout=60)

    assert run("db", "upgrade").returncode == 0
    run.db = tmp_path / "offboard.db"  # type: ignore[attr-defined]
    return run


def rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(query).fetchall()


def test_unlock_set_password_and_disable(offboard: Any) -> None:
    assert offboard("users", "create", "--email", "ann@example.com", "--name", "Ann", "--role", "csm",
                    extra=PASSWORD).returncode == 0
    with sqlite3.connect(offboard.db) as connection:
        connection.execute("UPDATE users SET failed_sign_ins = 3, locked_until = '2999-01-01 00:00:00'")
        connection.execute("INSERT INTO staff_sessions (token_hash, user_id, created_at, last_seen_at) "
                           "VALUES (x'00', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')")
    listed = offboard("users", "list")
    assert listed.returncode == 0
    assert "ann@example.com\tcsm\tlocked until 2999-01-01 00:00 UTC" in listed.stdout

    unlocked = offboard("users", "unlock", "Ann@Example.com")
    assert unlocked.returncode == 0 and "unlocked ann@example.com" in unlocked.stdout
    assert rows(offboard.db, "SELECT failed_sign_ins, locked_until FROM users") == [(0, None)]

    old_hash = rows(offboard.db, "SELECT password_hash FROM users")[0][0]
    reset = offboard("users", "set-password", "ann@example.com",
                     extra={"OFFBOARD_PASSWORD": "another long secret"})
    assert reset.returncode == 0, reset.stderr
    new_hash = rows(offboard.db, "SELECT password_hash FROM users")[0][0]
    assert new_hash != old_hash and new_hash.startswith("$argon2id$")
    assert rows(offboard.db, "SELECT ended_at IS NOT NULL FROM staff_sessions") == [(1,)]

    disabled = offboard("users", "disable", "ann@example.com")
    assert disabled.returncode == 0 and "active" not in offboard("users", "list").stdout
    assert "disabled" in offboard("users", "list").stdout
    actions = [action for (action,) in rows(offboard.db, "SELECT action FROM audit_events")]
    assert {"user.unlocked", "user.password_set", "user.disabled"} <= set(actions)


def test_user_command_errors_are_one_line(offboard: Any) -> None:
    for args, message in ((("unlock", "nobody@example.com"), "Error: no user has email nobody@example.com"),
                          (("disable", "nobody@example.com"), "Error: no user has email nobody@example.com")):
        result = offboard("users", *args)
        assert result.returncode == 1 and result.stderr.strip() == message
    offboard("users", "create", "--email", "b@example.com", "--name", "B", "--role", "csm", extra=PASSWORD)
    short = offboard("users", "set-password", "b@example.com", extra={"OFFBOARD_PASSWORD": "short"})
    assert short.returncode == 1 and "at least 12 characters" in short.stderr
