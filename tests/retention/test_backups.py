"""The backup sweep on real stores (a local directory, moto's S3 server) and real tenant keys:
nothing before 12 months, then expired snapshots deleted and the tenant crypto-shredded (its
bundle can no longer be opened) with a certificate that verifies; a held tenant's snapshot kept
and reported; a second run changes nothing. And `offboard backups`, run as an operator runs it."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from audit import certificates
from audit import keys as audit_keys
from compliance import db, workflow
from compliance.models import (
    AuditEvent,
    BackupSnapshot,
    DeletionCertificate,
    Export,
    OutboxMessage,
    PurgeStep,
    RetentionRun,
    Tenant,
    TenantKey,
    User,
)
from exporters import delivery, jobs
from exporters.storage import open_storage
from retention import backups, holds, policy
from tests.exporters.conftest import bucket, moto_endpoint, s3_env  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("own_keys")
BACKUP_ACTIONS = ("backups.snapshot_registered", "backups.snapshot_deleted", "backups.snapshot_retired",
                  "backups.purged", "tenant_key.destroyed")




@dataclasses.dataclass
class World:
    tenant: Tenant  # closed, primary purge done
    other: Tenant  # a customer still with us
    export: Export  # a sealed copy of the tenant's bundle, readable while its key lives


def sealed_export(tenant: Tenant, tmp_path: Path) -> Export:
    request = workflow.open_request(tenant, actor="test", requested_by="cfo@example.com", channel="email",
                                    churn_reason="price", formats=["csv"], owner="csm@example.com")
    export = Export(request_id=request.id, formats=["csv"], status="ready", created_by="test")
    db.session.add(export)
    db.session.flush()
    plain, sealed = tmp_path / f"plain-{export.id}", tmp_path / f"sealed-{export.id}"
    plain.write_bytes(b"PK the bundle of " + tenant.external_ref.encode())
    export.bundle_sha256 = hashlib.sha256(plain.read_bytes()).hexdigest()
    delivery.seal(plain, sealed, tenant_id=tenant.id, sha256=export.bundle_sha256, actor="test")
    export.bundle_name = f"exports/{export.id}/bundle.zip.obx"
    jobs.bundle_storage().publish(export.bundle_name, sealed)
    return export


@pytest.fixture
def world(session: None, clock: Any, tmp_path: Path) -> World:
    tenant = Tenant(external_ref="acme-7", name="Acme GmbH", region="DE")
    other = Tenant(external_ref="still-here", name="Still Here Ltd", region="DE")
    db.session.add_all([tenant, other])
    db.session.add(User(email="legal@example.com", name="Legal", role="legal", password_hash="x"))
    db.session.flush()
    export = sealed_export(tenant, tmp_path)
    sealed_export(other, tmp_path)
    tenant.closed_at = tenant.purged_at = clock.now()
    db.session.commit()
    return World(tenant, other, export)


def snapshot_at(location: str, name: str, tenants: list[Tenant], *, taken_at: datetime,
                tmp_path: Path) -> BackupSnapshot:
    """Write a snapshot of two objects into ``location`` and register it."""
    storage = open_storage(location)
    for member in ("db.dump", "files/uploads.tar"):
        source = tmp_path / f"{name}-{member.replace('/', '-')}"
        source.write_bytes(f"{name} {member}".encode())
        storage.publish(f"{name}/{member}", source)
    snapshot = backups.register(taken_at=taken_at, location=location, object_name=name,
                                tenant_ids=[t.id for t in tenants], actor="test")
    db.session.commit()
    return snapshot


def stored(snapshot: BackupSnapshot) -> bool:
    return open_storage(snapshot.location).exists(f"{snapshot.object}/db.dump")


def actions(tenant_id: int | None = None) -> Counter[str]:
    query = select(AuditEvent.action).where(AuditEvent.action.in_(BACKUP_ACTIONS))
    if tenant_id is not None:
        query = query.where(AuditEvent.tenant_id == tenant_id)
    return Counter(db.session.scalars(query))


def readable(export: Export) -> bool:
    try:
        delivery.open_bundle(db.session.get(Export, export.id), export.bundle_sha256 or "")
    except delivery.BundleGone:
        return False
    return True


def live_keys(tenant_id: int) -> int:
    return len(db.session.scalars(select(TenantKey).where(TenantKey.tenant_id == tenant_id,
                                                          TenantKey.wrapped_key.is_not(None))).all())


def state() -> tuple[Any, ...]:
    """Everything a sweep could change, to show that a second one changes nothing."""
    db.session.expire_all()
    return (Counter(db.session.scalars(select(AuditEvent.action))),
            sorted((s.id, s.purged_at, s.purge_error) for s in db.session.scalars(select(BackupSnapshot))),
            sorted((t.id, t.backups_purged_at) for t in db.session.scalars(select(Tenant))),
            len(db.session.scalars(select(DeletionCertificate)).all()),
            len(db.session.scalars(select(OutboxMessage)).all()))


def twelve_months_later(clock: Any) -> datetime:
    return clock.add_months(clock.now(), 12)


def sweep_at_twelve_months(world: World, clock: Any, location: str, tmp_path: Path) -> None:
    """The scenario both stores must pass."""
    both = snapshot_at(location, "nightly-1", [world.tenant, world.other], taken_at=clock.now(),
                       tmp_path=tmp_path)
    theirs = snapshot_at(location, "nightly-2", [world.other], taken_at=clock.now(), tmp_path=tmp_path)
    start = clock.now()
    clock.advance(timedelta(days=1))
    young = snapshot_at(location, "nightly-3", [world.other], taken_at=clock.now(), tmp_path=tmp_path)
    clock.freeze(start)
    assert readable(world.export)

    clock.advance(twelve_months_later(clock) - clock.now() - timedelta(seconds=1))
    report = backups.run_backup_sweep()
    assert report["snapshots"] == [] and report["tenants"] == []
    assert all(stored(s) for s in (both, theirs, young)) and readable(world.export)
    assert actions() == Counter({"backups.snapshot_registered": 3})

    clock.advance(timedelta(seconds=1))
    report = backups.run_backup_sweep()
    assert [(e["snapshot_id"], e["status"], e["objects"]) for e in report["snapshots"]] == [
        (both.id, "deleted", 2), (theirs.id, "deleted", 2)]
    assert not stored(both) and not stored(theirs) and stored(young)
    [result] = report["tenants"]
    assert result["tenant_id"] == world.tenant.id and result["status"] == "purged"
    assert result["snapshots"] == 1 and result["keys"] == 1
    assert result["notified"] == ["legal@example.com"]

    assert not readable(world.export)  # crypto-shredded: no copy of the bundle can be read
    with pytest.raises(delivery.BundleGone):
        delivery.open_bundle(db.session.get(Export, world.export.id), world.export.bundle_sha256 or "")
    assert live_keys(world.tenant.id) == 0 and live_keys(world.other.id) == 1
    tenant = db.session.get(Tenant, world.tenant.id, populate_existing=True)
    assert tenant.backups_purged_at == clock.now()
    assert db.session.get(Tenant, world.other.id, populate_existing=True).backups_purged_at is None
    assert actions(world.tenant.id) == Counter({"backups.purged": 1, "tenant_key.destroyed": 1})
    assert actions() == Counter({"backups.snapshot_registered": 3, "backups.snapshot_deleted": 2,
                                 "backups.purged": 1, "tenant_key.destroyed": 1})
    [purged] = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "backups.purged")).all()
    assert set(purged.data) == {"snapshots", "started_at", "finished_at"} and purged.data["snapshots"] == 1

    row = db.session.get(DeletionCertificate, result["certificate"]["id"])
    payload = certificates.verify(row.envelope, audit_keys.public_keys())
    assert payload["kind"] == "backups" and payload["tenant_id"] == world.tenant.id
    assert payload["status"] == "erased" and payload["exceptions"] == []
    [system] = payload["systems"]
    assert system["method"] == "deleted" and system["removed"] == {"snapshots": 1}
    [message] = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "backups_purged")).all()
    assert message.recipient == "legal@example.com" and row.id in message.body

    before = state()
    again = backups.run_backup_sweep()
    assert again["snapshots"] == [] and again["tenants"] == []
    assert state()[1:] == before[1:]
    assert state()[0] == before[0]


def test_the_sweep_at_twelve_months_on_a_local_directory(world: World, clock: Any, tmp_path: Path) -> None:
    sweep_at_twelve_months(world, clock, str(tmp_path / "backups"), tmp_path)


def test_the_sweep_at_twelve_months_on_s3(world: World, clock: Any, tmp_path: Path, bucket: str) -> None:  # noqa: F811
    sweep_at_twelve_months(world, clock, f"s3://{bucket}/backups/eu", tmp_path)
    client = open_storage(f"s3://{bucket}").client  # type: ignore[attr-defined]
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert sorted(keys) == ["backups/eu/nightly-3/db.dump", "backups/eu/nightly-3/files/uploads.tar"]


def test_a_snapshot_holding_a_held_tenant_is_kept_and_reported(world: World, clock: Any,
                                                               tmp_path: Path) -> None:
    location = str(tmp_path / "backups")
    both = snapshot_at(location, "nightly-1", [world.tenant, world.other], taken_at=clock.now(),
                       tmp_path=tmp_path)
    theirs = snapshot_at(location, "nightly-2", [world.other], taken_at=clock.now(), tmp_path=tmp_path)
    hold = holds.place(world.tenant.id, reason="litigation", matter="Acme v. Us", actor="legal@example.com")
    db.session.commit()

    clock.advance(twelve_months_later(clock) - clock.now())
    report = backups.run_backup_sweep()
    kept, deleted = report["snapshots"]
    assert kept["snapshot_id"] == both.id and kept["status"] == "held"
    assert kept["holds"] == [{"hold_id": hold.id, "tenant_id": world.tenant.id, "matter": "Acme v. Us",
                              "placed_at": hold.placed_at.isoformat()}]
    assert f"legal hold {hold.id}" in kept["exception"]
    assert deleted == {"snapshot_id": theirs.id, "status": "deleted", "objects": 2,
                       "tenant_ids": [world.other.id]}
    assert report["tenants"] == [{"tenant_id": world.tenant.id, "status": "held", "holds": [hold.id],
                                  "exception": report["tenants"][0]["exception"]}]
    assert {entry.get("snapshot_id") or entry.get("tenant_id") for entry in report["held"]} == {
        both.id, world.tenant.id}
    assert stored(both) and not stored(theirs) and readable(world.export)
    assert actions(world.tenant.id) == Counter()
    step = db.session.scalar(select(PurgeStep).where(PurgeStep.tenant_id == world.tenant.id,
                                                     PurgeStep.kind == "backups"))
    assert step.status == "pending" and step.attempts == 0

    holds.release(db.session.get(type(hold), hold.id), reason="settled", actor="legal@example.com")
    db.session.commit()
    report = backups.run_backup_sweep()
    assert [(e["snapshot_id"], e["status"]) for e in report["snapshots"]] == [(both.id, "deleted")]
    assert [(e["tenant_id"], e["status"]) for e in report["tenants"]] == [(world.tenant.id, "purged")]
    assert not stored(both) and not readable(world.export)
    row = db.session.get(DeletionCertificate, report["tenants"][0]["certificate"]["id"])
    payload = certificates.verify(row.envelope, audit_keys.public_keys())
    assert payload["status"] == "erased" and payload["retained"] == []


def test_a_tenant_is_shredded_once_its_last_snapshot_is_gone(world: World, clock: Any,
                                                            tmp_path: Path) -> None:
    """Before its 12 months after closing: every snapshot holding it was taken earlier, and is gone."""
    location = str(tmp_path / "backups")
    older = snapshot_at(location, "nightly-0", [world.tenant], taken_at=clock.now() - timedelta(days=60),
                        tmp_path=tmp_path)
    clock.advance(clock.add_months(older.taken_at, 12) - clock.now())
    report = backups.run_backup_sweep()
    assert [(e["snapshot_id"], e["status"]) for e in report["snapshots"]] == [(older.id, "deleted")]
    assert [(e["tenant_id"], e["status"]) for e in report["tenants"]] == [(world.tenant.id, "purged")]
    assert clock.now() < policy.schedule_of(world.tenant).backup_due
    assert not readable(world.export)


def test_a_copy_we_cannot_delete_is_retired_once_its_tenants_are_shredded(world: World, clock: Any,
                                                                         tmp_path: Path) -> None:
    location = str(tmp_path / "offsite")
    tape = snapshot_at(location, "tape-1", [world.tenant], taken_at=clock.now(), tmp_path=tmp_path)
    db.session.get(BackupSnapshot, tape.id).method = "crypto_shred"
    db.session.commit()
    clock.advance(twelve_months_later(clock) - clock.now())
    report = backups.run_backup_sweep()
    assert [(e["tenant_id"], e["status"]) for e in report["tenants"]] == [(world.tenant.id, "purged")]
    assert [(e["snapshot_id"], e["status"]) for e in report["snapshots"]] == [(tape.id, "retired")]
    assert stored(tape)  # not ours to delete: unreadable, since its tenant's keys are gone
    assert report["tenants"][0]["snapshots"] == 0
    assert backups.run_backup_sweep()["snapshots"] == []


def closed_tenant(ref: str, closed_at: datetime, tmp_path: Path) -> Tenant:
    """A tenant with a sealed export (so a data key to destroy), closed and purged at ``closed_at``."""
    tenant = Tenant(external_ref=ref, name=ref.title(), region="DE")
    db.session.add(tenant)
    db.session.flush()
    sealed_export(tenant, tmp_path)
    tenant.closed_at = tenant.purged_at = closed_at
    db.session.commit()
    return tenant


def test_the_dry_run_lists_exactly_what_the_real_sweep_then_does(world: World, clock: Any,
                                                                 tmp_path: Path) -> None:
    location, offsite = str(tmp_path / "backups"), str(tmp_path / "offsite")
    held = closed_tenant("held-3", clock.now() - timedelta(days=1), tmp_path)  # due first
    late = closed_tenant("late-4", clock.now() + timedelta(days=30), tmp_path)  # not due at 12 months
    hold = holds.place(held.id, reason="litigation", matter="Held v. Us", actor="legal@example.com")
    db.session.commit()

    def snapshot(name: str, tenants: list[Tenant], method: str = "delete") -> BackupSnapshot:
        taken = snapshot_at(offsite if method == "crypto_shred" else location, name, tenants,
                            taken_at=clock.now(), tmp_path=tmp_path)
        db.session.get(BackupSnapshot, taken.id).method = method
        db.session.commit()
        return taken

    both = snapshot("nightly-1", [world.tenant, world.other])
    kept = snapshot("nightly-2", [held, world.other])
    lates = snapshot("nightly-3", [late])  # its last snapshot: the tenant's keys go with it
    tape = snapshot("tape-1", [world.tenant, late], "crypto_shred")
    waiting = snapshot("tape-2", [world.other], "crypto_shred")
    held_tape = snapshot("tape-3", [held], "crypto_shred")
    clock.advance(twelve_months_later(clock) - clock.now())
    young = snapshot("nightly-4", [world.tenant])
    before = state()

    dry = backups.run(dry_run=True)
    assert (dry.kind, dry.dry_run, dry.status) == ("backups", True, "done")
    assert state() == before and all(stored(s) for s in (both, kept, lates, young))
    assert live_keys(world.tenant.id) == live_keys(late.id) == live_keys(held.id) == 1
    plan = dry.report
    assert [(e["snapshot_id"], e["would"]) for e in plan["snapshots"]] == [
        (both.id, "deleted"), (kept.id, "held"), (lates.id, "deleted"),
        (tape.id, "retired"), (waiting.id, "waiting"), (held_tape.id, "held")]
    assert [(e["tenant_id"], e["would"]) for e in plan["tenants"]] == [
        (held.id, "held"), (world.tenant.id, "purged"), (late.id, "purged")]
    assert [(e.get("snapshot_id"), e.get("tenant_id")) for e in plan["held"]] == [
        (kept.id, None), (held_tape.id, None), (None, held.id)]
    assert f"legal hold {hold.id}" in plan["snapshots"][1]["exception"]

    real = backups.run_backup_sweep()
    assert [(e["snapshot_id"], e["status"]) for e in real["snapshots"]] == [
        (e["snapshot_id"], e["would"]) for e in plan["snapshots"]]
    assert [(e["tenant_id"], e["status"]) for e in real["tenants"]] == [
        (e["tenant_id"], e["would"]) for e in plan["tenants"]]
    assert [(e.get("snapshot_id"), e.get("tenant_id"), e["holds"]) for e in real["held"]] == [
        (e.get("snapshot_id"), e.get("tenant_id"), e["holds"]) for e in plan["held"]]
    for done, planned in zip(real["snapshots"], plan["snapshots"], strict=True):
        if done["status"] in ("deleted", "held"):
            assert done["tenant_ids"] == planned["tenant_ids"]
    for done, planned in zip(real["tenants"], plan["tenants"], strict=True):
        if done["status"] == "purged":
            assert (done["keys"], done["snapshots"]) == (planned["keys"], planned["snapshots"]) == (1, 1)
    assert not stored(both) and not stored(lates) and stored(kept) and stored(young)
    assert live_keys(world.tenant.id) == live_keys(late.id) == 0 and live_keys(held.id) == 1
    assert db.session.get(RetentionRun, real["run_id"]).report == {
        key: value for key, value in real.items() if key != "run_id"}


def test_a_sweep_never_looks_ahead_but_a_dry_run_may(world: World, clock: Any) -> None:
    with pytest.raises(ValueError, match="later than now"):
        backups.run_backup_sweep(clock.now() + timedelta(seconds=1))
    with pytest.raises(ValueError, match="later than now"):
        backups.run(as_of=clock.now() + timedelta(days=1))
    ahead = backups.run(as_of=twelve_months_later(clock), dry_run=True)
    assert [(e["tenant_id"], e["would"]) for e in ahead.report["tenants"]] == [(world.tenant.id, "purged")]
    assert live_keys(world.tenant.id) == 1
    assert [(run.dry_run, run.status) for run in db.session.scalars(select(RetentionRun))] == [(True, "done")]


def test_registration_refuses_what_it_cannot_purge(world: World, clock: Any, tmp_path: Path) -> None:
    def invalid(**changes: Any) -> str:
        arguments = {"taken_at": clock.now(), "location": str(tmp_path), "object_name": "nightly-1",
                     "tenant_ids": [world.tenant.id], "method": "delete", "actor": "test", **changes}
        with pytest.raises(backups.InvalidSnapshot) as caught:
            backups.register(**arguments)
        return caught.value.field

    assert invalid(taken_at=clock.now() + timedelta(minutes=1)) == "taken_at"
    assert invalid(taken_at=datetime(2026, 1, 1)) == "taken_at"
    assert invalid(location="ftp://host/backups") == "location"
    assert invalid(location="s3://user:secret@bucket/x") == "location"
    assert invalid(object_name="../etc") == "object"
    assert invalid(tenant_ids=[]) == "tenant_ids"
    assert invalid(tenant_ids=[world.tenant.id, 999999]) == "tenant_ids"
    assert invalid(method="shred") == "method"
    assert actions() == Counter()


# --- the CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def offboard(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(OFFBOARD_INSTANCE_DIR=str(tmp_path), USER="ops")

    def run(*args: str):  # type: ignore[no-untyped-def]
        return subprocess.run([sys.executable, "-m", "compliance.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    assert run("db", "upgrade").returncode == 0
    engine = create_engine(f"sqlite:///{tmp_path / 'offboard.db'}")
    with Session(engine) as session:
        session.add_all([Tenant(external_ref="a", name="A", region="DE",
                                closed_at=datetime(2024, 1, 2, tzinfo=UTC)),
                         Tenant(external_ref="b", name="B", region="DE")])
        session.commit()
    engine.dispose()
    return run


def test_cli_registers_lists_and_sweeps(offboard: Any, tmp_path: Path) -> None:
    store = tmp_path / "backups"
    (store / "2024-06-01").mkdir(parents=True)
    (store / "2024-06-01" / "db.dump").write_bytes(b"dump")
    done = offboard("backups", "register", "--taken-at", "2024-06-01T02:00:00", "--location", str(store),
                    "--object", "2024-06-01", "--tenant", "1", "--tenant", "2")
    assert done.returncode == 0, done.stderr
    assert ("registered snapshot 1 (delete) holding tenant(s) 1, 2, expires 2025-06-01T02:00:00+00:00"
            in done.stdout)

    base = {"--taken-at": "2024-06-01", "--location": str(store), "--object": "x", "--tenant": "1"}
    for change, wrong in [({"--tenant": "3"}, "no tenant has id 3"),
                          ({"--location": "ftp://x/y"}, "unsupported storage URL"),
                          ({"--object": "../up"}, "invalid storage name"),
                          ({"--taken-at": "yesterday"}, "not an ISO 8601"),
                          ({"--taken-at": "2999-01-01"}, "in the future")]:
        argv = [part for item in {**base, **change}.items() for part in item]
        failed = offboard("backups", "register", *argv)
        assert failed.returncode != 0 and wrong in failed.stderr, (change, failed.stderr)
    missing = offboard("backups", "register", "--taken-at", "2024-06-01", "--location", str(store),
                       "--object", "x")
    assert missing.returncode == 2 and "--tenant" in missing.stderr

    listed = offboard("backups", "list")
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == [
        f"1\t2024-06-01T02:00:00+00:00\tdelete\texpires 2025-06-01T02:00:00+00:00\t{store}/2024-06-01\t1,2"]
    assert offboard("backups", "list", "--tenant", "2").stdout == listed.stdout

    swept = offboard("backups", "sweep")
    assert swept.returncode == 0, swept.stderr
    assert "snapshot 1: deleted" in swept.stdout and not (store / "2024-06-01").exists()
    assert "tenant 1: purged, certificate " in swept.stdout  # closed more than 12 months ago
    assert "tenant 2" not in swept.stdout  # still a customer
    assert "backup sweep 2: 0 snapshot(s), 0 tenant(s)" in offboard("backups", "sweep").stdout


def test_cli_dry_run_lists_what_the_sweep_would_do_and_changes_nothing(offboard: Any, tmp_path: Path) -> None:
    store = tmp_path / "backups"
    (store / "2024-06-01").mkdir(parents=True)
    (store / "2024-06-01" / "db.dump").write_bytes(b"dump")
    offboard("backups", "register", "--taken-at", "2024-06-01T02:00:00", "--location", str(store),
             "--object", "2024-06-01", "--tenant", "1", "--tenant", "2")
    database = tmp_path / "offboard.db"

    def rows(query: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(database) as connection:
            return connection.execute(query).fetchall()

    events = rows("SELECT count(*) FROM audit_events")
    dry = offboard("backups", "sweep", "--dry-run", "--as-of", "2025-07-01")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "dry run 1 of the backup sweep as of 2025-07-01T00:00:00+00:00: 1 expired snapshot(s), "
        "1 tenant(s) to crypto-shred, 0 held; nothing was deleted",
        f"snapshot 1 (delete, taken 2024-06-01T02:00:00+00:00, {store}/2024-06-01): would be deleted",
        "tenant 1 (a), backups due 2025-01-02T00:00:00+00:00: would be crypto-shredded: 0 data key(s) "
        "destroyed, 1 snapshot(s) deleted"]
    early = offboard("backups", "sweep", "--dry-run", "--as-of", "2025-01-01")
    assert early.returncode == 0 and "0 expired snapshot(s), 0 tenant(s) to crypto-shred" in early.stdout
    ahead = offboard("backups", "sweep", "--dry-run", "--as-of", "2999-01-01")  # a dry run may look ahead
    assert ahead.returncode == 0 and "1 expired snapshot(s)" in ahead.stdout

    offboard("holds", "place", "1", "--reason", "litigation", "--matter", "M-1")
    held = offboard("backups", "sweep", "--dry-run")
    assert held.returncode == 0, held.stderr
    assert "0 tenant(s) to crypto-shred, 2 held" in held.stdout
    assert held.stdout.splitlines()[1:] == [
        f"snapshot 1 (delete, taken 2024-06-01T02:00:00+00:00, {store}/2024-06-01): HELD, would be kept "
        "(snapshot 1 is kept: tenant 1 is under legal hold 1 (M-1))",
        "tenant 1 (a), backups due 2025-01-02T00:00:00+00:00: HELD, its keys would not be destroyed "
        "(tenant 1 is under legal hold: hold 1 (M-1))"]

    assert (store / "2024-06-01" / "db.dump").exists()
    assert rows("SELECT count(*) FROM audit_events WHERE action NOT LIKE 'hold.%'") == events
    assert rows("SELECT purged_at FROM backup_snapshots") == [(None,)]
    assert rows("SELECT backups_purged_at FROM tenants") == [(None,), (None,)]
    assert rows("SELECT kind, dry_run, status, requested_by FROM retention_runs") == [
        ("backups", 1, "done", "cli:ops")] * 4


def test_cli_sweep_errors_are_one_line(offboard: Any, tmp_path: Path) -> None:
    later = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    for args, message in (
        (("--as-of", "2025-13-01"), "Error: --as-of '2025-13-01' is not a date (YYYY-MM-DD)"),
        (("--as-of", "20250601", "--dry-run"), "Error: --as-of '20250601' is not a date (YYYY-MM-DD)"),
        (("--as-of", later), "Error: a backup sweep cannot run as of"),
    ):
        result = offboard("backups", "sweep", *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith(message), result.stderr
    usage = offboard("backups", "sweep", "--tenant", "1")  # a sweep covers every snapshot
    assert usage.returncode == 2 and "No such option '--tenant'" in usage.stderr
    with sqlite3.connect(tmp_path / "offboard.db") as connection:
        assert connection.execute("SELECT count(*) FROM retention_runs").fetchone() == (0,)

    real = offboard("backups", "sweep", "--as-of", "2025-01-02")  # the day tenant 1's backups are due
    assert real.returncode == 0, real.stderr
    assert "tenant 1: purged, certificate " in real.stdout and "snapshot 1" not in real.stdout
    assert "backup sweep 1: 0 snapshot(s), 1 tenant(s)" in real.stdout
