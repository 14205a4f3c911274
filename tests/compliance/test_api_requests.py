"""/api/v1/requests through the HTTP client: opening, filtering, transitions, deadlines."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from compliance import db, workflow
from compliance.models import ApiKey, AuditEvent, OffboardingRequest, Tenant

URL = "/api/v1/requests"
Headers = Callable[[str], dict[str, str]]
_refs = itertools.count()
ALL_FORMATS = ["csv", "json", "parquet", "pdf"]
TEXT_FIELD = {"verify": "note", "close": "final_invoice_ref"}  # the step's one text, else "reason"
DEFAULT_TEXT = {"verify": "intended: the price", "close": "INV-2026-0042"}


def new_tenant(client: FlaskClient, headers: dict[str, str], region: str = "DE") -> int:
    body = {"external_ref": f"req-{next(_refs)}", "name": "Acme", "region": region}
    response = client.post("/api/v1/tenants", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def request_body(tenant_id: int, **overrides: Any) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "requested_by": "cfo@acme.example", "channel": "email",
            "churn_reason": "price", **overrides}


def open_request(client: FlaskClient, headers: dict[str, str], region: str = "DE",
                 **overrides: Any) -> dict[str, Any]:
    tenant_id = new_tenant(client, headers, region)
    response = client.post(URL, json=request_body(tenant_id, **overrides), headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def actor_of(headers: dict[str, str]) -> str:
    prefix = headers["Authorization"].split("_")[1]
    return f"apikey:{db.session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix))}"


def audit_events(request_id: int, action: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(
        AuditEvent.request_id == request_id, AuditEvent.action == action).order_by(AuditEvent.id)))


def requests_of(tenant_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(OffboardingRequest)
                             .where(OffboardingRequest.tenant_id == tenant_id))


def act(client: FlaskClient, headers: dict[str, str], request_id: int, action: str,
        reason: str | None = None) -> Any:
    if action == "start-export":
        # Starting an export is POST .../exports (202 with the export); answer with the request.
        started = client.post(f"{URL}/{request_id}/exports", json={}, headers=headers)
        if started.status_code != 202:
            return started
        return client.get(f"{URL}/{request_id}", headers=headers)
    field = TEXT_FIELD.get(action, "reason")
    text = reason if reason is not None else DEFAULT_TEXT.get(action)
    body = {field: text} if text is not None else {}
    return client.post(f"{URL}/{request_id}/{action}", json=body, headers=headers)


def move_to_export_ready(request_id: int) -> None:
    """The export jobs, not the API, mark a request ready: do it as they would."""
    workflow.apply(request_id, "mark_ready", actor="system")
    db.session.commit()


# --- create -------------------------------------------------------------------------------------


def test_create_request(client: FlaskClient, as_role: Headers, clock: Any) -> None:
    headers = as_role("csm")
    tenant_id = new_tenant(client, headers, "DE")
    response = client.post(URL, json=request_body(tenant_id, owner="sam@offboard.example"),
                           headers=headers)

    assert response.status_code == 201
    created = response.get_json()
    assert created["tenant_id"] == tenant_id
    assert created["tenant_name"] == "Acme"
    assert created["status"] == "received"
    assert created["allowed_actions"] == ["acknowledge", "withdraw"]
    assert created["formats"] == ALL_FORMATS  # the default: every format
    assert created["owner"] == "sam@offboard.example"
    assert created["legal_regime"] == "gdpr"
    assert created["received_at"] == "2026-03-02T09:00:00+00:00"
    assert created["acknowledgement_due"] == "2026-03-03T09:00:00+00:00"
    assert created["export_due"] == "2026-03-05T09:00:00+00:00"
    assert created["legal_deadline"] == "2026-04-02T09:00:00+00:00"
    assert created["overdue"] is False
    assert created["extended_at"] is None

    row = db.session.get(OffboardingRequest, created["id"])
    assert row.status == "received"
    assert row.tenant_id == tenant_id
    [event] = audit_events(created["id"], "request.received")
    assert event.actor == actor_of(headers)
    assert event.tenant_id == tenant_id
    got = client.get(f"{URL}/{created['id']}", headers=as_role("auditor"))
    assert got.status_code == 200
    assert got.get_json() == created


@pytest.mark.parametrize(("region", "regime", "deadline"), [
    ("UK", "gdpr", "2026-04-02T09:00:00+00:00"),
    ("US-CA", "ccpa", "2026-04-16T09:00:00+00:00"),
    ("US-NY", "none", None),
])
def test_legal_regime_comes_from_the_tenant_region(client: FlaskClient, as_role: Headers, clock: Any,
                                                   region: str, regime: str,
                                                   deadline: str | None) -> None:
    created = open_request(client, as_role("csm"), region)
    assert created["legal_regime"] == regime
    assert created["legal_deadline"] == deadline


def test_explicit_legal_regime_wins(client: FlaskClient, as_role: Headers, clock: Any) -> None:
    created = open_request(client, as_role("csm"), "US-NY", legal_regime="gdpr")
    assert created["legal_regime"] == "gdpr"
    assert created["legal_deadline"] == "2026-04-02T09:00:00+00:00"


def test_formats_are_deduplicated(client: FlaskClient, as_role: Headers) -> None:
    created = open_request(client, as_role("csm"), formats=["pdf", "csv", "pdf"])
    assert created["formats"] == ["csv", "pdf"]


def test_second_open_request_for_a_tenant_is_409(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    first = open_request(client, headers)
    response = client.post(URL, json=request_body(first["tenant_id"]), headers=headers)
    assert response.status_code == 409
    assert f"({first['id']})" in response.get_json()["message"]
    assert requests_of(first["tenant_id"]) == 1


def test_new_request_after_withdraw(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    first = open_request(client, headers)
    assert act(client, headers, first["id"], "withdraw", "changed their mind").status_code == 200
    response = client.post(URL, json=request_body(first["tenant_id"]), headers=headers)
    assert response.status_code == 201
    assert requests_of(first["tenant_id"]) == 2


def test_request_for_unknown_tenant_is_404(client: FlaskClient, as_role: Headers) -> None:
    response = client.post(URL, json=request_body(2**62), headers=as_role("csm"))
    assert response.status_code == 404
    assert "tenant" in response.get_json()["message"]


@pytest.mark.parametrize(("field", "value"), [
    ("tenant_id", 99999999999999999999),
    ("tenant_id", 0),
    ("tenant_id", "one"),
    ("tenant_id", 1.5),  # not truncated to tenant 1
    ("channel", "pigeon"),
    ("churn_reason", "bored"),
    ("formats", []),
    ("formats", ["xml"]),
    ("legal_regime", "hipaa"),
    ("requested_by", ""),
    ("requested_by", "a\x00b"),
])
def test_invalid_request_is_422(client: FlaskClient, as_role: Headers, field: str, value: Any) -> None:
    headers = as_role("csm")
    tenant_id = new_tenant(client, headers)
    response = client.post(URL, json={**request_body(tenant_id), field: value}, headers=headers)
    assert response.status_code == 422
    errors = response.get_json()["errors"]["json"]
    assert field in errors or "NUL" in json.dumps(errors)
    assert requests_of(tenant_id) == 0


def test_unknown_field_is_422(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    tenant_id = new_tenant(client, headers)
    response = client.post(URL, json=request_body(tenant_id, status="closed"), headers=headers)
    assert response.status_code == 422
    assert "status" in response.get_json()["errors"]["json"]
    assert requests_of(tenant_id) == 0


@pytest.mark.parametrize("request_id", ["424242424242", "99999999999999999999", "0"])
def test_unknown_request_is_404(client: FlaskClient, as_role: Headers, request_id: str) -> None:
    headers = as_role("admin")
    assert client.get(f"{URL}/{request_id}", headers=headers).status_code == 404
    assert act(client, headers, request_id, "acknowledge").status_code == 404  # type: ignore[arg-type]
    response = client.post(f"{URL}/{request_id}/extend-deadline", json={"reason": "x"}, headers=headers)
    assert response.status_code == 404


# --- listing ------------------------------------------------------------------------------------


def _ids(client: FlaskClient, headers: dict[str, str], **query: Any) -> list[int]:
    response = client.get(URL, query_string=query, headers=headers)
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


def test_list_filters(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    sam = open_request(client, headers, owner="sam@offboard.example")
    kim = open_request(client, headers, owner="kim@offboard.example")
    acked = open_request(client, headers, owner="kim@offboard.example")
    assert act(client, headers, acked["id"], "acknowledge").status_code == 200
    ours = {sam["id"], kim["id"], acked["id"]}
    reader = as_role("auditor")

    assert set(_ids(client, reader, status="received")) & ours == {sam["id"], kim["id"]}
    assert set(_ids(client, reader, status="acknowledged")) & ours == {acked["id"]}
    assert set(_ids(client, reader, status="closed")) & ours == set()
    assert _ids(client, reader, tenant_id=kim["tenant_id"]) == [kim["id"]]
    assert set(_ids(client, reader, owner="kim@offboard.example")) & ours == {kim["id"], acked["id"]}
    assert _ids(client, reader, owner="kim@offboard.example", status="received",
                tenant_id=kim["tenant_id"]) == [kim["id"]]
    assert set(_ids(client, reader)) >= ours


@pytest.mark.parametrize("query", [{"status": "done"}, {"tenant_id": "abc"}, {"overdue": "maybe"},
                                   {"tenant_id": "99999999999999999999"}, {"limit": "0"}])
def test_invalid_list_filter_is_422(client: FlaskClient, as_role: Headers, query: dict[str, str]) -> None:
    response = client.get(URL, query_string=query, headers=as_role("csm"))
    assert response.status_code == 422
    assert set(query) <= set(response.get_json()["errors"]["query"])


def test_nul_character_in_a_query_filter_is_422(client: FlaskClient, as_role: Headers) -> None:
    response = client.get(URL, query_string={"owner": "a\x00b"}, headers=as_role("csm"))
    assert response.status_code == 422


def test_list_paginates(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    owner = f"pager-{next(_refs)}@offboard.example"
    made = [open_request(client, headers, owner=owner)["id"] for _ in range(3)]
    first = client.get(URL, query_string={"owner": owner, "limit": 2}, headers=headers).get_json()
    second = client.get(URL, query_string={"owner": owner, "limit": 2, "cursor": first["next_cursor"]},
                        headers=headers).get_json()
    assert [r["id"] for r in first["items"] + second["items"]] == sorted(made, reverse=True)
    assert second["next_cursor"] is None
    assert client.get(URL, query_string={"cursor": "nonsense"}, headers=headers).status_code == 400


def test_overdue_filter(client: FlaskClient, as_role: Headers, clock: Any) -> None:
    headers = as_role("csm")
    late = open_request(client, headers, "DE")
    on_time = open_request(client, headers, "DE")
    assert act(client, headers, on_time["id"], "acknowledge").status_code == 200
    ours = {late["id"], on_time["id"]}
    assert set(_ids(client, headers, overdue="true")) & ours == set()

    clock.advance(timedelta(hours=25))

    assert set(_ids(client, headers, overdue="true")) & ours == {late["id"]}
    assert set(_ids(client, headers, overdue="false")) & ours == {on_time["id"]}
    assert client.get(f"{URL}/{late['id']}", headers=headers).get_json()["overdue"] is True
    assert client.get(f"{URL}/{on_time['id']}", headers=headers).get_json()["overdue"] is False


def test_overdue_false_includes_requests_without_legal_deadline(client: FlaskClient,
                                                                as_role: Headers, clock: Any) -> None:
    headers = as_role("csm")
    none_regime = open_request(client, headers, "US-NY")
    assert none_regime["overdue"] is False
    assert none_regime["id"] in _ids(client, headers, overdue="false")


# --- transitions --------------------------------------------------------------------------------


def test_happy_path_through_every_endpoint(client: FlaskClient, as_role: Headers, clock: Any) -> None:
    headers = as_role("csm")
    created = open_request(client, headers)
    request_id, tenant_id = created["id"], created["tenant_id"]
    steps = [
        ("acknowledge", "acknowledged", "acknowledged_at", ["verify", "withdraw"]),
        ("verify", "verified", "verified_at", ["approve", "withdraw"]),
        ("approve", "approved", "approved_at", ["start_export", "withdraw"]),
        ("start-export", "exporting", "export_started_at", ["fail"]),
    ]
    for action, status, stamp, allowed in steps:
        now = clock.advance(timedelta(minutes=5))
        response = act(client, headers, request_id, action)
        assert response.status_code == 200, response.get_json()
        answer = response.get_json()
        assert answer["status"] == status
        assert answer["allowed_actions"] == allowed
        assert answer[stamp] == now.isoformat()
        [event] = audit_events(request_id, f"request.{status}")
        assert event.actor == actor_of(headers)
        assert event.data["to"] == status

    move_to_export_ready(request_id)
    ready = client.get(f"{URL}/{request_id}", headers=headers).get_json()
    assert ready["status"] == "export_ready"
    assert ready["allowed_actions"] == ["reduce_access"]
    reduced = act(client, headers, request_id, "reduce-access")
    assert reduced.status_code == 200
    assert reduced.get_json()["status"] == "access_reduced"
    assert reduced.get_json()["allowed_actions"] == ["close"]

    closed_at = clock.advance(timedelta(days=1))
    response = act(client, headers, request_id, "close")
    assert response.status_code == 200
    assert response.get_json()["status"] == "closed"
    assert response.get_json()["allowed_actions"] == ["collect_feedback"]
    assert response.get_json()["closed_at"] == closed_at.isoformat()
    assert response.get_json()["final_invoice_ref"] == "INV-2026-0042"
    db.session.expire_all()
    assert db.session.get(Tenant, tenant_id).closed_at == closed_at
    tenant = client.get(f"/api/v1/tenants/{tenant_id}", headers=headers).get_json()
    assert tenant["closed_at"] == closed_at.isoformat()
    assert [e.data["from"] for e in audit_events(request_id, "request.closed")] == ["access_reduced"]

    collected = act(client, headers, request_id, "collect-feedback")
    assert collected.status_code == 200
    assert collected.get_json()["status"] == "feedback_collected"
    assert collected.get_json()["allowed_actions"] == []
    assert [e.data["from"] for e in audit_events(request_id, "request.feedback_collected")] == ["closed"]


def test_withdraw_with_reason(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    created = open_request(client, headers)
    response = act(client, headers, created["id"], "withdraw", "the customer stays")
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["status"] == "withdrawn"
    assert answer["withdrawal_reason"] == "the customer stays"
    assert answer["allowed_actions"] == []
    assert db.session.get(OffboardingRequest, created["id"]).status == "withdrawn"
    [event] = audit_events(created["id"], "request.withdrawn")
    assert event.data == {"from": "received", "to": "withdrawn", "reason": "the customer stays"}


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": None}, {"why": "x"}])
def test_withdraw_without_reason_is_422(client: FlaskClient, as_role: Headers,
                                        body: dict[str, Any]) -> None:
    headers = as_role("csm")
    created = open_request(client, headers)
    response = client.post(f"{URL}/{created['id']}/withdraw", json=body, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["errors"]["json"]
    assert db.session.get(OffboardingRequest, created["id"]).status == "received"
    assert audit_events(created["id"], "request.withdrawn") == []


def _exporting(client: FlaskClient, headers: dict[str, str]) -> dict[str, Any]:
    created = open_request(client, headers)
    for action in ("acknowledge", "verify", "approve", "start-export"):
        assert act(client, headers, created["id"], action).status_code == 200
    return created


def test_fail_is_admin_only_and_needs_a_reason(client: FlaskClient, as_role: Headers) -> None:
    csm, admin = as_role("csm"), as_role("admin")
    created = _exporting(client, csm)

    assert act(client, csm, created["id"], "fail", "disk full").status_code == 403
    assert act(client, admin, created["id"], "fail").status_code == 422
    assert db.session.get(OffboardingRequest, created["id"]).status == "exporting"

    response = act(client, admin, created["id"], "fail", "disk full")
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["status"] == "failed"
    assert answer["failure_reason"] == "disk full"
    assert answer["allowed_actions"] == ["start_export", "withdraw"]
    [event] = audit_events(created["id"], "request.failed")
    assert event.actor == actor_of(admin)
    assert event.data == {"from": "exporting", "to": "failed", "reason": "disk full"}

    retry = act(client, csm, created["id"], "start-export")
    assert retry.status_code == 200
    assert retry.get_json()["status"] == "exporting"


@pytest.mark.parametrize(("steps", "action", "state"), [
    ([], "approve", "received"),
    ([], "start-export", "received"),
    ([], "close", "received"),
    ([], "verify", "received"),
    (["acknowledge"], "acknowledge", "acknowledged"),
    (["acknowledge"], "approve", "acknowledged"),
    (["acknowledge", "verify"], "reduce-access", "verified"),
    (["acknowledge", "verify"], "collect-feedback", "verified"),
    (["acknowledge", "verify", "approve", "start-export"], "withdraw", "exporting"),
    (["acknowledge", "verify", "approve", "start-export"], "close", "exporting"),
    (["withdraw"], "acknowledge", "withdrawn"),
    (["withdraw"], "withdraw", "withdrawn"),
])
def test_illegal_transition_is_409_naming_the_state(client: FlaskClient, as_role: Headers,
                                                    steps: list[str], action: str, state: str) -> None:
    headers = as_role("admin")
    created = open_request(client, headers)
    for step in steps:
        assert act(client, headers, created["id"], step, "r" if step == "withdraw" else None) \
            .status_code == 200
    events_before = db.session.scalar(select(func.count()).select_from(AuditEvent)
                                      .where(AuditEvent.request_id == created["id"]))

    response = act(client, headers, created["id"], action, "some reason")

    assert response.status_code == 409
    assert f"'{state}'" in response.get_json()["message"]
    db.session.expire_all()
    assert db.session.get(OffboardingRequest, created["id"]).status == state
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.request_id == created["id"])) == events_before


def test_mark_ready_is_not_an_endpoint(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("admin")
    created = _exporting(client, headers)
    assert act(client, headers, created["id"], "mark-ready").status_code == 404
    assert db.session.get(OffboardingRequest, created["id"]).status == "exporting"


@pytest.mark.parametrize("role", ["legal", "auditor"])
def test_readers_cannot_move_requests(client: FlaskClient, as_role: Headers, role: str) -> None:
    created = open_request(client, as_role("csm"))
    headers = as_role(role)
    assert act(client, headers, created["id"], "acknowledge").status_code == 403
    assert act(client, headers, created["id"], "withdraw", "x").status_code == 403
    assert db.session.get(OffboardingRequest, created["id"]).status == "received"


def test_transition_body_rejects_unknown_fields(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    created = open_request(client, headers)
    response = client.post(f"{URL}/{created['id']}/acknowledge", json={"status": "closed"},
                           headers=headers)
    assert response.status_code == 422
    assert db.session.get(OffboardingRequest, created["id"]).status == "received"


# --- extend-deadline ------------------------------------------------------------------------------


def test_legal_extends_the_deadline_once(client: FlaskClient, as_role: Headers, clock: Any) -> None:
    created = open_request(client, as_role("csm"), "DE")
    legal = as_role("legal")
    now = clock.advance(timedelta(days=3))

    response = client.post(f"{URL}/{created['id']}/extend-deadline",
                           json={"reason": "many systems"}, headers=legal)

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["legal_deadline"] == "2026-06-02T09:00:00+00:00"
    assert answer["extended_at"] == now.isoformat()
    assert answer["extension_reason"] == "many systems"
    [event] = audit_events(created["id"], "request.deadline_extended")
    assert event.actor == actor_of(legal)

    again = client.post(f"{URL}/{created['id']}/extend-deadline", json={"reason": "more"},
                        headers=legal)
    assert again.status_code == 409
    assert "already extended" in again.get_json()["message"]
    got = client.get(f"{URL}/{created['id']}", headers=legal).get_json()
    assert got["legal_deadline"] == "2026-06-02T09:00:00+00:00"
    assert got["extension_reason"] == "many systems"
    assert len(audit_events(created["id"], "request.deadline_extended")) == 1


def test_ccpa_extension_adds_45_days(client: FlaskClient, as_role: Headers, clock: Any) -> None:
    created = open_request(client, as_role("csm"), "US-CA")
    response = client.post(f"{URL}/{created['id']}/extend-deadline", json={"reason": "r"},
                           headers=as_role("admin"))
    assert response.status_code == 200
    assert response.get_json()["legal_deadline"] == "2026-05-31T09:00:00+00:00"


def test_extension_refused_after_the_deadline(client: FlaskClient, as_role: Headers,
                                              clock: Any) -> None:
    created = open_request(client, as_role("csm"), "DE")
    clock.advance(timedelta(days=32))
    response = client.post(f"{URL}/{created['id']}/extend-deadline", json={"reason": "late"},
                           headers=as_role("legal"))
    assert response.status_code == 409
    assert "passed" in response.get_json()["message"]
    assert audit_events(created["id"], "request.deadline_extended") == []


def test_extension_refused_without_a_legal_deadline(client: FlaskClient, as_role: Headers) -> None:
    created = open_request(client, as_role("csm"), "US-NY")
    response = client.post(f"{URL}/{created['id']}/extend-deadline", json={"reason": "r"},
                           headers=as_role("legal"))
    assert response.status_code == 409
    assert "none" in response.get_json()["message"]


def test_extension_needs_a_reason_and_a_role(client: FlaskClient, as_role: Headers) -> None:
    created = open_request(client, as_role("csm"), "DE")
    url = f"{URL}/{created['id']}/extend-deadline"
    assert client.post(url, json={}, headers=as_role("legal")).status_code == 422
    assert client.post(url, json={"reason": "r"}, headers=as_role("auditor")).status_code == 403
    assert db.session.get(OffboardingRequest, created["id"]).extended_at is None


# --- Idempotency-Key ------------------------------------------------------------------------------


def test_idempotent_request_creation(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    tenant_id = new_tenant(client, headers)
    body = request_body(tenant_id, formats=["csv"], owner="sam@offboard.example")
    keyed = {**headers, "Idempotency-Key": "open-1"}

    first = client.post(URL, data=json.dumps(body), content_type="application/json", headers=keyed)
    shuffled = json.dumps(dict(sorted(body.items(), reverse=True)), indent=2)
    again = client.post(URL, data=shuffled, content_type="application/json", headers=keyed)

    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.data == first.data
    assert requests_of(tenant_id) == 1
    assert len(audit_events(first.get_json()["id"], "request.received")) == 1

    different = client.post(URL, json={**body, "channel": "phone"}, headers=keyed)
    assert different.status_code == 422
    assert "Idempotency-Key" in different.get_json()["errors"]["headers"]
    assert requests_of(tenant_id) == 1


def test_idempotency_keys_are_per_principal(client: FlaskClient, as_role: Headers) -> None:
    alice, bob = as_role("csm"), as_role("admin")
    tenant_id = new_tenant(client, alice)
    body = request_body(tenant_id)
    first = client.post(URL, json=body, headers={**alice, "Idempotency-Key": "same"})
    assert first.status_code == 201
    # Bob's call is his own: not a replay of Alice's answer, so the open-request rule applies.
    second = client.post(URL, json=body, headers={**bob, "Idempotency-Key": "same"})
    assert second.status_code == 409
    assert "Idempotent-Replayed" not in second.headers
    other_tenant = new_tenant(client, bob)
    third = client.post(URL, json=request_body(other_tenant), headers={**bob, "Idempotency-Key": "same"})
    assert third.status_code == 201
    assert third.get_json()["id"] != first.get_json()["id"]
    assert requests_of(tenant_id) == requests_of(other_tenant) == 1


# --- errors -------------------------------------------------------------------------------------


def test_request_errors(client: FlaskClient, as_role: Headers) -> None:
    headers = as_role("csm")
    tenant_id = new_tenant(client, headers)
    body = request_body(tenant_id)

    assert client.post(URL, data=json.dumps(body), content_type="text/plain",
                       headers=headers).status_code == 415
    assert client.post(URL, data='{"tenant_id": ', content_type="application/json",
                       headers=headers).status_code == 400
    huge = request_body(tenant_id, churn_detail="x" * (1024 * 1024 + 1))
    assert client.post(URL, json=huge, headers=headers).status_code == 413
    anonymous = client.post(URL, json=body)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post(URL, json=body, headers={"Authorization": "Bearer ob_x"}).status_code == 401
    forbidden = client.post(URL, json=body, headers=as_role("auditor"))
    assert forbidden.status_code == 403
    assert requests_of(tenant_id) == 0
    assert client.post(URL, json=body, headers=headers).status_code == 201
