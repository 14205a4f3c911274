"""POST/GET /api/v1/backups: admins register snapshots; bad input is a 422 naming its field."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from compliance import db
from compliance.models import AuditEvent, BackupSnapshot, Tenant


@pytest.fixture
def tenants(client: Any) -> list[int]:
    rows = [Tenant(external_ref=f"t-{n}", name=f"T{n}", region="DE") for n in range(2)]
    db.session.add_all(rows)
    db.session.commit()
    return [row.id for row in rows]


def body(tenants: list[int], tmp_path: Any, **changes: Any) -> dict[str, Any]:
    return {"taken_at": "2026-02-01T02:00:00+00:00", "location": str(tmp_path / "backups"),
            "object": "nightly/2026-02-01", "tenant_ids": tenants, **changes}


def test_admin_registers_a_snapshot_and_readers_list_it(client: Any, as_role: Any, clock: Any,
                                                       tenants: list[int], tmp_path: Any) -> None:
    admin = as_role("admin")
    answer = client.post("/api/v1/backups", headers=admin, json=body(tenants, tmp_path))
    assert answer.status_code == 201, answer.json
    created = answer.json
    assert created["tenant_ids"] == tenants and created["method"] == "delete"
    assert created["expires_at"] == "2027-02-01T02:00:00+00:00" and created["purged_at"] is None
    assert created["registered_by"] and created["purge_error"] is None
    offsite = body(tenants[:1], tmp_path, location="s3://backup-bucket/eu", method="crypto_shred")
    s3 = client.post("/api/v1/backups", headers=admin, json=offsite)
    assert s3.status_code == 201, s3.json

    [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "backups.snapshot_registered",
                                                          AuditEvent.subject_id == str(created["id"])))
    assert event.data["tenant_ids"] == tenants and event.data["object"] == "nightly/2026-02-01"

    for role in ("legal", "auditor", "admin"):
        listed = client.get("/api/v1/backups", headers=as_role(role))
        assert listed.status_code == 200
        assert [item["id"] for item in listed.json["items"]] == [s3.json["id"], created["id"]]
    only = client.get(f"/api/v1/backups?tenant_id={tenants[1]}", headers=admin)
    assert [item["id"] for item in only.json["items"]] == [created["id"]]
    assert client.get("/api/v1/backups", headers=as_role("csm")).status_code == 403
    refused = client.post("/api/v1/backups", headers=as_role("legal"), json=body(tenants, tmp_path))
    assert refused.status_code == 403


@pytest.mark.parametrize(("changes", "field"), [
    ({"taken_at": "2026-02-01T02:00:00"}, "taken_at"),  # no zone
    ({"taken_at": "2027-01-01T00:00:00+00:00"}, "taken_at"),  # in the future
    ({"taken_at": "yesterday"}, "taken_at"),
    ({"location": "ftp://host/backups"}, "location"),
    ({"location": "s3://user:secret@bucket/x"}, "location"),
    ({"location": ""}, "location"),
    ({"object": "../../etc"}, "object"),
    ({"object": "a//b"}, "object"),
    ({"tenant_ids": []}, "tenant_ids"),
    ({"tenant_ids": [999999]}, "tenant_ids"),
    ({"tenant_ids": [0]}, "tenant_ids"),
    ({"tenant_ids": "1"}, "tenant_ids"),
    ({"method": "shred"}, "method"),
    ({"size": 12}, "size"),
])
def test_bad_input_is_a_422_naming_the_field(client: Any, as_role: Any, clock: Any, tenants: list[int],
                                             tmp_path: Any, changes: dict[str, Any], field: str) -> None:
    answer = client.post("/api/v1/backups", headers=as_role("admin"), json=body(tenants, tmp_path, **changes))
    assert answer.status_code == 422, answer.json
    assert field in answer.json["errors"]["json"], answer.json
    assert db.session.scalars(select(BackupSnapshot)).all() == []


def test_missing_fields_are_named(client: Any, as_role: Any, clock: Any) -> None:
    answer = client.post("/api/v1/backups", headers=as_role("admin"), json={})
    assert answer.status_code == 422
    assert set(answer.json["errors"]["json"]) == {"taken_at", "location", "object", "tenant_ids"}


def test_a_time_with_no_utc_form_is_refused_by_name(client, as_role) -> None:
    answer = client.post("/api/v1/backups", headers=as_role("admin"), json={
        "taken_at": "0001-01-01T00:00:00+00:01", "location": "local", "object_name": "snap-0001"})
    assert answer.status_code == 422
    assert "out of range once converted to UTC" in str(answer.get_json()["errors"]["json"]["taken_at"])
