"""The retention promise end to end, through the API and real RQ jobs: a tenant with a sql and a
files source is exported, closed, kept 90 days to the second, then purged by a retention run;
its rows, files, bundle and link are gone, another tenant's data is untouched, and the primary
deletion certificate verifies offline from the published keys alone. Twelve months after the
closure the backup sweep crypto-shreds the tenant and the backups certificate verifies too."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from audit import certificates
from compliance import queues
from compliance.clock import add_months
from retention import backups

REF, OTHER = "flow-acme", "flow-other"


@pytest.fixture
def systems(tmp_path: Path) -> dict[str, Any]:
    app_db, uploads = tmp_path / "app.db", tmp_path / "uploads"
    with sqlite3.connect(app_db) as connection:
        connection.executescript(f"""
            CREATE TABLE accounts (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, name TEXT);
            CREATE TABLE posts (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL REFERENCES accounts(id),
                                title TEXT);
            INSERT INTO accounts VALUES (1, '{REF}', 'Ann'), (2, '{OTHER}', 'Bob');
            INSERT INTO posts VALUES (10, 1, 'hello'), (11, 1, 'again'), (12, 2, 'theirs');
        """)
    for ref in (REF, OTHER):
        (uploads / ref).mkdir(parents=True)
        (uploads / ref / "contract.pdf").write_bytes(b"%PDF-1.4 " + ref.encode())
    reflect = {"tenant_column": "tenant", "categories": {"accounts": "account"}}
    return {"app_db": app_db, "uploads": uploads, "files": {"root": str(uploads)},
            "sql": {"url": f"sqlite:///{app_db}", "reflect": reflect}}


def left(systems: dict[str, Any]) -> tuple[dict[str, list[int]], list[str]]:
    with sqlite3.connect(systems["app_db"]) as connection:
        rows = {table: [r[0] for r in connection.execute(f"SELECT id FROM {table} ORDER BY id")]
                for table in ("accounts", "posts")}
    return rows, sorted(p.parent.name for p in systems["uploads"].rglob("*.pdf"))


def test_export_close_keep_90_days_then_purge_and_certify(client: Any, as_role: Any, clock: Any, work: Any,
                                                          systems: dict[str, Any], tmp_path: Path) -> None:
    csm, admin, legal = as_role("csm"), as_role("admin"), as_role("legal")
    tenant = client.post("/api/v1/tenants", headers=csm,
                         json={"external_ref": REF, "name": "Acme GmbH", "region": "DE"}).get_json()
    for kind in ("sql", "files"):
        answer = client.post("/api/v1/sources", headers=csm, json={
            "kind": kind, "name": f"{kind}-src", "tenant_id": tenant["id"], "config": systems[kind]})
        assert answer.status_code == 201, answer.get_json()
    request = client.post("/api/v1/requests", headers=csm, json={
        "tenant_id": tenant["id"], "requested_by": "cfo@acme", "channel": "email",
        "churn_reason": "price"}).get_json()
    for action, body in (("acknowledge", {}), ("verify", {"note": "intended"}), ("approve", {})):
        assert client.post(f"/api/v1/requests/{request['id']}/{action}", headers=csm,
                           json=body).status_code == 200
    export = client.post(f"/api/v1/requests/{request['id']}/exports", json={}, headers=csm).get_json()
    work()
    assert client.get(f"/api/v1/exports/{export['id']}", headers=csm).get_json()["status"] == "ready"
    link = client.post(f"/api/v1/exports/{export['id']}/links", headers=csm,
                       json={"recipient": "it@acme.example"}).get_json()
    page = "/d/" + link["url"].rsplit("/d/", 1)[1]
    assert client.get(page).status_code == 200
    reduced = client.post(f"/api/v1/requests/{request['id']}/reduce-access", headers=csm, json={})
    assert reduced.status_code == 200, reduced.get_json()
    closed = client.post(f"/api/v1/requests/{request['id']}/close", headers=csm,
                         json={"final_invoice_ref": "INV-2026-0001"})
    assert closed.status_code == 200, closed.get_json()

    # 90 days to the second after closure: not yet; then the run purges exactly the tenant.
    clock.advance(timedelta(days=90) - timedelta(seconds=1))
    early = client.post("/api/v1/retention/runs", headers=admin, json={"kind": "primary", "dry_run": False})
    assert early.status_code == 201, early.get_json()
    work()
    assert left(systems) == ({"accounts": [1, 2], "posts": [10, 11, 12]}, sorted([OTHER, REF]))
    view = client.get(f"/api/v1/tenants/{tenant['id']}/retention", headers=legal).get_json()
    assert view["state"] == "retained"

    clock.advance(timedelta(seconds=1))
    due = client.post("/api/v1/retention/runs", headers=admin, json={"kind": "primary", "dry_run": True})
    [plan] = due.get_json()["report"]["plans"]
    assert plan["tenant_id"] == tenant["id"]
    assert left(systems)[0]["accounts"] == [1, 2]  # a dry run erases nothing
    run = client.post("/api/v1/retention/runs", headers=admin, json={"kind": "primary", "dry_run": False})
    assert run.status_code == 201
    work()
    assert left(systems) == ({"accounts": [2], "posts": [12]}, [OTHER])
    view = client.get(f"/api/v1/tenants/{tenant['id']}/retention", headers=legal).get_json()
    assert view["state"] == "purged" and view["purged_at"] is not None
    assert client.get(page).status_code in (404, 410)  # the link no longer serves anything
    report = client.get(f"/api/v1/retention/runs/{run.get_json()['id']}", headers=legal).get_json()
    assert [entry["status"] for entry in report["report"]["tenants"]] == ["purged"]

    # The primary certificate, issued by the purge, verifies offline from the published keys.
    [issued] = client.get(f"/api/v1/tenants/{tenant['id']}/certificates", headers=legal).get_json()["items"]
    assert (issued["kind"], issued["status"]) == ("primary", "erased")
    envelope = client.get(f"/api/v1/certificates/{issued['id']}", headers=legal).data
    jwks = tmp_path / "keys.json"
    jwks.write_bytes(client.get("/.well-known/offboard/keys").data)
    payload = certificates.verify(envelope, certificates.load_public_keys(jwks))
    assert payload["tenant_id"] == tenant["id"]
    assert all(system["status"] == "erased" for system in payload["systems"]), payload["systems"]
    assert {"source sql-src", "source files-src"} <= {system["name"] for system in payload["systems"]}

    # Twelve months after the closure the backup sweep, on a worker, shreds the tenant's keys.
    closed_at = datetime.fromisoformat(closed.get_json()["closed_at"])
    clock.advance(add_months(closed_at, 12) - clock.now())
    queues.queue("retention").enqueue(backups.scheduled_backup_sweep)
    work()
    view = client.get(f"/api/v1/tenants/{tenant['id']}/retention", headers=legal).get_json()
    assert view["backups_purged_at"] is not None
    kinds = {item["kind"]: item for item in client.get(
        f"/api/v1/tenants/{tenant['id']}/certificates", headers=legal).get_json()["items"]}
    envelope = client.get(f"/api/v1/certificates/{kinds['backups']['id']}", headers=legal).data
    payload = certificates.verify(envelope, certificates.load_public_keys(jwks))
    assert (payload["kind"], payload["status"]) == ("backups", "erased")
