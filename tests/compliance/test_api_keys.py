"""/api/v1/keys through the HTTP client: the plain key is shown once, roles apply, revocation."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from compliance import db
from compliance.models import ApiKey, AuditEvent, IdempotencyRecord

URL = "/api/v1/keys"
Headers = Callable[[str], dict[str, str]]
KEY = re.compile(r"^ob_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def actor_of(headers: dict[str, str]) -> str:
    prefix = headers["Authorization"].split("_")[1]
    return f"apikey:{db.session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix))}"


def bearer(plain: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plain}"}


def new_key(client: FlaskClient, admin: dict[str, str], role: str = "csm",
            name: str = "ci pipeline") -> dict[str, Any]:
    response = client.post(URL, json={"name": name, "role": role}, headers=admin)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def key_events(key_id: int, action: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == action, AuditEvent.subject_type == "apikey",
        AuditEvent.subject_id == str(key_id))))


def test_admin_creates_a_key(client: FlaskClient, as_role: Headers, clock: Any) -> None:
    admin = as_role("admin")
    created = new_key(client, admin, role="legal", name="legal team")

    match = KEY.match(created["key"])
    assert match is not None
    prefix, secret = match.groups()
    assert created["prefix"] == prefix
    assert created["name"] == "legal team"
    assert created["role"] == "legal"
    assert created["created_by"] == actor_of(admin)
    assert created["created_at"] == "2026-03-02T09:00:00+00:00"
    assert created["revoked_at"] is None
    assert created["last_used_at"] is None
    assert "secret_hash" not in created

    row = db.session.get(ApiKey, created["id"])
    assert row.prefix == prefix
    assert row.secret_hash == hashlib.sha256(secret.encode()).digest()
    assert secret not in row.secret_hash.hex()
    [event] = key_events(created["id"], "apikey.created")
    assert event.actor == actor_of(admin)
    assert event.data == {"name": "legal team", "role": "legal", "prefix": prefix}
    assert secret not in event.canonical


def test_every_key_is_different(client: FlaskClient, as_role: Headers) -> None:
    admin = as_role("admin")
    first, second = new_key(client, admin), new_key(client, admin)
    assert first["key"] != second["key"]
    assert first["prefix"] != second["prefix"]


def test_list_never_shows_the_plain_key_or_its_hash(client: FlaskClient, as_role: Headers) -> None:
    admin = as_role("admin")
    created = new_key(client, admin, role="auditor", name="auditor bot")
    secret = KEY.match(created["key"]).group(2)
    secret_hash = db.session.get(ApiKey, created["id"]).secret_hash

    response = client.get(URL, query_string={"limit": 200}, headers=admin)

    assert response.status_code == 200
    items = {item["id"]: item for item in response.get_json()["items"]}
    listed = items[created["id"]]
    assert listed == {name: created[name] for name in listed}
    assert {"name", "role", "prefix", "created_by", "revoked_at"} <= set(listed)
    for item in items.values():
        assert "key" not in item
        assert "secret_hash" not in item
    text = response.get_data(as_text=True)
    assert secret not in text
    assert created["key"] not in text
    assert secret_hash.hex() not in text


@pytest.mark.parametrize(("role", "can_write_tenants"), [("csm", True), ("admin", True),
                                                         ("legal", False), ("auditor", False)])
def test_new_key_works_for_its_role(client: FlaskClient, as_role: Headers, role: str,
                                    can_write_tenants: bool) -> None:
    created = new_key(client, as_role("admin"), role=role)
    headers = bearer(created["key"])

    assert client.get("/api/v1/tenants", headers=headers).status_code == 200
    body = {"external_ref": f"key-{created['id']}", "name": "Acme", "region": "DE"}
    response = client.post("/api/v1/tenants", json=body, headers=headers)
    assert response.status_code == (201 if can_write_tenants else 403)
    assert client.get(URL, headers=headers).status_code == (200 if role == "admin" else 403)
    if can_write_tenants:
        [event] = db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "tenant.created", AuditEvent.tenant_id == response.get_json()["id"]))
        assert event.actor == f"apikey:{created['id']}"


def test_use_is_recorded_as_last_used_at(client: FlaskClient, as_role: Headers, clock: Any) -> None:
    admin = as_role("admin")
    created = new_key(client, admin)
    used_at = clock.advance(timedelta(hours=2))
    assert client.get("/api/v1/tenants", headers=bearer(created["key"])).status_code == 200
    db.session.expire_all()
    assert db.session.get(ApiKey, created["id"]).last_used_at == used_at


def test_revoked_key_is_refused(client: FlaskClient, as_role: Headers, clock: Any) -> None:
    admin = as_role("admin")
    created = new_key(client, admin)
    headers = bearer(created["key"])
    assert client.get("/api/v1/tenants", headers=headers).status_code == 200
    revoked_at = clock.advance(timedelta(minutes=3))

    response = client.delete(f"{URL}/{created['id']}", headers=admin)

    assert response.status_code == 200
    assert response.get_json()["revoked_at"] == revoked_at.isoformat()
    assert "key" not in response.get_json()
    refused = client.get("/api/v1/tenants", headers=headers)
    assert refused.status_code == 401
    assert "WWW-Authenticate" in refused.headers
    db.session.expire_all()
    assert db.session.get(ApiKey, created["id"]).revoked_at == revoked_at
    [event] = key_events(created["id"], "apikey.revoked")
    assert event.actor == actor_of(admin)
    assert event.data == {"name": created["name"], "prefix": created["prefix"]}

    clock.advance(timedelta(minutes=1))
    again = client.delete(f"{URL}/{created['id']}", headers=admin)
    assert again.status_code == 200
    assert again.get_json()["revoked_at"] == revoked_at.isoformat()  # the first revocation stands
    assert len(key_events(created["id"], "apikey.revoked")) == 1


def test_revoking_one_key_leaves_the_others(client: FlaskClient, as_role: Headers) -> None:
    admin = as_role("admin")
    kept, revoked = new_key(client, admin), new_key(client, admin)
    assert client.delete(f"{URL}/{revoked['id']}", headers=admin).status_code == 200
    assert client.get("/api/v1/tenants", headers=bearer(kept["key"])).status_code == 200
    assert client.get("/api/v1/tenants", headers=bearer(revoked["key"])).status_code == 401


@pytest.mark.parametrize("key_id", ["424242424242", "9223372036854775807", "99999999999999999999"])
def test_revoke_unknown_key_is_404(client: FlaskClient, as_role: Headers, key_id: str) -> None:
    assert client.delete(f"{URL}/{key_id}", headers=as_role("admin")).status_code == 404


@pytest.mark.parametrize("role", ["csm", "legal", "auditor"])
def test_only_admins_manage_keys(client: FlaskClient, as_role: Headers, role: str) -> None:
    created = new_key(client, as_role("admin"))
    headers = as_role(role)
    assert client.get(URL, headers=headers).status_code == 403
    response = client.post(URL, json={"name": "mine", "role": "admin"}, headers=headers)
    assert response.status_code == 403
    assert db.session.scalar(select(ApiKey.id).where(ApiKey.name == "mine")) is None
    assert client.delete(f"{URL}/{created['id']}", headers=headers).status_code == 403
    assert db.session.get(ApiKey, created["id"]).revoked_at is None
    assert client.get("/api/v1/tenants", headers=bearer(created["key"])).status_code == 200


def test_anonymous_cannot_list_keys(client: FlaskClient) -> None:
    response = client.get(URL)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "x", "role": "root"}, "role"),
    ({"name": "", "role": "csm"}, "name"),
    ({"role": "csm"}, "name"),
    ({"name": "x"}, "role"),
    ({"name": "x", "role": "csm", "prefix": "000000000000"}, "prefix"),
])
def test_invalid_key_request_is_422(client: FlaskClient, as_role: Headers, body: dict[str, Any],
                                    field: str) -> None:
    response = client.post(URL, json=body, headers=as_role("admin"))
    assert response.status_code == 422
    assert field in response.get_json()["errors"]["json"]


def test_plain_key_is_never_stored_even_with_an_idempotency_key(client: FlaskClient,
                                                                as_role: Headers) -> None:
    headers = {**as_role("admin"), "Idempotency-Key": "new-key-1"}
    created = client.post(URL, json={"name": "bot", "role": "csm"}, headers=headers)
    assert created.status_code == 201
    secret = KEY.match(created.get_json()["key"]).group(2)
    stored = db.session.scalars(select(IdempotencyRecord.response_body)).all()
    assert not any(secret in body for body in stored)
    replay = client.post(URL, json={"name": "bot", "role": "csm"}, headers=headers)
    assert secret not in replay.get_data(as_text=True)
