"""The `offboard` command, run as a user runs it: a subprocess on its own database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def offboard(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["OFFBOARD_INSTANCE_DIR"] = str(tmp_path)

    def run(*args: str, stdin: str | None = None, extra: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return subprocess.run([sys.executable, "-m", "compliance.cli", *args], env={**env, **(extra or {})},
                              input=stdin, capture_output=True, text=True, timeout=60)

    assert run("db", "upgrade").returncode == 0
    run.db = tmp_path / "offboard.db"  # type: ignore[attr-defined]
    return run


def rows(path: Path, query: str) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute(query).fetchall()


def test_keys_create_prints_the_key_once_and_stores_a_hash(offboard) -> None:  # type: ignore[no-untyped-def]
    result = offboard("keys", "create", "--role", "legal", "--name", "counsel")
    assert result.returncode == 0, result.stderr
    plain = result.stdout.strip()
    assert plain.startswith("ob_") and len(plain) == 3 + 12 + 1 + 43
    [(role, prefix, secret_hash)] = rows(offboard.db, "SELECT role, prefix, secret_hash FROM api_keys")
    assert role == "legal" and plain.split("_")[1] == prefix
    assert plain.encode() not in bytes(secret_hash) and len(secret_hash) == 32
    assert ("apikey.created",) in rows(offboard.db, "SELECT action FROM audit_events")


def test_keys_revoke_by_prefix(offboard) -> None:  # type: ignore[no-untyped-def]
    prefix = offboard("keys", "create", "--role", "csm").stdout.split("_")[1]
    result = offboard("keys", "revoke", prefix)
    assert result.returncode == 0 and "revoked key 1" in result.stdout
    assert rows(offboard.db, "SELECT revoked_at IS NOT NULL FROM api_keys") == [(1,)]


def test_errors_are_one_line_and_non_zero(offboard) -> None:  # type: ignore[no-untyped-def]
    missing = offboard("keys", "revoke", "nope")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: no API key with id or prefix 'nope'"
    bad_role = offboard("keys", "create", "--role", "root")
    assert bad_role.returncode == 2 and "Invalid value for '--role'" in bad_role.stderr
    bad_env = offboard("db", "upgrade", extra={"OFFBOARD_ENV": "production"})
    assert bad_env.returncode == 1
    assert bad_env.stderr.strip().splitlines() == [
        "Error: OFFBOARD_SECRET_KEY is missing or a known default; production needs a real secret"]


def test_users_create_hashes_the_password(offboard) -> None:  # type: ignore[no-untyped-def]
    result = offboard("users", "create", "--email", "Ann@Example.com", "--name", "Ann", "--role", "legal",
                      extra={"OFFBOARD_PASSWORD": "correct horse battery"})
    assert result.returncode == 0, result.stderr
    [(email, password_hash)] = rows(offboard.db, "SELECT email, password_hash FROM users")
    assert email == "ann@example.com" and password_hash.startswith("$argon2id$")
    again = offboard("users", "create", "--email", "ann@example.com", "--name", "Ann", "--role", "legal",
                     extra={"OFFBOARD_PASSWORD": "correct horse battery"})
    assert again.returncode == 1 and "already exists" in again.stderr
    short = offboard("users", "create", "--email", "b@example.com", "--name", "B", "--role", "csm",
                     extra={"OFFBOARD_PASSWORD": "short"})
    assert short.returncode == 1 and "at least 12 characters" in short.stderr


def test_key_rotation_and_shredding_commands(offboard, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = offboard("keys", "rotate-master")
    second = offboard("keys", "rotate-master")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.split()[3] != second.stdout.split()[3]  # "new master key <id>; ..."
    assert len(list((tmp_path / "keys" / "master").glob("*.key"))) == 2  # the old one still unwraps
    link_key = offboard("keys", "rotate-link-key")
    assert link_key.returncode == 0
    assert (tmp_path / "keys" / "links" / f"{link_key.stdout.split()[-1]}.key").exists()
    refused = offboard("keys", "destroy-tenant", "1")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    unknown = offboard("keys", "destroy-tenant", "1", "--yes")
    assert unknown.returncode == 1 and unknown.stderr.strip() == "Error: tenant 1 not found"
