"""The primary purge, on real sources (a SQLite app database, an upload folder), the real bundle
store and a real worker: nothing before it is due or under a hold, exactly the tenant's data
after, one audit event per item however often it runs or dies, and a certificate that verifies."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from audit import certificates, keys
from compliance import clock as clock_module
from compliance import db, workflow
from compliance.models import (
    AuditEvent,
    DeletionCertificate,
    DownloadLink,
    Export,
    OutboxMessage,
    PurgeStep,
    RetentionRun,
    SourceConfig,
    Tenant,
    User,
)
from exporters import jobs, links
from exporters.sources import Scope, registry
from exporters.sources.demo import DemoSource
from exporters.sources.files import FilesSource
from exporters.staging import staging_dir
from retention import holds, purge

pytestmark = pytest.mark.usefixtures("session", "own_keys")

REF, OTHER = "acme-7", "other"
PURGE_ACTIONS = ("purge.source_erased", "purge.source_failed", "purge.bundles_deleted",
                 "purge.staging_deleted", "purge.links_revoked", "purge.step_failed", "purge.completed")




@dataclasses.dataclass
class World:
    tenant: Tenant
    other: Tenant
    app_db: Path
    uploads: Path
    exports: list[Export]  # the tenant's, then the other tenant's
    link: DownloadLink


def make_app_db(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.executescript("""
            CREATE TABLE accounts (id INTEGER PRIMARY KEY, tenant TEXT, name TEXT);
            CREATE TABLE posts (id INTEGER PRIMARY KEY, account_id INTEGER REFERENCES accounts(id),
                                title TEXT);
            INSERT INTO accounts VALUES (1, 'acme-7', 'Ann'), (2, 'other', 'Bob');
            INSERT INTO posts VALUES (10, 1, 'hello'), (11, 1, ''), (12, 2, 'not yours');
        """)


def add_source(tenant: Tenant | None, kind: str, name: str, settings: dict[str, Any]) -> SourceConfig:
    source = SourceConfig(tenant_id=tenant.id if tenant else None, kind=kind, name=name,
                          config=registry.get(kind).validate(settings))
    db.session.add(source)
    db.session.flush()
    return source


def add_sources(tenant: Tenant, app_db: Path, uploads: Path) -> None:
    """The tenant's own crm (the app database) and uploads (a folder per tenant)."""
    add_source(tenant, "sql", "crm", {"url": f"sqlite:///{app_db}", "tables": [
        {"name": "accounts", "tenant_column": "tenant", "category": "account"},
        {"name": "posts", "via": "account_id -> accounts.id", "category": "content"}]})
    add_source(tenant, "files", "uploads", {"root": str(uploads)})


def ready_export(tenant: Tenant) -> Export:
    """A delivered export: its bundle in the store, a staging file left behind."""
    request = workflow.open_request(tenant, actor="test", requested_by="cfo@example.com", channel="email",
                                    churn_reason="price", formats=["csv"], owner="csm@example.com")
    export = Export(request_id=request.id, formats=["csv"], status="ready", created_by="test")
    db.session.add(export)
    db.session.flush()
    content = f"bundle of {tenant.external_ref}".encode()
    built = jobs.staging_root() / f"built-{export.id}"
    built.parent.mkdir(parents=True, exist_ok=True)
    built.write_bytes(content)
    export.bundle_name = f"exports/{export.id}/bundle.zip.obx"
    export.bundle_sha256, export.bundle_bytes = hashlib.sha256(content).hexdigest(), len(content)
    jobs.bundle_storage().publish(export.bundle_name, built)
    staged = staging_dir(jobs.staging_root(), export.id)
    staged.mkdir(parents=True, exist_ok=True)
    (staged / "1.arrows").write_bytes(b"staged rows")
    return export


@pytest.fixture
def world(tmp_path: Path, clock: Any) -> World:
    app_db, uploads = tmp_path / "app.db", tmp_path / "uploads"
    make_app_db(app_db)
    for ref in (REF, OTHER):
        (uploads / ref / "docs").mkdir(parents=True)
        (uploads / ref / "docs" / "contract.pdf").write_bytes(b"%PDF " + ref.encode())
    tenant = Tenant(external_ref=REF, name="Acme GmbH", region="DE")
    other = Tenant(external_ref=OTHER, name="Other Ltd", region="DE")
    db.session.add_all([tenant, other])
    db.session.flush()
    add_sources(tenant, app_db, uploads)
    db.session.add(User(email="legal@example.com", name="Legal", role="legal", password_hash="x"))
    exports = [ready_export(tenant), ready_export(other)]
    link = links.issue(exports[0], recipient="cfo@example.com", expires_in=timedelta(days=7),
                       max_downloads=3, actor="test").link
    tenant.closed_at = clock.now()
    db.session.commit()
    return World(tenant, other, app_db, uploads, exports, link)


def rows(app_db: Path) -> dict[str, list[int]]:
    with sqlite3.connect(app_db) as connection:
        return {table: [r[0] for r in connection.execute(f"SELECT id FROM {table} ORDER BY id")]
                for table in ("accounts", "posts")}


def files(uploads: Path) -> list[str]:
    return sorted(str(p.relative_to(uploads)) for p in uploads.rglob("*") if p.is_file())


def events(tenant_id: int) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(
        AuditEvent.tenant_id == tenant_id, AuditEvent.action.in_(PURGE_ACTIONS)).order_by(AuditEvent.id)))


def actions(tenant_id: int) -> Counter[str]:
    return Counter(event.action for event in events(tenant_id))


def stored(export: Export) -> bool:
    assert export.bundle_name is not None
    return jobs.bundle_storage().exists(export.bundle_name)


def staged(export: Export) -> bool:
    return staging_dir(jobs.staging_root(), export.id).exists()


def untouched(world: World) -> None:
    assert rows(world.app_db) == {"accounts": [1, 2], "posts": [10, 11, 12]}
    assert files(world.uploads) == [f"{REF}/docs/contract.pdf", f"{OTHER}/docs/contract.pdf"]
    assert all(stored(e) and staged(e) for e in world.exports)
    assert db.session.get(DownloadLink, world.link.id, populate_existing=True).revoked_at is None
    assert db.session.get(Tenant, world.tenant.id, populate_existing=True).purged_at is None
    assert actions(world.tenant.id) == Counter()


def purged_exactly_the_tenant(world: World) -> None:
    assert rows(world.app_db) == {"accounts": [2], "posts": [12]}
    assert files(world.uploads) == [f"{OTHER}/docs/contract.pdf"]
    mine, theirs = world.exports
    assert not stored(mine) and not staged(mine) and stored(theirs) and staged(theirs)
    assert db.session.get(DownloadLink, world.link.id, populate_existing=True).revoked_at is not None


# --- the scheduled purge ---------------------------------------------------------------------------


def test_the_sweep_purges_at_90_days_exactly_the_tenant_and_certifies_it(world: World, clock: Any,
                                                                         work: Any) -> None:
    clock.advance(timedelta(days=90) - timedelta(seconds=1))
    assert purge.scheduled_sweep() == 0
    work()
    untouched(world)

    clock.advance(timedelta(seconds=1))
    assert purge.scheduled_sweep() == 1
    work()
    purged_exactly_the_tenant(world)
    tenant = db.session.get(Tenant, world.tenant.id, populate_existing=True)
    assert tenant.purged_at == clock.now()
    assert db.session.get(Tenant, world.other.id).purged_at is None

    assert actions(tenant.id) == Counter({"purge.source_erased": 2, "purge.links_revoked": 1,
                                          "purge.bundles_deleted": 1, "purge.staging_deleted": 1,
                                          "purge.completed": 1})
    by_source = {e.data["source"]: e.data for e in events(tenant.id) if e.action == "purge.source_erased"}
    crm = by_source["crm"]
    assert (crm["kind"], crm["categories"]) == ("sql", ["account", "content"])
    assert (crm["removed"], crm["remaining"]) == ({"accounts": 1, "posts": 2}, {"accounts": 0, "posts": 0})
    assert crm["started_at"] == crm["finished_at"] == clock.now().isoformat()
    uploads = by_source["uploads"]
    assert (uploads["removed"], uploads["remaining"]) == ({"files": 1}, {"files": 0})
    [bundles] = [e.data for e in events(tenant.id) if e.action == "purge.bundles_deleted"]
    assert (bundles["objects"], bundles["bytes"]) == (1, world.exports[0].bundle_bytes)
    [staging] = [e.data for e in events(tenant.id) if e.action == "purge.staging_deleted"]
    assert staging["files"] == 1
    assert {s.status for s in db.session.scalars(select(PurgeStep).where(PurgeStep.tenant_id == tenant.id))} \
        == {"done"}

    [certificate] = db.session.scalars(select(DeletionCertificate).where(
        DeletionCertificate.tenant_id == tenant.id)).all()
    payload = certificates.verify(certificate.envelope, keys.public_keys())
    assert payload["status"] == "erased" and payload["exceptions"] == []
    assert [s["name"] for s in payload["systems"]] == [
        "source crm", "source uploads", "bundle store", "staging"]
    message = db.session.scalars(select(OutboxMessage).where(OutboxMessage.tenant_id == tenant.id,
                                                             OutboxMessage.kind == "purge_completed")).one()
    assert message.recipient == "legal@example.com" and certificate.id in message.body

    run = db.session.scalars(select(RetentionRun).order_by(RetentionRun.id.desc())).first()
    assert run.status == "done" and run.report["enqueued"] == [tenant.id]
    assert run.report["tenants"][0]["status"] == "purged"
    assert run.report["tenants"][0]["certificate"] == {"id": certificate.id, "status": "erased"}


def test_purging_twice_leaves_the_same_state_and_no_second_event(world: World, clock: Any) -> None:
    clock.advance(timedelta(days=90))
    assert purge.purge_tenant(world.tenant.id)["status"] == "purged"
    before = actions(world.tenant.id)
    again = purge.purge_tenant(world.tenant.id)
    assert again["status"] == "already_purged"
    assert purge.run(enqueue=False).report["due"] == []
    purged_exactly_the_tenant(world)
    assert actions(world.tenant.id) == before
    assert len(db.session.scalars(select(DeletionCertificate)).all()) == 1


# --- legal holds ------------------------------------------------------------------------------------


def test_a_hold_placed_before_the_sweep_blocks_everything_until_released(world: World, clock: Any,
                                                                         work: Any) -> None:
    hold = holds.place(world.tenant.id, reason="litigation", matter="M-1", actor="legal@example.com")
    db.session.commit()
    clock.advance(timedelta(days=91))
    assert purge.scheduled_sweep() == 0
    work()
    assert purge.purge_tenant(world.tenant.id)["status"] == "held"
    untouched(world)
    run = db.session.scalars(select(RetentionRun).order_by(RetentionRun.id)).first()
    assert run.report["held"] == [world.tenant.id] and run.status == "done"

    holds.release(hold, reason="settled", actor="legal@example.com")
    db.session.commit()
    assert purge.scheduled_sweep() == 1
    work()
    purged_exactly_the_tenant(world)
    payload = certificates.verify(db.session.scalars(select(DeletionCertificate)).one().envelope,
                                  keys.public_keys())
    assert payload["status"] == "erased" and payload["retained"] == []


def test_a_hold_placed_between_sweep_and_job_wins(world: World, clock: Any, work: Any) -> None:
    clock.advance(timedelta(days=90))
    assert purge.scheduled_sweep() == 1
    hold = holds.place(world.tenant.id, reason="regulator", matter="M-2", actor="legal@example.com")
    db.session.commit()
    work()
    untouched(world)
    run = db.session.scalars(select(RetentionRun)).one()
    assert run.report["tenants"] == [{"tenant_id": world.tenant.id, "status": "held", "holds": [hold.id],
                                      "systems": {}}]

    holds.release(hold, reason="closed", actor="legal@example.com")
    db.session.commit()
    assert purge.scheduled_sweep() == 1
    work()
    purged_exactly_the_tenant(world)


def test_a_hold_placed_during_the_purge_stops_it_before_the_next_deletion(
        world: World, clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock.advance(timedelta(days=90))
    erase = FilesSource.erase

    def hold_first(self: FilesSource, scope: Any) -> dict[str, int]:
        raise AssertionError("the files source was erased under a hold")

    sql_erase = registry.get("sql").erase

    def erase_then_hold(self: Any, scope: Any) -> dict[str, int]:
        removed = sql_erase(self, scope)
        holds.place(world.tenant.id, reason="late", matter="M-3", actor="legal@example.com")
        return removed

    monkeypatch.setattr(registry.get("sql"), "erase", erase_then_hold)
    monkeypatch.setattr(FilesSource, "erase", hold_first)
    result = purge.purge_tenant(world.tenant.id)
    assert result["status"] == "held"
    monkeypatch.setattr(FilesSource, "erase", erase)
    assert files(world.uploads) == [f"{REF}/docs/contract.pdf", f"{OTHER}/docs/contract.pdf"]
    assert all(stored(e) for e in world.exports)


# --- failures -------------------------------------------------------------------------------------


def test_a_failing_source_is_retried_then_reported_and_the_rest_is_still_purged(world: World,
                                                                                clock: Any) -> None:
    world.app_db.unlink()
    clock.advance(timedelta(days=90))
    run = purge.run(enqueue=False)
    [result] = run.report["tenants"]
    assert result["status"] == "failed"
    crm_system = next(name for name, entry in result["systems"].items() if entry["status"] == "failed")
    assert result["systems"][crm_system]["attempts"] == 3
    assert db.session.get(Tenant, world.tenant.id, populate_existing=True).purged_at is None
    assert files(world.uploads) == [f"{OTHER}/docs/contract.pdf"]
    assert not stored(world.exports[0]) and stored(world.exports[1])
    assert actions(world.tenant.id) == Counter({"purge.source_failed": 1, "purge.source_erased": 1,
                                                "purge.links_revoked": 1, "purge.bundles_deleted": 1,
                                                "purge.staging_deleted": 1, "purge.completed": 1})
    [failed] = [e.data for e in events(world.tenant.id) if e.action == "purge.source_failed"]
    assert (failed["source"], failed["kind"], failed["attempts"]) == ("crm", "sql", 3)
    assert failed["error"]

    certificate = db.session.scalars(select(DeletionCertificate)).one()
    payload = certificates.verify(certificate.envelope, keys.public_keys())
    assert payload["status"] == "erased_with_exceptions"
    assert any("source crm" in exception for exception in payload["exceptions"])

    # The source comes back: the next run retries only it, and the tenant is purged.
    make_app_db(world.app_db)
    again = purge.purge_tenant(world.tenant.id)
    assert again["status"] == "purged"
    assert rows(world.app_db) == {"accounts": [2], "posts": [12]}
    assert actions(world.tenant.id)["purge.staging_deleted"] == 1
    assert actions(world.tenant.id)["purge.source_erased"] == 2


class Crash(BaseException):
    """A worker killed in the middle of a step (no except clause of ours catches it)."""


def test_a_crash_between_steps_resumes_without_duplicating_events(world: World, clock: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    clock.advance(timedelta(days=90))
    erase, crashed = FilesSource.erase, []

    def crash_once(self: FilesSource, scope: Any) -> dict[str, int]:
        if not crashed:
            crashed.append(True)
            raise Crash
        return erase(self, scope)

    monkeypatch.setattr(FilesSource, "erase", crash_once)
    with pytest.raises(Crash):
        purge.purge_tenant(world.tenant.id)
    assert actions(world.tenant.id) == Counter({"purge.source_erased": 1})
    assert rows(world.app_db) == {"accounts": [2], "posts": [12]}

    assert purge.purge_tenant(world.tenant.id)["status"] == "purged"
    purged_exactly_the_tenant(world)
    assert actions(world.tenant.id) == Counter({"purge.source_erased": 2, "purge.links_revoked": 1,
                                                "purge.bundles_deleted": 1, "purge.staging_deleted": 1,
                                                "purge.completed": 1})


# --- planning -------------------------------------------------------------------------------------


def test_a_dry_run_reports_what_would_go_and_erases_nothing(world: World, clock: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Any, scope: Any) -> dict[str, int]:
        raise AssertionError("a dry run called erase")

    for kind in ("sql", "files"):
        monkeypatch.setattr(registry.get(kind), "erase", refuse)
    run = purge.run(as_of=clock.now() + timedelta(days=90), dry_run=True)
    assert run.status == "done" and run.dry_run
    [plan] = run.report["plans"]
    assert plan["tenant_id"] == world.tenant.id and plan["holds"] == []
    assert plan["due_at"] == (world.tenant.closed_at + timedelta(days=90)).isoformat()
    assert {s["source"]: s["counts"] for s in plan["sources"]} == {
        "crm": {"accounts": 1, "posts": 2}, "uploads": {"files": 1}}
    assert plan["bundles"] == {"count": 1, "bytes": world.exports[0].bundle_bytes}
    assert plan["staging"] == {"files": 1} and plan["links"] == {"active": 1}
    untouched(world)
    assert db.session.scalars(select(PurgeStep)).all() == []


def counts(tenant: Tenant) -> dict[int, dict[str, int]]:
    """What each of the tenant's sources holds of it, asked afresh."""
    found = {}
    for source in db.session.scalars(select(SourceConfig).where(SourceConfig.tenant_id == tenant.id)):
        with registry.get(source.kind)(source.config) as connector:
            found[source.id] = connector.count(Scope(tenant.external_ref))
    return found


def test_the_dry_run_lists_exactly_what_the_real_run_then_deletes(world: World, clock: Any) -> None:
    """Three tenants due, one of them held: each plan is, item by item, what the real run deletes."""
    held = Tenant(external_ref="held-3", name="Held AG", region="DE")
    db.session.add(held)
    db.session.flush()
    with sqlite3.connect(world.app_db) as connection:
        connection.executescript("""
            INSERT INTO accounts VALUES (3, 'held-3', 'Hal'), (4, 'other', 'Bea');
            INSERT INTO posts VALUES (13, 3, 'kept'), (14, 4, 'also'), (15, 4, 'more');
        """)
    (world.uploads / "held-3").mkdir()
    (world.uploads / "held-3" / "a.txt").write_bytes(b"a")
    (world.uploads / OTHER / "b.txt").write_bytes(b"b")
    for tenant in (world.other, held):
        add_sources(tenant, world.app_db, world.uploads)
    held_export = ready_export(held)
    for recipient in ("cfo@other.example", "cto@other.example"):
        links.issue(world.exports[1], recipient=recipient, expires_in=timedelta(days=7), max_downloads=3,
                    actor="test")
    world.other.closed_at = held.closed_at = world.tenant.closed_at
    hold = holds.place(held.id, reason="litigation", matter="M-7", actor="legal@example.com")
    db.session.commit()
    clock.advance(timedelta(days=90))
    tenants = (world.tenant, world.other, held)
    before = {tenant.id: counts(tenant) for tenant in tenants}

    dry = purge.run(dry_run=True)
    assert sorted(dry.report["due"]) == sorted(t.id for t in tenants) and dry.report["held"] == [held.id]
    plans = {plan["tenant_id"]: plan for plan in dry.report["plans"]}
    assert set(plans) == {t.id for t in tenants}
    assert [h["hold_id"] for h in plans[held.id]["holds"]] == [hold.id]
    for tenant in tenants:  # the plan counts what is there, source by source
        assert {s["source_id"]: s["counts"] for s in plans[tenant.id]["sources"]} == before[tenant.id]
    assert {s["source"]: s["counts"] for s in plans[world.other.id]["sources"]} == {
        "crm": {"accounts": 2, "posts": 3}, "uploads": {"files": 2}}
    assert (plans[world.other.id]["links"], plans[world.tenant.id]["links"]) == ({"active": 2}, {"active": 1})
    assert actions(world.tenant.id) == Counter() and db.session.scalars(select(PurgeStep)).all() == []

    real = purge.run(enqueue=False)
    assert (real.report["due"], real.report["held"]) == (dry.report["due"], dry.report["held"])
    results = {result["tenant_id"]: result for result in real.report["tenants"]}
    assert set(results) == {world.tenant.id, world.other.id}
    for tenant_id, result in results.items():
        plan, systems = plans[tenant_id], result["systems"]
        planned = {s["source_id"]: s["counts"] for s in plan["sources"]}
        erased = {e.data["source_id"]: e.data["removed"] for e in events(tenant_id)
                  if e.action == "purge.source_erased"}
        evidence = {e.action: e.data for e in events(tenant_id) if e.action != "purge.source_erased"}
        assert result["status"] == "purged" and erased == planned
        assert {int(name.removeprefix("source:")): step["result"]["removed"] for name, step in systems.items()
                if name.startswith("source:")} == planned
        assert (evidence["purge.bundles_deleted"]["objects"], evidence["purge.bundles_deleted"]["bytes"]) == (
            plan["bundles"]["count"], plan["bundles"]["bytes"])
        assert evidence["purge.staging_deleted"]["files"] == plan["staging"]["files"]
        assert evidence["purge.links_revoked"]["links"] == plan["links"]["active"]
        assert systems["bundle_store"]["result"]["bytes"] == plan["bundles"]["bytes"]
        assert all(not any(left.values()) for left in counts(db.session.get(Tenant, tenant_id)).values())
    assert counts(held) == before[held.id]  # held: every row and file the plan listed is still there
    assert stored(held_export) and staged(held_export) and actions(held.id) == Counter()
    assert db.session.get(Tenant, held.id, populate_existing=True).purged_at is None


def test_a_real_run_never_looks_ahead(clock: Any) -> None:
    with pytest.raises(ValueError, match="later than now"):
        purge.run(as_of=clock_module.now() + timedelta(days=1))


# --- the property ----------------------------------------------------------------------------------

TENANTS = 3
FROZEN = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAYS = (1, 30, 89, 90, 120)
# (action, n): n picks the tenant, or the days to move the clock by; closing and moving time are
# drawn more often, so most examples reach a due date.
OPERATIONS = st.lists(st.tuples(
    st.sampled_from(["close", "close", "hold", "release", "advance", "advance", "sweep"]),
    st.integers(0, TENANTS * len(DAYS) - 1)), max_size=12)


@contextlib.contextmanager
def rolled_back() -> Iterator[None]:
    """One hypothesis example's writes, undone afterwards (the test's own transaction stays open)."""
    db.session.remove()
    savepoint = db.session.get_bind().begin_nested()
    try:
        yield
    finally:
        db.session.remove()
        savepoint.rollback()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
@example(operations=[("close", 0), ("close", 1), ("hold", 1), ("advance", 2), ("sweep", 0), ("advance", 0),
                     ("sweep", 0), ("release", 1)])
def test_nothing_goes_early_or_under_hold_everything_due_goes_in_one_sweep(
        operations: list[tuple[str, int]], tmp_path: Path, redis: Any, work: Any) -> None:
    state = tmp_path / uuid.uuid4().hex  # the demo source's erase markers: one folder per example,
    # as hypothesis replays examples (the database is rolled back, files are not)
    clock_module.freeze(FROZEN)
    try:
        with rolled_back():
            check_operations(operations, state, redis, work)
    finally:
        clock_module.unfreeze()


def check_operations(operations: list[tuple[str, int]], state: Path, redis: Any, work: Any) -> None:
    redis.flushdb()
    tenants = [Tenant(external_ref=f"p-{i}", name=f"P {i}", region="DE") for i in range(TENANTS)]
    db.session.add_all(tenants)
    db.session.flush()
    demos = {t.id: {"rows": 20, "state_dir": str(state)} for t in tenants}
    for tenant in tenants:
        add_source(tenant, "demo", "demo", demos[tenant.id])
    db.session.commit()
    active: dict[int, list[Any]] = {t.id: [] for t in tenants}
    purged: set[int] = set()

    def erased(tenant: Tenant) -> bool:
        return not any(DemoSource(DemoSource.validate(demos[tenant.id])).count(
            Scope(tenant.external_ref)).values())

    for step, (action, n) in enumerate([*operations, ("sweep", 0)]):
        value = DAYS[n % len(DAYS)] if action == "advance" else n % TENANTS
        if action == "close" and tenants[value].closed_at is None:
            tenants[value].closed_at = clock_module.now()
        elif action == "hold":
            active[tenants[value].id].append(holds.place(tenants[value].id, reason="r", matter=f"m{step}",
                                                         actor="legal"))
        elif action == "release" and active[tenants[value].id]:
            holds.release(active[tenants[value].id].pop(0), reason="done", actor="legal")
        elif action == "advance":
            clock_module.advance(timedelta(days=value))
        db.session.commit()
        if action != "sweep":
            continue
        purge.scheduled_sweep()
        work()
        for tenant in tenants:
            due = tenant.closed_at is not None and clock_module.now() >= tenant.closed_at + timedelta(days=90)
            if due and not active[tenant.id]:
                purged.add(tenant.id)
            row = db.session.get(Tenant, tenant.id, populate_existing=True)
            assert (row.purged_at is not None) == (tenant.id in purged), (action, tenant.id)
            assert erased(tenant) == (tenant.id in purged)
    before = [actions(t.id) for t in tenants]
    purge.scheduled_sweep()
    work()
    assert [actions(t.id) for t in tenants] == before
    assert all(erased(t) == (t.id in purged) for t in tenants)
    event(f"tenants purged: {len(purged)}")


def test_one_active_hold_per_matter(world: Any) -> None:
    first = holds.place(world.tenant.id, reason="litigation", matter="M-9", actor="legal@example.com")
    with pytest.raises(holds.DuplicateHold, match=f"hold {first.id} for matter 'M-9' is already active"):
        holds.place(world.tenant.id, reason="again", matter="M-9", actor="legal@example.com")
    holds.release(first, reason="settled", actor="legal@example.com")
    again = holds.place(world.tenant.id, reason="the matter reopened", matter="M-9", actor="legal")
    assert again.id != first.id
