"""The professional exit through the API: verification, save attempts and their rule, the approval
rule by value tier, access reduction, closure, feedback, and the messages queued at each step."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from compliance import config, db, saves, workflow
from compliance.models import AuditEvent, OffboardingRequest, OutboxMessage, SaveAttempt, Tenant

URL = "/api/v1/requests"
CONTACT = "it@kestrel.example"
Headers = Callable[[str], dict[str, str]]
_refs = itertools.count()


def open_request(client: FlaskClient, headers: dict[str, str], *, tier: str = "standard",
                 reason: str = "price", **extra: Any) -> dict[str, Any]:
    tenant = client.post("/api/v1/tenants", headers=headers, json={
        "external_ref": f"steps-{next(_refs)}", "name": "Kestrel Labs", "region": "DE", "value_tier": tier,
        "contact_email": CONTACT}).get_json()
    answer = client.post(URL, headers=headers, json={
        "tenant_id": tenant["id"], "requested_by": "Cora Finch", "channel": "email", "churn_reason": reason,
        **extra})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def post(client: FlaskClient, headers: dict[str, str], request_id: int, step: str,
         body: dict[str, Any] | None = None) -> Any:
    return client.post(f"{URL}/{request_id}/{step}", headers=headers, json=body or {})


def verified(client: FlaskClient, headers: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    created = open_request(client, headers, **kwargs)
    assert post(client, headers, created["id"], "acknowledge").status_code == 200
    answer = post(client, headers, created["id"], "verify", {"note": "Confirmed with the CFO: the price"})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def messages(request_id: int) -> list[tuple[str, str]]:
    return [(m.kind, m.recipient) for m in db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.request_id == request_id).order_by(OutboxMessage.id))]


def events(request_id: int, action: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(
        AuditEvent.request_id == request_id, AuditEvent.action == action).order_by(AuditEvent.id)))


@pytest.fixture
def approval_tier() -> Iterator[Callable[[str], None]]:
    before = config.current()
    yield lambda tier: config.use(dataclasses.replace(before, approval_tier=tier))
    config.use(before)


def test_the_whole_path_to_feedback_with_a_message_at_each_step(client: FlaskClient, as_role: Headers,
                                                                  clock: Any) -> None:
    csm, admin = as_role("csm"), as_role("admin")
    created = open_request(client, csm)
    request_id = created["id"]
    assert created["processing_due"] == "2026-03-16T09:00:00+00:00"
    assert post(client, csm, request_id, "acknowledge").get_json()["status"] == "acknowledged"
    assert messages(request_id) == [("acknowledgement", CONTACT)]

    answer = post(client, csm, request_id, "verify", {"note": "Intended; too expensive",
                                                      "no_sales_contact": True}).get_json()
    assert (answer["status"], answer["verification_note"], answer["no_sales_contact"]) == (
        "verified", "Intended; too expensive", True)
    assert answer["verified_by"].startswith("apikey:")
    assert messages(request_id)[-1] == ("plan", CONTACT)
    [event] = events(request_id, "request.verified")
    assert event.data["reason"] == "Intended; too expensive" and event.data["no_sales_contact"] is True

    approved = post(client, csm, request_id, "approve").get_json()
    assert approved["status"] == "approved" and approved["approved_by"] == answer["verified_by"]
    assert post(client, csm, request_id, "exports").status_code == 202
    workflow.apply(request_id, "mark_ready", actor="system")
    db.session.commit()
    assert post(client, admin, request_id, "reduce-access").get_json()["status"] == "access_reduced"

    missing = post(client, csm, request_id, "close")
    assert missing.status_code == 422 and "final_invoice_ref" in missing.get_json()["errors"]["json"]
    closed_at = clock.advance(timedelta(days=6))
    closed = post(client, csm, request_id, "close", {"final_invoice_ref": "INV-2026-0042"}).get_json()
    assert (closed["status"], closed["final_invoice_ref"]) == ("closed", "INV-2026-0042")
    db.session.expire_all()
    assert db.session.get(Tenant, created["tenant_id"]).closed_at == closed_at
    assert messages(request_id)[-1] == ("closure", CONTACT)
    closure = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "closure")).one()
    assert "INV-2026-0042" in closure.body
    assert events(request_id, "request.closed")[0].data["final_invoice_ref"] == "INV-2026-0042"

    feedback = post(client, csm, request_id, "collect-feedback").get_json()
    assert feedback["status"] == "feedback_collected" and feedback["allowed_actions"] == []
    assert [kind for kind, _ in messages(request_id)] == ["acknowledgement", "plan", "closure"]
    refused = post(client, csm, request_id, "collect-feedback")
    assert refused.status_code == 409 and "'feedback_collected'" in refused.get_json()["message"]
    # A request whose feedback is in is final: the tenant may open a new one.
    again = client.post(URL, headers=csm, json={"tenant_id": created["tenant_id"], "requested_by": "x",
                                                "channel": "email", "churn_reason": "price"})
    assert again.status_code == 201


def test_a_request_without_an_address_queues_no_message(client: FlaskClient, as_role: Headers) -> None:
    csm = as_role("csm")
    tenant = client.post("/api/v1/tenants", headers=csm, json={
        "external_ref": "steps-silent", "name": "Silent", "region": "DE"}).get_json()
    created = client.post(URL, headers=csm, json={"tenant_id": tenant["id"], "requested_by": "Someone",
                                                  "channel": "phone", "churn_reason": "price"}).get_json()
    assert post(client, csm, created["id"], "acknowledge").status_code == 200
    assert messages(created["id"]) == []


@pytest.mark.parametrize(("facts", "eligible", "reason"), [
    ({"tier": "premium"}, True, "a premium account leaving for a reason an offer can address (price)"),
    ({"tier": "strategic", "reason": "missing_features"}, True,
     "a strategic account leaving for a reason an offer can address (missing features)"),
    ({"tier": "standard"}, False, "a standard account of under two years: not worth a save attempt"),
    ({"tier": "enterprise", "no_sales_contact": True}, False, "the customer asked for no sales conversation"),
    ({"tier": "enterprise", "reason": "bankrupt"}, False, "the churn is structural (bankrupt)"),
    ({"tier": "enterprise", "reason": "acquired"}, False, "the churn is structural (acquired)"),
    ({"tier": "enterprise", "competitor_signed": True}, False, "a contract with a competitor is signed"),
    ({"tier": "enterprise", "reason": "no_longer_needed"}, False,
     "the reason (no longer needed) is not one an offer can address"),
])
def test_eligibility_names_its_reason(client: FlaskClient, as_role: Headers, clock: Any,
                                      facts: dict[str, Any], eligible: bool, reason: str) -> None:
    answer = open_request(client, as_role("csm"), **facts)
    assert answer["save_attempt"] == {"eligible": eligible, "reason": reason, "attempts": 0,
                                      "max": 2 if facts["tier"] == "strategic" else 1}


def test_a_long_tenured_standard_account_is_eligible(session: None, clock: Any) -> None:
    tenant = Tenant(external_ref="steps-old", name="Old Friend", region="DE",
                    created_at=clock.now() - timedelta(days=3 * 365))
    db.session.add(tenant)
    db.session.flush()
    request = workflow.open_request(tenant, actor="test", requested_by="x", channel="email",
                                    churn_reason="budget_cuts", formats=["csv"])
    assert saves.eligibility(request, clock.now()) == (
        True, "a customer of two years or more leaving for a reason an offer can address (budget cuts)")


@pytest.mark.parametrize(("tier", "allowed"), [("premium", 1), ("strategic", 2)])
def test_save_attempts_are_limited_and_the_next_is_refused(client: FlaskClient, as_role: Headers,
                                                           tier: str, allowed: int) -> None:
    csm = as_role("csm")
    request_id = verified(client, csm, tier=tier)["id"]
    for number in range(1, allowed + 1):
        answer = post(client, csm, request_id, "save-attempts",
                      {"offered": True, "offer": f"{10 * number}% off for a year", "outcome": "declined"})
        assert answer.status_code == 201, answer.get_json()
        assert answer.get_json()["save_attempt"]["attempts"] == number
        assert answer.get_json()["status"] == "verified"
    refused = post(client, csm, request_id, "save-attempts", {"offered": False})
    assert refused.status_code == 409
    assert f"used its {allowed} save attempt" in refused.get_json()["message"]
    recorded = db.session.scalars(select(SaveAttempt).where(SaveAttempt.request_id == request_id)).all()
    assert len(recorded) == allowed
    assert [kind for kind, _ in messages(request_id)].count("save_invitation") == allowed
    [first, *_] = events(request_id, "request.save_attempted")
    assert first.data == {"attempt": 1, "of": allowed, "offered": True, "offer": "10% off for a year",
                          "outcome": "declined"}


def test_an_accepted_save_withdraws_the_request(client: FlaskClient, as_role: Headers) -> None:
    csm = as_role("csm")
    request_id = verified(client, csm, tier="enterprise")["id"]
    answer = post(client, csm, request_id, "save-attempts",
                  {"offered": True, "offer": "Two months free and the Pro plan", "outcome": "accepted"})
    assert answer.status_code == 201
    body = answer.get_json()
    assert body["status"] == "withdrawn"
    assert body["withdrawal_reason"] == "saved: Two months free and the Pro plan"
    assert body["save_attempts"][0]["outcome"] == "accepted"
    assert events(request_id, "request.withdrawn")[0].data["from"] == "verified"


def test_save_attempt_input_and_rule_refusals(client: FlaskClient, as_role: Headers) -> None:
    csm = as_role("csm")
    not_yet = open_request(client, csm, tier="premium")
    early = post(client, csm, not_yet["id"], "save-attempts", {"offered": False})
    assert early.status_code == 409 and "'received'" in early.get_json()["message"]
    request_id = verified(client, csm, tier="premium")["id"]
    for body, field in (({"offered": True, "outcome": "declined"}, "offer"),
                        ({"offered": True, "offer": "x"}, "outcome"),
                        ({"offered": True, "offer": "x", "outcome": "maybe"}, "outcome"),
                        ({"offered": False, "offer": "x"}, "offer"),
                        ({}, "offered")):
        answer = post(client, csm, request_id, "save-attempts", body)
        assert answer.status_code == 422, body
        assert field in answer.get_json()["errors"]["json"], body
    standard = verified(client, csm, tier="standard")["id"]
    ruled_out = post(client, csm, standard, "save-attempts",
                     {"offered": True, "offer": "x", "outcome": "declined"})
    assert ruled_out.status_code == 409 and "not worth a save attempt" in ruled_out.get_json()["message"]
    assert post(client, csm, standard, "save-attempts", {"offered": False}).status_code == 201
    assert post(client, as_role("legal"), request_id, "save-attempts", {"offered": False}).status_code == 403


@pytest.mark.parametrize(("tier", "self_approval"), [("standard", True), ("premium", True),
                                                       ("enterprise", False), ("strategic", False)])
def test_approval_by_the_verifier_only_below_the_tier(client: FlaskClient, as_role: Headers, tier: str,
                                                      self_approval: bool) -> None:
    csm = as_role("csm")
    request_id = verified(client, csm, tier=tier)["id"]
    answer = post(client, csm, request_id, "approve")
    if self_approval:
        assert answer.status_code == 200
        return
    assert answer.status_code == 409
    message = answer.get_json()["message"]
    assert f"a {tier} account needs approval by someone other than its verifier" in message
    assert db.session.get(OffboardingRequest, request_id).approved_at is None
    other = post(client, as_role("csm"), request_id, "approve")
    assert other.status_code == 200 and other.get_json()["approved_by"] != other.get_json()["verified_by"]


def test_an_admin_may_approve_what_they_verified_and_the_tier_is_configurable(
        client: FlaskClient, as_role: Headers, approval_tier: Callable[[str], None]) -> None:
    admin = as_role("admin")
    request_id = verified(client, admin, tier="strategic")["id"]
    assert post(client, admin, request_id, "approve").status_code == 200
    approval_tier("premium")
    csm = as_role("csm")
    premium = verified(client, csm, tier="premium")["id"]
    assert post(client, csm, premium, "approve").status_code == 409
