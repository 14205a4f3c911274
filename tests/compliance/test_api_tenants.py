"""/api/v1/tenants through the HTTP client: CRUD, validation, pagination, idempotency, errors."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from compliance import db
from compliance.auth import revoke_api_key
from compliance.models import ApiKey, AuditEvent, IdempotencyRecord, Tenant

URL = "/api/v1/tenants"
Headers = Callable[[str], dict[str, str]]
_refs = itertools.count()

def unique_ref(prefix: str = "acct") -> str:
    return f"{prefix}-{next(_refs)}-{id(_refs) % 9973}"


def tenant_body(**overrides: Any) -> dict[str, Any]:
    return {"external_ref": unique_ref(), "name": "Acme GmbH", "region": "DE", **overrides}


def create(client: FlaskClient, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = client.post(URL, json=tenant_body(**overrides), headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def actor_of(headers: dict[str, str]) -> str:
    prefix = headers["Authorization"].split("_")[1]
    key = db.session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    return f"apikey:{key.id}"


def tenants_with_ref(external_ref: str) -> int:
    return db.session.scalar(select(func.count()).select_from(Tenant)
                             .where(Tenant.external_ref == external_ref))


def audit_events(action: str, tenant_id: int | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.action == action)
    if tenant_id is not None:
        query = query.where(AuditEvent.tenant_id == tenant_id)
    return list(db.session.scalars(query.order_by(AuditEvent.id)))


# --- create, get, update ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "csm"])
def test_create_tenant(client: FlaskClient, as_role: Headers, clock: Any, role: str) -> None:
    headers = as_role(role)
    body = tenant_body(contact_email="it@acme.example")
    response = client.post(URL, json=body, headers=headers)

    assert response.status_code == 201
    created = response.get_json()
    assert created["id"] >= 1
    assert {k: created[k] for k in body} == body
    assert created["legal_regime"] == "gdpr"
    assert created["value_tier"] == "standard"
    assert created["closed_at"] is None
    assert created["created_at"].startswith("2026-03-02T09:00:00")
    assert "Idempotent-Replayed" not in response.headers

    tenant = db.session.get(Tenant, created["id"])
    assert tenant.external_ref == body["external_ref"]
    assert tenant.contact_email == "it@acme.example"
    [event] = audit_events("tenant.created", created["id"])
    assert event.actor == actor_of(headers)
    assert event.data == {"external_ref": body["external_ref"], "region": "DE"}


@pytest.mark.parametrize(("region", "regime"), [("UK", "gdpr"), ("EU", "gdpr"), ("US-CA", "ccpa"),
                                                ("US-NY", "none")])
def test_legal_regime_follows_region(client: FlaskClient, as_role: Headers, region: str,
                                     regime: str) -> None:
    assert create(client, as_role("csm"), region=region)["legal_regime"] == regime


def test_get_tenant(client: FlaskClient, as_role: Headers) -> None:
    created = create(client, as_role("csm"), value_tier="enterprise")
    for role in ("admin", "csm", "legal", "auditor"):
        response = client.get(f"{URL}/{created['id']}", headers=as_role(role))
        assert response.status_code == 200
        assert response.get_json() == created


def test_duplicate_external_ref_is_409(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    first = create(client, headers)
    response = client.post(URL, json=tenant_body(external_ref=first["external_ref"], name="Other"),
                           headers=headers)
    assert response.status_code == 409
    assert first["external_ref"] in response.get_json()["message"]
    assert tenants_with_ref(first["external_ref"]) == 1
    assert len(audit_events("tenant.created", first["id"])) == 1
    # the failed insert did not poison the session: the next call still works
    assert client.get(f"{URL}/{first['id']}", headers=headers).status_code == 200


@pytest.mark.parametrize(("field", "value"), [
    ("region", "Germany"),
    ("region", "de"),
    ("region", ""),
    ("value_tier", "gold"),
    ("contact_email", "not-an-email"),
    ("external_ref", ""),
    ("external_ref", "x" * 129),
    ("name", ""),
    ("name", 42),
    ("name", None),
])
def test_invalid_field_is_422_naming_it(client: FlaskClient, as_role: Headers, field: str,
                                        value: Any) -> None:
    body = tenant_body(**{field: value})
    response = client.post(URL, json=body, headers=as_role("csm"))
    assert response.status_code == 422
    assert field in response.get_json()["errors"]["json"]
    assert tenants_with_ref(body["external_ref"]) == 0


def test_region_error_says_what_a_region_is(client: FlaskClient, as_role: Headers) -> None:
    response = client.post(URL, json=tenant_body(region="Germany"), headers=as_role("csm"))
    assert response.status_code == 422
    assert response.get_json()["errors"]["json"] == {
        "region": ["region must be an ISO 3166 code such as DE, UK, US-CA, or EU"]}


@pytest.mark.parametrize("missing", ["external_ref", "name", "region"])
def test_missing_required_field_is_422(client: FlaskClient, as_role: Headers, missing: str) -> None:
    body = tenant_body()
    del body[missing]
    response = client.post(URL, json=body, headers=as_role("csm"))
    assert response.status_code == 422
    assert missing in response.get_json()["errors"]["json"]


def test_unknown_field_is_422(client: FlaskClient, as_role: Headers) -> None:
    body = tenant_body(is_vip=True)
    response = client.post(URL, json=body, headers=as_role("csm"))
    assert response.status_code == 422
    assert "is_vip" in response.get_json()["errors"]["json"]
    assert tenants_with_ref(body["external_ref"]) == 0


@pytest.mark.parametrize("field", ["name", "external_ref"])
def test_nul_character_is_422(client: FlaskClient, as_role: Headers, field: str) -> None:
    body = tenant_body()
    body[field] = body[field] + "\x00evil"
    response = client.post(URL, json=body, headers=as_role("csm"))
    assert response.status_code == 422
    assert "NUL" in json.dumps(response.get_json())
    assert db.session.scalar(select(func.count()).select_from(Tenant)
                             .where(Tenant.name.contains("evil"))) == 0


def test_nul_character_in_a_key_is_422(client: FlaskClient, as_role: Headers) -> None:
    body = {**tenant_body(), "na\x00me": "x"}
    assert client.post(URL, json=body, headers=as_role("csm")).status_code == 422


IMPOSSIBLE_IDS = ["9223372036854775808", "99999999999999999999", "0"]  # outside 1..2**63-1


@pytest.mark.parametrize("tenant_id", ["999999", "9223372036854775807", *IMPOSSIBLE_IDS, "-1", "abc"])
def test_unknown_or_impossible_id_is_404(client: FlaskClient, as_role: Headers, tenant_id: str) -> None:
    response = client.get(f"{URL}/{tenant_id}", headers=as_role("admin"))
    assert response.status_code == 404


@pytest.mark.parametrize("tenant_id", ["999999", "9223372036854775807", "-1", "abc"])
def test_update_unknown_id_is_404(client: FlaskClient, as_role: Headers, tenant_id: str) -> None:
    response = client.patch(f"{URL}/{tenant_id}", json={"name": "x"}, headers=as_role("admin"))
    assert response.status_code == 404


@pytest.mark.parametrize("tenant_id", IMPOSSIBLE_IDS)
def test_update_impossible_id_is_404(client: FlaskClient, as_role: Headers, tenant_id: str) -> None:
    response = client.patch(f"{URL}/{tenant_id}", json={"name": "x"}, headers=as_role("admin"))
    assert response.status_code == 404


def test_update_tenant(client: FlaskClient, as_role: Headers, clock: Any) -> None:
    headers = as_role("csm")
    created = create(client, headers)
    changed_at = clock.advance(timedelta(hours=1))

    response = client.patch(f"{URL}/{created['id']}",
                            json={"name": "Acme Inc", "region": "US-CA", "value_tier": "premium"},
                            headers=headers)

    assert response.status_code == 200
    updated = response.get_json()
    assert updated["name"] == "Acme Inc"
    assert updated["region"] == "US-CA"
    assert updated["legal_regime"] == "ccpa"
    assert updated["value_tier"] == "premium"
    assert updated["external_ref"] == created["external_ref"]
    db.session.expire_all()
    tenant = db.session.get(Tenant, created["id"])
    assert (tenant.name, tenant.region, tenant.value_tier) == ("Acme Inc", "US-CA", "premium")
    assert tenant.updated_at == changed_at
    [event] = audit_events("tenant.updated", created["id"])
    assert event.actor == actor_of(headers)
    assert event.data == {"changed": ["name", "region", "value_tier"]}
    fetched = client.get(f"{URL}/{created['id']}", headers=headers).get_json()
    assert {k: v for k, v in fetched.items() if k != "updated_at"} == \
        {k: v for k, v in updated.items() if k != "updated_at"}


def test_update_answer_shows_the_new_updated_at(client: FlaskClient, as_role: Headers,
                                                clock: Any) -> None:
    headers = as_role("csm")
    created = create(client, headers)
    clock.advance(timedelta(hours=1))
    updated = client.patch(f"{URL}/{created['id']}", json={"name": "Renamed"}, headers=headers)
    fetched = client.get(f"{URL}/{created['id']}", headers=headers)
    assert fetched.get_json()["updated_at"] != created["updated_at"]
    assert updated.get_json()["updated_at"] == fetched.get_json()["updated_at"]


def test_update_without_change_is_not_audited(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("admin")
    created = create(client, headers)
    response = client.patch(f"{URL}/{created['id']}", json={"name": created["name"]}, headers=headers)
    assert response.status_code == 200
    assert audit_events("tenant.updated", created["id"]) == []


def test_contact_email_can_be_cleared(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    created = create(client, headers, contact_email="a@acme.example")
    response = client.patch(f"{URL}/{created['id']}", json={"contact_email": None}, headers=headers)
    assert response.status_code == 200
    assert response.get_json()["contact_email"] is None
    db.session.expire_all()
    assert db.session.get(Tenant, created["id"]).contact_email is None


@pytest.mark.parametrize(("patch", "field"), [
    ({"region": "Germany"}, "region"),
    ({"external_ref": "new-ref"}, "external_ref"),  # not changeable
    ({"name": ""}, "name"),
    ({"value_tier": "gold"}, "value_tier"),
])
def test_invalid_update_is_422_and_changes_nothing(client: FlaskClient, as_role: Headers,
                                                    patch: dict[str, Any], field: str) -> None:
    headers = as_role("csm")
    created = create(client, headers)
    response = client.patch(f"{URL}/{created['id']}", json=patch, headers=headers)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]["json"]
    assert client.get(f"{URL}/{created['id']}", headers=headers).get_json() == created
    assert audit_events("tenant.updated", created["id"]) == []


@pytest.mark.parametrize("role", ["legal", "auditor"])
def test_readers_cannot_write(client: FlaskClient, as_role: Headers, role: str) -> None:
    created = create(client, as_role("csm"))
    headers = as_role(role)
    body = tenant_body()
    response = client.post(URL, json=body, headers=headers)
    assert response.status_code == 403
    assert role in response.get_json()["message"]
    assert tenants_with_ref(body["external_ref"]) == 0
    patched = client.patch(f"{URL}/{created['id']}", json={"name": "Hacked"}, headers=headers)
    assert patched.status_code == 403
    db.session.expire_all()
    assert db.session.get(Tenant, created["id"]).name == "Acme GmbH"


# --- listing ------------------------------------------------------------------------------------


def test_cursor_pagination_walks_every_tenant_once(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("auditor")
    marker = unique_ref("walk")
    made = [create(client, as_role("csm"), name=f"{marker} {i}")["id"] for i in range(5)]

    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": 2, "q": marker, **({"cursor": cursor} if cursor else {})}
        response = client.get(URL, query_string=query, headers=headers)
        assert response.status_code == 200
        page = response.get_json()
        pages += 1
        assert len(page["items"]) <= 2
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 5, "pagination does not end"

    assert pages == 3
    assert seen == sorted(made, reverse=True)  # newest first, no duplicates, none missing
    assert len(set(seen)) == 5


def test_exact_last_page_has_no_next_cursor(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    marker = unique_ref("even")
    for i in range(4):
        create(client, headers, name=f"{marker} {i}")
    first = client.get(URL, query_string={"limit": 2, "q": marker}, headers=headers).get_json()
    second = client.get(URL, query_string={"limit": 2, "q": marker, "cursor": first["next_cursor"]},
                        headers=headers).get_json()
    assert len(second["items"]) == 2
    assert second["next_cursor"] is None


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", ["garbage", "!!!!", "%%%", _b64("id:abc"), _b64("id:0"),
                                    _b64("id:-5"), _b64("user:5"), _b64("id:99999999999999999999"),
                                    "\u00e9t\u00e9"])
def test_garbage_cursor_is_400(client: FlaskClient, as_role: Headers, cursor: str) -> None:
    response = client.get(URL, query_string={"cursor": cursor}, headers=as_role("csm"))
    assert response.status_code == 400
    assert "cursor" in response.get_json()["errors"]["query"]


@pytest.mark.parametrize("limit", ["0", "201", "-1", "many"])
def test_bad_limit_is_422(client: FlaskClient, as_role: Headers, limit: str) -> None:
    response = client.get(URL, query_string={"limit": limit}, headers=as_role("csm"))
    assert response.status_code == 422
    assert "limit" in response.get_json()["errors"]["query"]


def test_search_by_name_or_external_ref(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    marker = unique_ref("srch")
    by_name = create(client, headers, name=f"Globex {marker} Corporation")
    by_ref = create(client, headers, external_ref=f"ext-{marker}-9", name="Initech")
    create(client, headers, name="Umbrella")

    def ids(q: str) -> set[int]:
        response = client.get(URL, query_string={"q": q}, headers=headers)
        assert response.status_code == 200
        return {item["id"] for item in response.get_json()["items"]}

    assert ids(marker) == {by_name["id"], by_ref["id"]}
    assert ids(marker.upper()) == {by_name["id"], by_ref["id"]}  # case-insensitive
    assert ids(f"globex {marker}") == {by_name["id"]}
    assert ids(f"ext-{marker}") == {by_ref["id"]}
    assert ids(f"{marker}-nothing") == set()


def test_search_treats_wildcards_literally(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    marker = unique_ref("wild")
    percent = create(client, headers, name=f"{marker} 100% Co")
    create(client, headers, name=f"{marker} 100 Co")
    under = create(client, headers, name=f"{marker} a_b")
    create(client, headers, name=f"{marker} axb")

    def names(q: str) -> set[int]:
        return {item["id"] for item in
                client.get(URL, query_string={"q": q}, headers=headers).get_json()["items"]}

    assert names(f"{marker} 100%") == {percent["id"]}
    assert names(f"{marker} a_b") == {under["id"]}


def test_nul_character_in_a_query_filter_is_422(client: FlaskClient, as_role: Headers) -> None:
    response = client.get(URL, query_string={"q": "a\x00b"}, headers=as_role("csm"))
    assert response.status_code == 422


def test_filter_by_region(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    marker = unique_ref("reg")
    german = create(client, headers, name=f"{marker} de", region="DE")
    create(client, headers, name=f"{marker} ca", region="US-CA")

    response = client.get(URL, query_string={"q": marker, "region": "DE"}, headers=headers)
    assert response.status_code == 200
    assert [item["id"] for item in response.get_json()["items"]] == [german["id"]]
    all_regions = client.get(URL, query_string={"q": marker}, headers=headers).get_json()["items"]
    assert len(all_regions) == 2
    bad = client.get(URL, query_string={"region": "Germany"}, headers=headers)
    assert bad.status_code == 422
    assert "region" in bad.get_json()["errors"]["query"]


# --- Idempotency-Key ------------------------------------------------------------------------------


def _raw(body: dict[str, Any], *, reverse: bool = False, spaced: bool = False) -> str:
    items = dict(reversed(list(body.items()))) if reverse else body
    return json.dumps(items, indent=4 if spaced else None, separators=None if spaced else (",", ":"))


def test_idempotent_create_replays_the_first_answer(client: FlaskClient, as_role: Headers) -> None:
    headers = {**as_role("csm"), "Idempotency-Key": "create-acme-1"}
    body = tenant_body(contact_email="it@acme.example", value_tier="premium")

    first = client.post(URL, data=_raw(body), content_type="application/json", headers=headers)
    again = client.post(URL, data=_raw(body, reverse=True, spaced=True),
                        content_type="application/json", headers=headers)

    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert again.data.strip() == first.data.strip()
    assert tenants_with_ref(body["external_ref"]) == 1
    assert len(audit_events("tenant.created", first.get_json()["id"])) == 1
    assert db.session.scalar(select(func.count()).select_from(IdempotencyRecord)
                             .where(IdempotencyRecord.key == "create-acme-1")) == 1


def test_idempotency_key_reused_with_another_body_is_422(client: FlaskClient,
                                                          as_role: Headers) -> None:
    headers = {**as_role("csm"), "Idempotency-Key": "k-2"}
    body = tenant_body()
    assert client.post(URL, json=body, headers=headers).status_code == 201
    other = {**body, "name": "Someone Else"}
    response = client.post(URL, json=other, headers=headers)
    assert response.status_code == 422
    assert "Idempotency-Key" in response.get_json()["errors"]["headers"]
    assert "Idempotent-Replayed" not in response.headers
    db.session.expire_all()
    assert db.session.scalar(select(Tenant.name).where(Tenant.external_ref == body["external_ref"])) \
        == "Acme GmbH"


def test_idempotency_keys_belong_to_their_principal(client: FlaskClient, as_role: Headers) -> None:
    alice, bob = as_role("csm"), as_role("csm")
    key = {"Idempotency-Key": "shared-key"}
    first = client.post(URL, json=tenant_body(), headers={**alice, **key})
    second = client.post(URL, json=tenant_body(), headers={**bob, **key})
    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second.headers
    assert first.get_json()["id"] != second.get_json()["id"]

    # Bob's retry of Alice's exact body is a new call, not Alice's replay.
    body = tenant_body()
    assert client.post(URL, json=body, headers={**alice, "Idempotency-Key": "k3"}).status_code == 201
    clash = client.post(URL, json=body, headers={**bob, "Idempotency-Key": "k3"})
    assert clash.status_code == 409
    assert tenants_with_ref(body["external_ref"]) == 1


def test_failed_call_is_not_remembered(client: FlaskClient, as_role: Headers) -> None:
    headers = {**as_role("csm"), "Idempotency-Key": "retry-after-fix"}
    body = tenant_body(region="Germany")
    assert client.post(URL, json=body, headers=headers).status_code == 422
    fixed = client.post(URL, json={**body, "region": "DE"}, headers=headers)
    assert fixed.status_code == 201
    assert "Idempotent-Replayed" not in fixed.headers


@pytest.mark.parametrize("key", ["has space", "", "x" * 256, "caf\u00e9"])
def test_malformed_idempotency_key_is_400(client: FlaskClient, as_role: Headers, key: str) -> None:
    body = tenant_body()
    response = client.post(URL, json=body, headers={**as_role("csm"), "Idempotency-Key": key})
    assert response.status_code == 400
    assert tenants_with_ref(body["external_ref"]) == 0


# --- errors -------------------------------------------------------------------------------------


def test_text_plain_body_is_415(client: FlaskClient, as_role: Headers) -> None:
    response = client.post(URL, data="external_ref=x", content_type="text/plain",
                           headers=as_role("csm"))
    assert response.status_code == 415
    assert response.get_json()["code"] == 415


def test_malformed_json_is_400(client: FlaskClient, as_role: Headers) -> None:
    response = client.post(URL, data='{"external_ref": "x", "name": ', content_type="application/json",
                           headers=as_role("csm"))
    assert response.status_code == 400
    assert tenants_with_ref("x") == 0


def test_malformed_json_with_idempotency_key_is_400(client: FlaskClient, as_role: Headers) -> None:
    response = client.post(URL, data="{nope", content_type="application/json",
                           headers={**as_role("csm"), "Idempotency-Key": "bad-json"})
    assert response.status_code == 400


def test_body_over_one_mebibyte_is_413(client: FlaskClient, as_role: Headers) -> None:
    body = tenant_body(name="x" * (1024 * 1024))
    response = client.post(URL, json=body, headers=as_role("csm"))
    assert response.status_code == 413
    assert tenants_with_ref(body["external_ref"]) == 0


def test_no_authorization_is_401_with_challenge(client: FlaskClient) -> None:
    for response in (client.get(URL), client.post(URL, json=tenant_body())):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("authorization", [
    "Bearer ob_000000000000_" + "A" * 43,
    "Bearer not-a-key",
    "Basic YWRtaW46YWRtaW4=",
    "Bearer",
])
def test_wrong_key_is_401(client: FlaskClient, authorization: str) -> None:
    response = client.get(URL, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


def test_tampered_key_is_401(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("admin")
    token = headers["Authorization"]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert client.get(URL, headers=headers).status_code == 200
    assert client.get(URL, headers={"Authorization": tampered}).status_code == 401


def test_revoked_key_is_401(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("admin")
    assert client.get(URL, headers=headers).status_code == 200
    prefix = headers["Authorization"].split("_")[1]
    revoke_api_key(db.session.scalar(select(ApiKey).where(ApiKey.prefix == prefix)), actor="test")
    db.session.commit()
    response = client.get(URL, headers=headers)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


def test_no_contact_is_set_with_its_time_kept_and_withdrawn(client: FlaskClient, as_role: Headers,
                                                            clock: Any) -> None:
    headers = as_role("csm")
    created = create(client, headers)
    assert created["no_contact_since"] is None
    asked_at = clock.advance(timedelta(hours=2))

    response = client.patch(f"{URL}/{created['id']}", json={"no_contact": True}, headers=headers)
    assert response.status_code == 200
    assert response.get_json()["no_contact_since"].startswith("2026-03-02T11:00:00")
    assert db.session.get(Tenant, created["id"]).no_contact_since == asked_at
    [event] = audit_events("tenant.updated", created["id"])
    assert event.data == {"changed": ["no_contact"]}

    clock.advance(timedelta(days=1))  # asking again keeps the first time and records nothing
    again = client.patch(f"{URL}/{created['id']}", json={"no_contact": True}, headers=headers).get_json()
    assert again["no_contact_since"] == response.get_json()["no_contact_since"]
    assert len(audit_events("tenant.updated", created["id"])) == 1

    withdrawn = client.patch(f"{URL}/{created['id']}", json={"no_contact": False}, headers=headers)
    assert withdrawn.get_json()["no_contact_since"] is None
    assert client.get(f"{URL}/{created['id']}", headers=headers).get_json()["no_contact_since"] is None
    assert client.patch(f"{URL}/{created['id']}", json={"no_contact": "maybe"},
                        headers=headers).status_code == 422


# --- annual value ---------------------------------------------------------------------------------


def test_annual_value_is_stored_on_create(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    created = create(client, headers, annual_value=48000)
    assert created["annual_value"] == 48000
    assert db.session.get(Tenant, created["id"]).annual_value == 48000
    assert client.get(f"{URL}/{created['id']}", headers=headers).get_json()["annual_value"] == 48000
    [event] = audit_events("tenant.created", created["id"])
    assert event.actor == actor_of(headers)
    assert create(client, headers)["annual_value"] is None  # not known unless given
    assert create(client, headers, annual_value=None)["annual_value"] is None


def test_annual_value_is_patched_cleared_and_audited(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("admin")
    created = create(client, headers, annual_value=12000)
    url = f"{URL}/{created['id']}"

    patched = client.patch(url, json={"annual_value": 60000}, headers=headers)
    assert patched.status_code == 200 and patched.get_json()["annual_value"] == 60000
    db.session.expire_all()
    assert db.session.get(Tenant, created["id"]).annual_value == 60000
    [event] = audit_events("tenant.updated", created["id"])
    assert (event.actor, event.data) == (actor_of(headers), {"changed": ["annual_value"]})

    assert client.patch(url, json={"annual_value": 60000}, headers=headers).status_code == 200
    assert len(audit_events("tenant.updated", created["id"])) == 1  # the same value is no change

    cleared = client.patch(url, json={"annual_value": None}, headers=headers)
    assert cleared.status_code == 200 and cleared.get_json()["annual_value"] is None
    db.session.expire_all()
    assert db.session.get(Tenant, created["id"]).annual_value is None
    events = audit_events("tenant.updated", created["id"])
    assert [event.data for event in events] == [{"changed": ["annual_value"]}] * 2


def test_the_largest_annual_value_is_accepted(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    created = create(client, headers, annual_value=0)
    assert created["annual_value"] == 0
    largest = 10**15  # past 32 bits: a BIGINT column on PostgreSQL
    patched = client.patch(f"{URL}/{created['id']}", json={"annual_value": largest}, headers=headers)
    assert patched.status_code == 200, patched.get_json()
    db.session.expire_all()
    assert db.session.get(Tenant, created["id"]).annual_value == largest


@pytest.mark.parametrize("value", [-1, 1.5, "abc", "", True, 10**15 + 1, 2**63, 10**20])
def test_a_bad_annual_value_is_422_naming_it(client: FlaskClient, as_role: Headers, value: Any) -> None:
    headers = as_role("csm")
    body = tenant_body(annual_value=value)
    response = client.post(URL, json=body, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["errors"]["json"] == {"annual_value": [
        "annual_value must be a whole number of currency units from 0 to 1000000000000000"]}
    assert tenants_with_ref(body["external_ref"]) == 0

    created = create(client, headers, annual_value=7000)
    patched = client.patch(f"{URL}/{created['id']}", json={"annual_value": value, "name": "Renamed"},
                           headers=headers)
    assert patched.status_code == 422
    assert list(patched.get_json()["errors"]["json"]) == ["annual_value"]
    assert client.get(f"{URL}/{created['id']}", headers=headers).get_json() == created
    assert audit_events("tenant.updated", created["id"]) == []
