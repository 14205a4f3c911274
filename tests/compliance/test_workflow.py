"""The request state machine, driven through compliance.workflow directly."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, not_, select

from compliance import db, workflow
from compliance.models import AuditEvent, OffboardingRequest, Tenant
from compliance.workflow import IllegalTransition, WorkflowError

ACTOR = "user:test"
_refs = itertools.count()

# Written out by hand, not read from workflow.TRANSITIONS, so a change there fails here.
ALLOWED = {
    ("acknowledge", "received"): "acknowledged",
    ("verify", "acknowledged"): "verified",
    ("approve", "verified"): "approved",
    ("start_export", "approved"): "exporting",
    ("start_export", "failed"): "exporting",
    ("mark_ready", "exporting"): "export_ready",
    ("fail", "exporting"): "failed",
    ("reduce_access", "export_ready"): "access_reduced",
    ("close", "access_reduced"): "closed",
    ("collect_feedback", "closed"): "feedback_collected",
    ("withdraw", "received"): "withdrawn",
    ("withdraw", "acknowledged"): "withdrawn",
    ("withdraw", "verified"): "withdrawn",
    ("withdraw", "approved"): "withdrawn",
    ("withdraw", "failed"): "withdrawn",
}
STAMPS = {
    "acknowledge": "acknowledged_at",
    "verify": "verified_at",
    "approve": "approved_at",
    "start_export": "export_started_at",
    "mark_ready": "export_ready_at",
    "fail": "failed_at",
    "reduce_access": "access_reduced_at",
    "close": "closed_at",
    "collect_feedback": "feedback_collected_at",
    "withdraw": "withdrawn_at",
}
ACTIONS = tuple(STAMPS)
STATES = ("received", "acknowledged", "verified", "approved", "exporting", "export_ready", "access_reduced",
          "closed", "feedback_collected", "withdrawn", "failed")
TO_READY = ["acknowledge", "verify", "approve", "start_export", "mark_ready"]
PATHS = {
    "received": [],
    "acknowledged": ["acknowledge"],
    "verified": ["acknowledge", "verify"],
    "approved": ["acknowledge", "verify", "approve"],
    "exporting": ["acknowledge", "verify", "approve", "start_export"],
    "export_ready": TO_READY,
    "access_reduced": [*TO_READY, "reduce_access"],
    "closed": [*TO_READY, "reduce_access", "close"],
    "feedback_collected": [*TO_READY, "reduce_access", "close", "collect_feedback"],
    "failed": ["acknowledge", "verify", "approve", "start_export", "fail"],
    "withdrawn": ["withdraw"],
}
NEEDS_REASON = ("fail", "withdraw", "verify")
INVOICE = "INV-2026-0042"
ILLEGAL = sorted((action, state) for action in ACTIONS for state in STATES
                 if (action, state) not in ALLOWED)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def make_tenant(region: str = "DE") -> Tenant:
    tenant = Tenant(external_ref=f"wf-{next(_refs)}", name="Acme GmbH", region=region)
    db.session.add(tenant)
    db.session.flush()
    return tenant


def open_for(tenant: Tenant, **kwargs: object) -> OffboardingRequest:
    return workflow.open_request(tenant, actor=ACTOR, requested_by="cfo@acme.example",
                                 channel="email", churn_reason="price", formats=["csv", "json"],
                                 **kwargs)


def reason_for(action: str) -> str | None:
    return f"reason for {action}" if action in NEEDS_REASON else None


def step(request_id: int, action: str, actor: str = ACTOR) -> OffboardingRequest:
    return workflow.apply(request_id, action, actor=actor, reason=reason_for(action),
                          invoice_ref=INVOICE if action == "close" else None)


def drive(request: OffboardingRequest, state: str) -> OffboardingRequest:
    for action in PATHS[state]:
        request = step(request.id, action)
    assert request.status == state
    return request


def reloaded(request_id: int) -> OffboardingRequest:
    db.session.flush()
    db.session.expire_all()
    request = db.session.get(OffboardingRequest, request_id)
    assert request is not None
    return request


def events(request_id: int, action: str | None = None) -> list[AuditEvent]:
    """The request's own events (``request.*``), not the messages it queued."""
    query = select(AuditEvent).where(AuditEvent.request_id == request_id,
                                     AuditEvent.action.startswith("request."))
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return list(db.session.scalars(query.order_by(AuditEvent.id)))


# --- transitions -----------------------------------------------------------------------------


def test_open_request_is_received_and_audited(session: None, clock: Any) -> None:
    tenant = make_tenant("DE")
    request = reloaded(open_for(tenant, owner="csm@offboard.example").id)
    assert request.status == "received"
    assert request.received_at == at(2026, 3, 2, 9)
    assert request.formats == ["csv", "json"]
    assert request.owner == "csm@offboard.example"
    [event] = events(request.id)
    assert event.action == "request.received"
    assert event.actor == ACTOR
    assert event.tenant_id == tenant.id
    assert event.data == {"channel": "email", "churn_reason": "price", "formats": ["csv", "json"],
                          "legal_regime": "gdpr"}


def test_formats_are_deduplicated_and_sorted(session: None, clock: Any) -> None:
    request = workflow.open_request(make_tenant(), actor=ACTOR, requested_by="x", channel="api",
                                    churn_reason="other", formats=["pdf", "csv", "pdf"])
    assert reloaded(request.id).formats == ["csv", "pdf"]


@pytest.mark.parametrize(("action", "source"), sorted(ALLOWED))
def test_allowed_transition_stamps_time_and_audits(session: None, clock: Any, action: str,
                                                   source: str) -> None:
    request = drive(open_for(make_tenant()), source)
    before = {stamp: getattr(request, stamp) for stamp in STAMPS.values()}
    audited_before = len(events(request.id))
    clock.advance(timedelta(minutes=7))
    now = clock.now()

    returned = step(request.id, action, actor="apikey:42")

    target = ALLOWED[(action, source)]
    assert returned.status == target
    request = reloaded(request.id)
    assert request.status == target
    assert getattr(request, STAMPS[action]) == now
    for stamp, value in before.items():  # no other step's time was touched
        if stamp != STAMPS[action]:
            assert getattr(request, stamp) == value, stamp
    new_events = events(request.id)[audited_before:]
    assert len(new_events) == 1
    [event] = new_events
    assert event.action == f"request.{target}"
    assert event.actor == "apikey:42"
    assert event.tenant_id == request.tenant_id
    assert event.occurred_at == now
    extra = {"final_invoice_ref": INVOICE} if action == "close" else {}
    assert event.data == {"from": source, "to": target, "reason": reason_for(action), **extra}


@pytest.mark.parametrize(("action", "state"), ILLEGAL)
def test_illegal_transition_names_the_current_state(session: None, clock: Any, action: str,
                                                    state: str) -> None:
    request = drive(open_for(make_tenant()), state)
    audited_before = len(events(request.id))

    with pytest.raises(IllegalTransition) as raised:
        workflow.apply(request.id, action, actor=ACTOR, reason="because", invoice_ref=INVOICE)

    assert raised.value.current == state
    assert f"state '{state}'" in str(raised.value)
    assert isinstance(raised.value, WorkflowError)
    request = reloaded(request.id)
    assert request.status == state
    assert len(events(request.id)) == audited_before


@pytest.mark.parametrize(("action", "state"), [("withdraw", "received"), ("fail", "exporting"),
                                               ("verify", "acknowledged")])
@pytest.mark.parametrize("reason", [None, ""])
def test_withdraw_fail_and_verify_need_a_reason(session: None, clock: Any, action: str, state: str,
                                         reason: str | None) -> None:
    request = drive(open_for(make_tenant()), state)
    audited_before = len(events(request.id))
    with pytest.raises(ValueError, match="needs a reason"):
        workflow.apply(request.id, action, actor=ACTOR, reason=reason)
    request = reloaded(request.id)
    assert request.status == state
    assert len(events(request.id)) == audited_before


def test_reasons_are_kept_on_the_request(session: None, clock: Any) -> None:
    failed = drive(open_for(make_tenant()), "failed")
    assert reloaded(failed.id).failure_reason == "reason for fail"
    withdrawn = workflow.apply(failed.id, "withdraw", actor=ACTOR, reason="customer changed mind")
    withdrawn = reloaded(withdrawn.id)
    assert withdrawn.withdrawal_reason == "customer changed mind"
    assert withdrawn.failure_reason == "reason for fail"


def test_unknown_request_id(session: None, clock: Any) -> None:
    with pytest.raises(workflow.UnknownRequest):
        workflow.apply(2**62, "acknowledge", actor=ACTOR)
    with pytest.raises(workflow.UnknownRequest):
        workflow.extend_deadline(2**62, actor=ACTOR, reason="x")


def test_close_sets_the_tenant_closed_at(session: None, clock: Any) -> None:
    tenant = make_tenant()
    request = drive(open_for(tenant), "access_reduced")
    assert db.session.get(Tenant, tenant.id).closed_at is None
    closed_at = clock.advance(timedelta(days=2))
    workflow.apply(request.id, "close", actor=ACTOR, invoice_ref=INVOICE)
    request = reloaded(request.id)
    assert db.session.get(Tenant, tenant.id).closed_at == closed_at
    assert request.final_invoice_ref == INVOICE


def test_close_needs_the_final_invoice_reference(session: None, clock: Any) -> None:
    request = drive(open_for(make_tenant()), "access_reduced")
    with pytest.raises(ValueError, match="final invoice reference"):
        workflow.apply(request.id, "close", actor=ACTOR)
    assert reloaded(request.id).status == "access_reduced"


def test_withdraw_does_not_close_the_tenant(session: None, clock: Any) -> None:
    tenant = make_tenant()
    workflow.apply(open_for(tenant).id, "withdraw", actor=ACTOR, reason="stays")
    db.session.flush()
    db.session.expire_all()
    assert db.session.get(Tenant, tenant.id).closed_at is None


# --- one open request per tenant ---------------------------------------------------------------


def _count_requests(tenant_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(OffboardingRequest)
                             .where(OffboardingRequest.tenant_id == tenant_id))


@pytest.mark.parametrize("state", ["received", "acknowledged", "verified", "approved", "exporting",
                                   "export_ready", "access_reduced", "failed"])
def test_one_open_request_per_tenant(session: None, clock: Any, state: str) -> None:
    tenant = make_tenant()
    first = drive(open_for(tenant), state)
    with pytest.raises(WorkflowError, match=f"already has an open request \\({first.id}\\)"):
        open_for(tenant)
    assert _count_requests(tenant.id) == 1


@pytest.mark.parametrize("state", ["withdrawn", "closed", "feedback_collected"])
def test_new_request_allowed_after_a_final_state(session: None, clock: Any, state: str) -> None:
    tenant = make_tenant()
    first = drive(open_for(tenant), state)
    second = open_for(tenant)
    assert second.id != first.id
    assert second.status == "received"
    assert _count_requests(tenant.id) == 2


def test_open_requests_of_other_tenants_do_not_block(session: None, clock: Any) -> None:
    open_for(make_tenant())
    assert open_for(make_tenant()).status == "received"


# --- deadlines ----------------------------------------------------------------------------------


def test_acknowledgement_and_export_windows(session: None, clock: Any) -> None:
    request = reloaded(open_for(make_tenant("US-NY")).id)
    assert request.received_at == at(2026, 3, 2, 9)
    assert request.acknowledgement_due == at(2026, 3, 3, 9)
    assert request.export_due == at(2026, 3, 5, 9)


@pytest.mark.parametrize(("region", "regime", "deadline"), [
    ("DE", "gdpr", at(2026, 4, 2, 9)),
    ("FR", "gdpr", at(2026, 4, 2, 9)),
    ("EU", "gdpr", at(2026, 4, 2, 9)),
    ("UK", "gdpr", at(2026, 4, 2, 9)),
    ("NO", "gdpr", at(2026, 4, 2, 9)),
    ("US-CA", "ccpa", at(2026, 4, 16, 9)),
    ("US-NY", "none", None),
    ("JP", "none", None),
])
def test_legal_regime_and_deadline_from_region(session: None, clock: Any, region: str,
                                               regime: str, deadline: datetime | None) -> None:
    request = reloaded(open_for(make_tenant(region)).id)
    assert request.legal_regime == regime
    assert request.legal_deadline == deadline


@pytest.mark.parametrize(("received", "deadline"), [
    (at(2026, 1, 31, 12), at(2026, 2, 28, 12)),  # clamped to the last day of February
    (at(2028, 1, 31, 12), at(2028, 2, 29, 12)),  # leap year
    (at(2026, 3, 31, 8), at(2026, 4, 30, 8)),
    (at(2026, 12, 31, 23, 59), at(2027, 1, 31, 23, 59)),  # across the year
    (at(2026, 2, 15, 9), at(2026, 3, 15, 9)),
])
def test_gdpr_deadline_is_one_calendar_month(session: None, clock: Any, received: datetime,
                                             deadline: datetime) -> None:
    clock.freeze(received)
    request = reloaded(open_for(make_tenant("DE")).id)
    assert request.legal_deadline == deadline
    assert request.acknowledgement_due == received + timedelta(hours=24)
    assert request.export_due == received + timedelta(hours=72)


def test_explicit_regime_overrides_the_region(session: None, clock: Any) -> None:
    request = reloaded(open_for(make_tenant("US-NY"), legal_regime="gdpr").id)
    assert request.legal_regime == "gdpr"
    assert request.legal_deadline == at(2026, 4, 2, 9)


def test_extend_gdpr_deadline_by_two_months_once(session: None, clock: Any) -> None:
    request = open_for(make_tenant("DE"))
    now = clock.advance(timedelta(days=10))

    workflow.extend_deadline(request.id, actor="apikey:7", reason="complex request")

    request = reloaded(request.id)
    assert request.legal_deadline == at(2026, 6, 2, 9)
    assert request.extended_at == now
    assert request.extension_reason == "complex request"
    [event] = events(request.id, "request.deadline_extended")
    assert event.actor == "apikey:7"
    assert event.data == {"from": at(2026, 4, 2, 9).isoformat(), "to": at(2026, 6, 2, 9).isoformat(),
                          "reason": "complex request"}

    with pytest.raises(WorkflowError, match="already extended"):
        workflow.extend_deadline(request.id, actor=ACTOR, reason="again")
    request = reloaded(request.id)
    assert request.legal_deadline == at(2026, 6, 2, 9)
    assert request.extension_reason == "complex request"
    assert len(events(request.id, "request.deadline_extended")) == 1


def test_extend_ccpa_deadline_by_45_days(session: None, clock: Any) -> None:
    request = open_for(make_tenant("US-CA"))
    workflow.extend_deadline(request.id, actor=ACTOR, reason="many systems")
    request = reloaded(request.id)
    assert request.legal_deadline == at(2026, 4, 16, 9) + timedelta(days=45)
    assert request.legal_deadline == at(2026, 5, 31, 9)
    with pytest.raises(WorkflowError):
        workflow.extend_deadline(request.id, actor=ACTOR, reason="again")


@pytest.mark.parametrize("late_by", [timedelta(0), timedelta(seconds=1), timedelta(days=3)])
def test_extension_refused_once_the_deadline_passed(session: None, clock: Any,
                                                    late_by: timedelta) -> None:
    request = open_for(make_tenant("DE"))
    clock.freeze(at(2026, 4, 2, 9) + late_by)
    with pytest.raises(WorkflowError, match="has passed"):
        workflow.extend_deadline(request.id, actor=ACTOR, reason="too late")
    request = reloaded(request.id)
    assert request.legal_deadline == at(2026, 4, 2, 9)
    assert request.extended_at is None
    assert events(request.id, "request.deadline_extended") == []


def test_extension_just_before_the_deadline_is_allowed(session: None, clock: Any) -> None:
    request = open_for(make_tenant("DE"))
    clock.freeze(at(2026, 4, 2, 9) - timedelta(seconds=1))
    workflow.extend_deadline(request.id, actor=ACTOR, reason="just in time")
    assert reloaded(request.id).legal_deadline == at(2026, 6, 2, 9)


def test_extension_refused_without_a_legal_deadline(session: None, clock: Any) -> None:
    request = open_for(make_tenant("US-NY"))
    with pytest.raises(WorkflowError, match="no legal deadline"):
        workflow.extend_deadline(request.id, actor=ACTOR, reason="x")
    request = reloaded(request.id)
    assert request.legal_deadline is None
    assert request.extended_at is None
    assert events(request.id, "request.deadline_extended") == []


def test_extension_refused_for_a_final_request(session: None, clock: Any) -> None:
    request = drive(open_for(make_tenant("DE")), "withdrawn")
    with pytest.raises(WorkflowError, match="withdrawn"):
        workflow.extend_deadline(request.id, actor=ACTOR, reason="x")
    assert reloaded(request.id).legal_deadline == at(2026, 4, 2, 9)


# --- overdue ------------------------------------------------------------------------------------


def _mixed_requests() -> dict[str, int]:
    """Requests in different situations, all received at the frozen time."""
    made = {
        "de_received": open_for(make_tenant("DE")),
        "de_acknowledged": drive(open_for(make_tenant("DE")), "acknowledged"),
        "de_ready": drive(open_for(make_tenant("DE")), "export_ready"),
        "ny_received": open_for(make_tenant("US-NY")),
        "ny_acknowledged": drive(open_for(make_tenant("US-NY")), "acknowledged"),
        "ny_ready": drive(open_for(make_tenant("US-NY")), "export_ready"),
        "ca_exporting": drive(open_for(make_tenant("US-CA")), "exporting"),
        "de_withdrawn": drive(open_for(make_tenant("DE")), "withdrawn"),
        "de_closed": drive(open_for(make_tenant("DE")), "closed"),
    }
    db.session.flush()
    return {name: request.id for name, request in made.items()}


EXPECTED_OVERDUE = {
    timedelta(0): set(),
    timedelta(hours=24): set(),  # due exactly now is not yet missed
    timedelta(hours=25): {"de_received", "ny_received"},
    timedelta(hours=73): {"de_received", "ny_received", "de_acknowledged", "ny_acknowledged",
                          "ca_exporting"},
}


def _sql_split(ids: dict[str, int], now: datetime) -> tuple[set[str], set[str]]:
    names = {request_id: name for name, request_id in ids.items()}
    base = select(OffboardingRequest.id).where(OffboardingRequest.id.in_(ids.values()))
    late = {names[i] for i in db.session.scalars(base.where(workflow.overdue(now)))}
    on_time = {names[i] for i in db.session.scalars(base.where(not_(workflow.overdue(now))))}
    return late, on_time


def _python_split(ids: dict[str, int], now: datetime) -> tuple[set[str], set[str]]:
    db.session.expire_all()
    late = {name for name, request_id in ids.items()
            if workflow.is_overdue(db.session.get(OffboardingRequest, request_id), now)}
    return late, set(ids) - late


@pytest.mark.parametrize("after", sorted(EXPECTED_OVERDUE))
def test_overdue_sql_filter_and_is_overdue_agree(session: None, clock: Any,
                                                 after: timedelta) -> None:
    ids = _mixed_requests()
    now = clock.advance(after) if after else clock.now()
    sql_late, _ = _sql_split(ids, now)
    python_late, _ = _python_split(ids, now)
    assert sql_late == python_late == EXPECTED_OVERDUE[after]


@pytest.mark.parametrize("after", sorted(EXPECTED_OVERDUE))
def test_not_overdue_sql_filter_and_is_overdue_agree(session: None, clock: Any,
                                                     after: timedelta) -> None:
    ids = _mixed_requests()
    now = clock.advance(after) if after else clock.now()
    _, sql_on_time = _sql_split(ids, now)
    _, python_on_time = _python_split(ids, now)
    assert sql_on_time == python_on_time == set(ids) - EXPECTED_OVERDUE[after]


def test_legal_deadline_makes_an_open_request_overdue(session: None, clock: Any) -> None:
    request = drive(open_for(make_tenant("DE")), "failed")  # acknowledged, export never ready
    db.session.flush()
    clock.freeze(at(2026, 4, 2, 9, 0, 1))
    now = clock.now()
    assert workflow.is_overdue(reloaded(request.id), now)
    assert db.session.scalar(select(OffboardingRequest.id).where(
        OffboardingRequest.id == request.id, workflow.overdue(now))) == request.id


def test_export_ready_in_time_does_not_miss_the_legal_deadline(session: None,
                                                               clock: Any) -> None:
    request = drive(open_for(make_tenant("DE")), "export_ready")
    db.session.flush()
    clock.freeze(at(2026, 4, 10, 9))
    assert workflow.flag_missed_deadlines() == 1  # only the 14-day processing limit: it is not closed
    assert [e.data["deadline"] for e in events(request.id, "request.deadline_missed")] == ["processing"]


def _missed_events(request_id: int) -> list[tuple[str, str]]:
    return sorted((event.data["deadline"], event.data["status"])
                  for event in events(request_id, "request.deadline_missed"))


def test_flag_missed_deadlines_audits_each_missed_deadline_once(session: None,
                                                                clock: Any) -> None:
    tenant = make_tenant("DE")
    late = open_for(tenant)
    on_time = drive(open_for(make_tenant("DE")), "acknowledged")
    gone = drive(open_for(make_tenant("DE")), "withdrawn")
    db.session.flush()

    assert workflow.flag_missed_deadlines() == 0

    clock.advance(timedelta(hours=25))
    assert workflow.flag_missed_deadlines() == 1
    assert _missed_events(late.id) == [("acknowledgement", "received")]
    [event] = events(late.id, "request.deadline_missed")
    assert event.actor == "system"
    assert event.tenant_id == tenant.id
    assert _missed_events(on_time.id) == []

    assert workflow.flag_missed_deadlines() == 0  # a second run adds nothing
    assert len(events(late.id, "request.deadline_missed")) == 1

    clock.advance(timedelta(hours=48))
    assert workflow.flag_missed_deadlines() == 2  # late: export; on_time: export
    assert _missed_events(late.id) == [("acknowledgement", "received"), ("export", "received")]
    assert _missed_events(on_time.id) == [("export", "acknowledged")]

    clock.freeze(at(2026, 4, 3, 9))
    assert workflow.flag_missed_deadlines() == 4  # both miss the GDPR month and the 14 days to closure
    assert workflow.flag_missed_deadlines() == 0
    assert _missed_events(late.id) == [("acknowledgement", "received"), ("export", "received"),
                                       ("legal", "received"), ("processing", "received")]
    assert sorted(e.data["deadline"] for e in events(on_time.id, "request.deadline_missed")) == [
        "export", "legal", "processing"]
    assert events(gone.id, "request.deadline_missed") == []
