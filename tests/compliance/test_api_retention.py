"""Retention through the API: a tenant's dates and state, legal holds placed and released (audited),
contractual overrides, and purge runs, dry (a report, nothing deleted) and real (enqueued on RQ)."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rq.cron import CronScheduler
from sqlalchemy import select

from audit import keys
from compliance import config, db, queues
from compliance.models import AuditEvent, LegalHold, RetentionRun, SourceConfig, Tenant
from compliance.worker import CRON_CONFIG
from exporters.sources import registry
from retention import purge

pytestmark = pytest.mark.usefixtures("session")
CLOSED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the frozen clock of tests/conftest.py


@pytest.fixture(autouse=True)
def utc_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """rq reads cron in local time: pin it, so the sweep's times are known here."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def signing_keys(settings: config.Settings, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(keys.ENV_VAR, raising=False)
    config.use(dataclasses.replace(settings, keys_dir=tmp_path / "keys"))
    yield
    config.use(settings)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def closed_tenant(ref: str = "ret-1", app_db: Path | None = None) -> int:
    tenant = Tenant(external_ref=ref, name="Retained GmbH", region="DE", closed_at=CLOSED)
    db.session.add(tenant)
    db.session.flush()
    if app_db is not None:
        with sqlite3.connect(app_db) as connection:
            connection.executescript(f"""
                CREATE TABLE accounts (id INTEGER PRIMARY KEY, tenant TEXT, name TEXT);
                INSERT INTO accounts VALUES (1, '{ref}', 'Ann'), (2, '{ref}', 'Al'), (3, 'other', 'Bob');
            """)
        settings = {"url": f"sqlite:///{app_db}",
                    "tables": [{"name": "accounts", "tenant_column": "tenant", "category": "account"}]}
        db.session.add(SourceConfig(tenant_id=tenant.id, kind="sql", name="crm",
                                    config=registry.get("sql").validate(settings)))
    db.session.commit()
    return tenant.id


def actions(tenant_id: int, prefix: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(
        AuditEvent.tenant_id == tenant_id, AuditEvent.action.startswith(prefix)).order_by(AuditEvent.id)))


# --- the retention view ----------------------------------------------------------------------------


def test_the_sweep_is_registered_daily_on_the_retention_queue(redis: Any) -> None:
    scheduler = CronScheduler(connection=redis)
    scheduler.load_config_from_file(CRON_CONFIG)
    [job] = [job for job in scheduler.get_jobs() if job.func is purge.scheduled_sweep]
    assert (job.cron, job.queue_name, job.name) == ("0 3 * * *", "retention", "primary-purge-sweep")


def test_a_closed_tenant_on_the_default_policy(client: Any, as_role: Any, clock: Any) -> None:
    tenant_id = closed_tenant()
    answer = client.get(f"/api/v1/tenants/{tenant_id}/retention", headers=as_role("csm"))
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert body["state"] == "retained" and body["closed_at"] == iso(CLOSED)
    assert (body["primary_days"], body["backup_months"], body["override"]) == (90, 12, None)
    assert body["primary_purge_due"] == iso(CLOSED + timedelta(days=90)) == "2026-05-31T09:00:00+00:00"
    assert body["backup_purge_due"] == "2027-03-02T09:00:00+00:00"
    assert body["next_sweep_at"] == "2026-03-03T03:00:00+00:00"
    assert body["purge_expected_at"] == "2026-06-01T03:00:00+00:00"
    assert (body["holds"], body["last_run"], body["purge_steps"]) == ([], None, [])
    assert body["purged_at"] is None and body["backups_purged_at"] is None

    clock.advance(timedelta(days=90))
    body = client.get(f"/api/v1/tenants/{tenant_id}/retention", headers=as_role("auditor")).json
    assert body["state"] == "due" and body["purge_expected_at"] == "2026-06-01T03:00:00+00:00"


def test_an_override_moves_the_dates_and_is_audited(client: Any, as_role: Any, clock: Any) -> None:
    tenant_id = closed_tenant()
    url = f"/api/v1/tenants/{tenant_id}/retention/override"
    answer = client.put(url, json={"primary_days": 180, "backup_months": 24, "reason": "MSA §12.3"},
                        headers=as_role("legal"))
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert (body["primary_days"], body["backup_months"]) == (180, 24)
    assert body["primary_purge_due"] == "2026-08-29T09:00:00+00:00"
    assert body["backup_purge_due"] == "2028-03-02T09:00:00+00:00"
    assert body["override"]["reason"] == "MSA §12.3" and body["override"]["set_by"].startswith("apikey:")
    assert body["purge_expected_at"] == "2026-08-30T03:00:00+00:00"

    # a duration not given keeps its value
    body = client.put(url, json={"backup_months": 18, "reason": "amendment 2"}, headers=as_role("admin")).json
    assert (body["primary_days"], body["backup_months"]) == (180, 18)
    assert body["override"]["reason"] == "amendment 2"
    assert client.get(f"/api/v1/tenants/{tenant_id}/retention", headers=as_role("csm")).json[
        "backup_purge_due"] == "2027-09-02T09:00:00+00:00"
    events = actions(tenant_id, "retention.override_set")
    assert [e.data["backup_months"] for e in events] == [24, 18]
    assert events[1].data["previous"] == {"primary_days": 180, "backup_months": 24}
    assert events[1].data["reason"] == "amendment 2"


@pytest.mark.parametrize("body, field", [
    ({"reason": "no duration"}, "primary_days"),
    ({"primary_days": 0, "reason": "r"}, "primary_days"),
    ({"primary_days": 3651, "reason": "r"}, "primary_days"),
    ({"backup_months": 121, "reason": "r"}, "backup_months"),
    ({"backup_months": 0, "reason": "r"}, "backup_months"),
    ({"primary_days": 30}, "reason"),
    ({"primary_days": 30, "reason": ""}, "reason"),
    ({"primary_days": 30, "reason": "r", "forever": True}, "forever"),
])
def test_override_validation_names_the_field(client: Any, as_role: Any, body: dict[str, Any],
                                             field: str) -> None:
    tenant_id = closed_tenant()
    url = f"/api/v1/tenants/{tenant_id}/retention/override"
    answer = client.put(url, json=body, headers=as_role("legal"))
    assert answer.status_code == 422
    assert field in answer.json["errors"]["json"]


def test_override_refusals(client: Any, as_role: Any, clock: Any) -> None:
    tenant_id = closed_tenant()
    body = {"primary_days": 30, "reason": "r"}
    assert client.put("/api/v1/tenants/999999/retention/override", json=body,
                      headers=as_role("legal")).status_code == 404
    assert client.put(f"/api/v1/tenants/{tenant_id}/retention/override", json=body,
                      headers=as_role("csm")).status_code == 403
    db.session.get(Tenant, tenant_id).purged_at = clock.now()
    db.session.commit()
    late = client.put(f"/api/v1/tenants/{tenant_id}/retention/override", json=body, headers=as_role("legal"))
    assert late.status_code == 409 and "purged" in late.json["message"]
    backups = client.put(f"/api/v1/tenants/{tenant_id}/retention/override",
                         json={"backup_months": 24, "reason": "r"}, headers=as_role("legal"))
    assert backups.status_code == 200 and backups.json["state"] == "purged"


def test_an_open_tenant_and_an_unknown_one(client: Any, as_role: Any) -> None:
    tenant = Tenant(external_ref="open-1", name="Open", region="DE")
    db.session.add(tenant)
    db.session.commit()
    body = client.get(f"/api/v1/tenants/{tenant.id}/retention", headers=as_role("csm")).json
    assert body["state"] == "open" and body["primary_purge_due"] is None and body["purge_expected_at"] is None
    assert client.get("/api/v1/tenants/999999/retention", headers=as_role("csm")).status_code == 404
    assert client.get("/api/v1/tenants/999999/holds", headers=as_role("csm")).status_code == 404


# --- legal holds ------------------------------------------------------------------------------------


def test_hold_lifecycle_is_audited(client: Any, as_role: Any, clock: Any) -> None:
    tenant_id = closed_tenant()
    legal = as_role("legal")
    url = f"/api/v1/tenants/{tenant_id}/holds"
    placed = client.post(url, json={"reason": "litigation pending", "matter": "Doe v. Acme"}, headers=legal)
    assert placed.status_code == 201, placed.json
    hold = placed.json
    assert (hold["tenant_id"], hold["matter"], hold["active"], hold["released_at"]) == (
        tenant_id, "Doe v. Acme", True, None)
    again = client.post(url, json={"reason": "again", "matter": "Doe v. Acme"}, headers=legal)
    assert again.status_code == 409 and str(hold["id"]) in again.json["message"]

    clock.advance(timedelta(days=91))
    view = client.get(f"/api/v1/tenants/{tenant_id}/retention", headers=as_role("auditor")).json
    assert view["state"] == "held" and [h["id"] for h in view["holds"]] == [hold["id"]]
    assert view["purge_expected_at"] is None

    clock.advance(timedelta(hours=1))
    second = client.post(url, json={"reason": "regulator", "matter": "FTC-22"}, headers=as_role("admin")).json
    listed = client.get(url, headers=as_role("csm"))
    assert listed.status_code == 200
    assert [h["id"] for h in listed.json["items"]] == [second["id"], hold["id"]]  # newest first

    released = client.delete(f"{url}/{hold['id']}", json={"reason": "settled"}, headers=legal)
    assert released.status_code == 200, released.json
    assert released.json["active"] is False and released.json["release_reason"] == "settled"
    twice = client.delete(f"{url}/{hold['id']}", json={"reason": "oops"}, headers=as_role("admin"))
    assert twice.status_code == 200 and twice.json == released.json  # nothing changed
    client.delete(f"{url}/{second['id']}", json={"reason": "closed"}, headers=legal)
    assert client.get(f"/api/v1/tenants/{tenant_id}/retention", headers=legal).json["state"] == "due"

    events = [(e.action, e.data["hold_id"]) for e in actions(tenant_id, "hold.")]
    assert events == [("hold.placed", hold["id"]), ("hold.placed", second["id"]),
                      ("hold.released", hold["id"]), ("hold.released", second["id"])]
    assert actions(tenant_id, "hold.")[0].actor.startswith("apikey:")


def test_hold_refusals(client: Any, as_role: Any) -> None:
    tenant_id, other_id = closed_tenant(), closed_tenant("ret-2")
    legal = as_role("legal")
    url = f"/api/v1/tenants/{tenant_id}/holds"
    assert client.post(url, json={"reason": "r", "matter": "m"}, headers=as_role("csm")).status_code == 403
    assert client.post("/api/v1/tenants/999999/holds", json={"reason": "r", "matter": "m"},
                       headers=legal).status_code == 404
    for body, field in (({"matter": "m"}, "reason"), ({"reason": "r"}, "matter"),
                        ({"reason": "r", "matter": "m" * 201}, "matter"),
                        ({"reason": "r" * 2001, "matter": "m"}, "reason"),
                        ({"reason": "", "matter": "m"}, "reason")):
        answer = client.post(url, json=body, headers=legal)
        assert answer.status_code == 422 and field in answer.json["errors"]["json"], body
    hold_id = client.post(url, json={"reason": "r", "matter": "m"}, headers=legal).json["id"]
    assert client.delete(f"/api/v1/tenants/{other_id}/holds/{hold_id}", json={"reason": "r"},
                         headers=legal).status_code == 404  # not that tenant's hold
    assert client.delete(f"{url}/999999", json={"reason": "r"}, headers=legal).status_code == 404
    missing = client.delete(f"{url}/{hold_id}", json={}, headers=legal)
    assert missing.status_code == 422 and "reason" in missing.json["errors"]["json"]
    assert db.session.get(LegalHold, hold_id).released_at is None


# --- runs -------------------------------------------------------------------------------------------


def test_a_dry_run_reports_and_deletes_nothing(client: Any, as_role: Any, clock: Any, tmp_path: Path) -> None:
    app_db = tmp_path / "app.db"
    tenant_id = closed_tenant(app_db=app_db)
    held_id = closed_tenant("ret-held")
    client.post(f"/api/v1/tenants/{held_id}/holds", json={"reason": "r", "matter": "M-9"},
                headers=as_role("legal"))
    answer = client.post("/api/v1/retention/runs", json={"as_of": "2026-06-01"}, headers=as_role("admin"))
    assert answer.status_code == 201, answer.json
    run = answer.json
    assert run["dry_run"] is True and run["status"] == "done" and run["kind"] == "primary"
    assert run["as_of"] == "2026-06-01T00:00:00+00:00"
    assert sorted(run["report"]["due"]) == sorted([tenant_id, held_id]) and run["report"]["held"] == [held_id]
    plans = {plan["tenant_id"]: plan for plan in run["report"]["plans"]}
    assert plans[tenant_id]["sources"][0]["counts"] == {"accounts": 2}
    assert plans[held_id]["holds"][0]["matter"] == "M-9"
    with sqlite3.connect(app_db) as connection:
        assert connection.execute("SELECT count(*) FROM accounts").fetchone() == (3,)
    assert actions(tenant_id, "purge.") == [] and db.session.get(Tenant, tenant_id).purged_at is None

    fetched = client.get(f"/api/v1/retention/runs/{run['id']}", headers=as_role("auditor"))
    assert fetched.status_code == 200 and fetched.json == run
    view = client.get(f"/api/v1/tenants/{tenant_id}/retention", headers=as_role("csm")).json
    assert view["last_run"]["id"] == run["id"] and view["last_run"]["outcome"] == "planned"
    assert client.get(f"/api/v1/tenants/{held_id}/retention", headers=as_role("csm")).json[
        "last_run"]["outcome"] == "held"

    only = client.post("/api/v1/retention/runs", json={"as_of": "2026-06-01T12:00:00", "tenant_id": held_id,
                                                       "dry_run": True}, headers=as_role("admin")).json
    assert only["report"]["due"] == [held_id] and only["as_of"] == "2026-06-01T12:00:00+00:00"
    early = client.post("/api/v1/retention/runs", json={"as_of": "2026-05-31"}, headers=as_role("admin")).json
    assert early["report"]["due"] == []


def test_runs_are_listed_newest_first_with_a_cursor(client: Any, as_role: Any) -> None:
    admin = as_role("admin")
    ids = [client.post("/api/v1/retention/runs", json={}, headers=admin).json["id"] for _ in range(3)]
    first = client.get("/api/v1/retention/runs?limit=2", headers=as_role("legal")).json
    assert [r["id"] for r in first["items"]] == ids[:0:-1] and "report" not in first["items"][0]
    rest = client.get(f"/api/v1/retention/runs?limit=2&cursor={first['next_cursor']}", headers=admin).json
    assert [r["id"] for r in rest["items"]] == [ids[0]] and rest["next_cursor"] is None
    assert client.get("/api/v1/retention/runs", headers=as_role("csm")).status_code == 403
    assert client.get("/api/v1/retention/runs/999999", headers=admin).status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"kind": "tape"}, "kind"),
    ({"kind": 7}, "kind"),
    ({"kind": "backups", "tenant_id": 1}, "tenant_id"),  # a backups run sweeps every snapshot
    ({"kind": "backups", "as_of": "soon"}, "as_of"),
    ({"kind": "backups", "dry_run": "yes please"}, "dry_run"),
    ({"kind": "backups", "dry_run": False, "as_of": "2026-03-03"}, "as_of"),
    ({"as_of": "tomorrow"}, "as_of"),
    ({"as_of": "2026-02-30"}, "as_of"),
    ({"as_of": "0001-01-01"}, "as_of"),
    ({"as_of": 20260601}, "as_of"),
    ({"dry_run": "maybe"}, "dry_run"),
    ({"tenant_id": 0}, "tenant_id"),
    ({"tenant_id": 999999}, "tenant_id"),
    ({"dry_run": False, "as_of": "2027-01-01"}, "as_of"),  # a real run never looks ahead
])
def test_run_validation_names_the_field(client: Any, as_role: Any, clock: Any, body: dict[str, Any],
                                        field: str) -> None:
    answer = client.post("/api/v1/retention/runs", json=body, headers=as_role("admin"))
    assert answer.status_code == 422, answer.json
    assert field in answer.json["errors"]["json"]
    assert db.session.scalars(select(RetentionRun)).all() == []


def test_a_real_run_enqueues_the_purge_and_reports_it(client: Any, as_role: Any, clock: Any, work: Any,
                                                      tmp_path: Path, signing_keys: None) -> None:
    app_db = tmp_path / "app.db"
    tenant_id = closed_tenant(app_db=app_db)
    clock.advance(timedelta(days=90))
    assert client.post("/api/v1/retention/runs", json={"dry_run": False},
                       headers=as_role("legal")).status_code == 403
    answer = client.post("/api/v1/retention/runs", json={"dry_run": False}, headers=as_role("admin"))
    assert answer.status_code == 201, answer.json
    run = answer.json
    assert run["status"] == "running" and run["report"]["enqueued"] == [tenant_id]
    assert queues.queue("retention").fetch_job(f"purge-primary-{tenant_id}") is not None
    with sqlite3.connect(app_db) as connection:
        assert connection.execute("SELECT count(*) FROM accounts").fetchone() == (3,)  # only enqueued

    work()
    done = client.get(f"/api/v1/retention/runs/{run['id']}", headers=as_role("admin")).json
    assert done["status"] == "done" and done["report"]["tenants"][0]["status"] == "purged"
    with sqlite3.connect(app_db) as connection:
        assert connection.execute("SELECT name FROM accounts").fetchall() == [("Bob",)]
    view = client.get(f"/api/v1/tenants/{tenant_id}/retention", headers=as_role("csm")).json
    assert view["state"] == "purged" and view["purged_at"] == iso(clock.now())
    assert view["last_run"]["id"] == run["id"] and view["last_run"]["outcome"] == "purged"
    assert {step["status"] for step in view["purge_steps"]} == {"done"}


def test_a_backups_run_plans_then_sweeps_through_the_queue(client: Any, as_role: Any, clock: Any, work: Any,
                                                           tmp_path: Path, signing_keys: None) -> None:
    tenant_id = closed_tenant()
    db.session.get(Tenant, tenant_id).purged_at = CLOSED
    db.session.commit()
    store = tmp_path / "backups"
    (store / "nightly-1").mkdir(parents=True)
    (store / "nightly-1" / "db.dump").write_bytes(b"dump")
    admin = as_role("admin")
    snapshot = client.post("/api/v1/backups", headers=admin, json={
        "taken_at": "2026-03-01T02:00:00+00:00", "location": str(store), "object": "nightly-1",
        "tenant_ids": [tenant_id]}).json
    for role in ("legal", "auditor", "csm"):
        refused = client.post("/api/v1/retention/runs", json={"kind": "backups"}, headers=as_role(role))
        assert refused.status_code == 403

    # expired a day after the snapshot's 12 months; the tenant's own 12 months end at 09:00 that day,
    # so its keys go because its last snapshot does
    answer = client.post("/api/v1/retention/runs", json={"kind": "backups", "as_of": "2027-03-02"},
                         headers=admin)
    assert answer.status_code == 201, answer.json
    run = answer.json
    assert (run["kind"], run["dry_run"], run["status"]) == ("backups", True, "done")
    [planned] = run["report"]["snapshots"]
    assert (planned["snapshot_id"], planned["would"], planned["tenant_ids"]) == (snapshot["id"], "deleted",
                                                                                 [tenant_id])
    [shred] = run["report"]["tenants"]
    assert (shred["tenant_id"], shred["would"], shred["snapshots"]) == (tenant_id, "purged", 1)
    assert run["report"]["held"] == []
    assert (store / "nightly-1" / "db.dump").exists()
    backup_events = select(AuditEvent.action).where(AuditEvent.action.startswith("backups."))
    assert db.session.scalars(backup_events).all() == ["backups.snapshot_registered"]
    view = client.get(f"/api/v1/tenants/{tenant_id}/retention", headers=as_role("csm")).json
    assert view["backups_purged_at"] is None
    assert view["last_run"]["id"] == run["id"] and view["last_run"]["outcome"] == "planned"

    clock.freeze(datetime(2027, 3, 2, tzinfo=UTC))
    answer = client.post("/api/v1/retention/runs", json={"kind": "backups", "dry_run": False}, headers=admin)
    assert answer.status_code == 201, answer.json
    run = answer.json
    assert (run["dry_run"], run["status"], run["report"]) == (False, "running", None)
    assert queues.queue("retention").fetch_job(f"backups-run-{run['id']}") is not None
    assert (store / "nightly-1" / "db.dump").exists()  # only enqueued

    work()
    done = client.get(f"/api/v1/retention/runs/{run['id']}", headers=as_role("auditor")).json
    assert done["status"] == "done" and done["report"]["as_of"] == iso(clock.now())
    assert [(e["snapshot_id"], e["status"]) for e in done["report"]["snapshots"]] == [
        (snapshot["id"], "deleted")]
    assert [(e["tenant_id"], e["status"]) for e in done["report"]["tenants"]] == [(tenant_id, "purged")]
    assert not (store / "nightly-1").exists()
    view = client.get(f"/api/v1/tenants/{tenant_id}/retention", headers=as_role("csm")).json
    assert view["backups_purged_at"] == iso(clock.now())
    assert view["last_run"]["id"] == run["id"] and view["last_run"]["outcome"] == "purged"
