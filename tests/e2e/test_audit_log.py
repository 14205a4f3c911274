"""The audit log under concurrent writers, through the CLI, on a private database: 8 processes
append 5,000 events each while sequencing as they go; the log ends with exactly 40,000 events,
indices without a gap, a signed checkpoint, and ``offboard audit verify`` naming the first bad
index once a stored event is changed."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.e2e
WRITERS, EVENTS, PER_TRANSACTION = 8, 5_000, 10
WRITER = f"""
import sys
import audit
from audit import log
from compliance import db
from compliance.cli_support import database

database()
writer = int(sys.argv[1])
for batch in range({EVENTS // PER_TRANSACTION}):
    with db.transaction():
        for n in range({PER_TRANSACTION}):
            number = batch * {PER_TRANSACTION} + n
            audit.record("load.event", actor=f"writer-{{writer}}", data={{"n": number}})
    if batch % 50 == 49:
        log.sequence()  # every writer is also a would-be sequencer: only one may run at a time
"""


def offboard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compliance.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_concurrent_writers_leave_a_gapless_log_that_verifies(service_env: dict[str, str]) -> None:
    env = {**service_env, "DATABASE_URL": service_env.get("DATABASE_URL")
           or f"sqlite:///{service_env['OFFBOARD_INSTANCE_DIR']}/audit.db"}
    assert offboard(env, "db", "upgrade").returncode == 0
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(number)], env=env,
                                stderr=subprocess.PIPE, text=True) for number in range(WRITERS)]
    for writer in writers:
        _, errors = writer.communicate(timeout=600)
        assert writer.returncode == 0, errors

    signed = offboard(env, "audit", "checkpoint")
    assert signed.returncode == 0, signed.stderr
    assert signed.stdout.split("\n")[1] == str(WRITERS * EVENTS)
    verified = offboard(env, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert f"audit log verifies: {WRITERS * EVENTS} events, 1 checkpoints, 0 queued" in verified.stdout

    engine = create_engine(env["DATABASE_URL"])
    with engine.connect() as connection:
        count, low, high, distinct = connection.execute(text(
            "SELECT count(*), min(log_index), max(log_index), count(DISTINCT log_index) "
            "FROM audit_leaves")).one()
        assert (count, low, high, distinct) == (40_000, 0, 39_999, 40_000)
        # Each writer's events keep their order in the log.
        rows = connection.execute(text(
            "SELECT e.actor, l.log_index FROM audit_leaves l JOIN audit_events e ON e.id = l.event_id "
            "ORDER BY e.actor, e.id")).all()
        for writer in range(WRITERS):
            indices = [index for actor, index in rows if actor == f"writer-{writer}"]
            assert len(indices) == EVENTS and indices == sorted(indices)
        connection.execute(text(
            "UPDATE audit_events SET canonical = replace(canonical, '\"n\":', '\"m\":') "
            "WHERE id = (SELECT event_id FROM audit_leaves WHERE log_index = 12345)"))
        connection.commit()
    engine.dispose()
    broken = offboard(env, "audit", "verify")
    assert broken.returncode == 1
    assert "first bad index 12345" in broken.stderr and "leaf hash" in broken.stderr
