"""The offboarding request's state machine: allowed transitions, deadlines and the messages at each step.

Every change goes through here so that each one is checked against the current
state (under a row lock), stamped with its time, written to the audit trail and,
where the customer should hear of it, queued in the outbox in the same transaction.

The approval rule: ``approve`` is always a step. For an account below the
``OFFBOARD_APPROVAL_TIER`` (default enterprise) anyone who may approve (csm or admin)
does it, the verifier included, so verification is in effect enough. At or above the
tier it takes a second pair of eyes: a person other than the one who verified, or an admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.exc import IntegrityError

import audit
from compliance import clock, config, db, notify
from compliance.models import VALUE_TIERS, AuditEvent, OffboardingRequest, Tenant
from compliance.models import requests as requests_model

ACKNOWLEDGEMENT_WINDOW = timedelta(hours=24)
EXPORT_WINDOW = timedelta(hours=72)
CCPA_WINDOW = timedelta(days=45)
WARNING_WINDOW = timedelta(hours=12)  # a deadline this close is flagged to the owner, once
PROCESSING_WINDOW = requests_model.PROCESSING_WINDOW  # received to closed: the request's processing_due

STATES = (
    "received",
    "acknowledged",
    "verified",
    "approved",
    "exporting",
    "export_ready",
    "access_reduced",
    "closed",
    "feedback_collected",
    "withdrawn",
    "failed",
)
TERMINAL_STATES = frozenset(requests_model.TERMINAL_STATES)

# GDPR covers the EU and EEA member states and the UK (UK GDPR).
GDPR_REGIONS = frozenset({
    "EU", "EEA", "UK", "GB", "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU",
    "IE", "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
})


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    target: str
    stamp: str  # the request's timestamp column set when the transition happens
    needs_reason: bool = False


TRANSITIONS: dict[str, Transition] = {
    "acknowledge": Transition(frozenset({"received"}), "acknowledged", "acknowledged_at"),
    # The verification note is its reason: the cancellation is intended and why is understood.
    "verify": Transition(frozenset({"acknowledged"}), "verified", "verified_at", needs_reason=True),
    "approve": Transition(frozenset({"verified"}), "approved", "approved_at"),
    "start_export": Transition(frozenset({"approved", "failed"}), "exporting", "export_started_at"),
    "mark_ready": Transition(frozenset({"exporting"}), "export_ready", "export_ready_at"),
    "fail": Transition(frozenset({"exporting"}), "failed", "failed_at", needs_reason=True),
    "reduce_access": Transition(frozenset({"export_ready"}), "access_reduced", "access_reduced_at"),
    "close": Transition(frozenset({"access_reduced"}), "closed", "closed_at"),
    "collect_feedback": Transition(frozenset({"closed"}), "feedback_collected", "feedback_collected_at"),
    "withdraw": Transition(
        frozenset({"received", "acknowledged", "verified", "approved", "failed"}),
        "withdrawn",
        "withdrawn_at",
        needs_reason=True,
    ),
}


# The offboarding plan: (phase, first day, last day); day 1 is the day the request arrived.
PLAN = (
    ("export", 1, 3),
    ("knowledge_transfer", 4, 7),
    ("access_reduction", 8, 14),
    ("final_billing_and_closure", 15, 15),
    ("deactivated", 16, None),
)


class WorkflowError(Exception):
    """A request cannot do what was asked in its current state (HTTP 409)."""


class OpenRequestExists(WorkflowError):
    """The tenant already has a request that is neither closed nor withdrawn."""

    def __init__(self, message: str, request_id: int | None) -> None:
        super().__init__(message)
        self.request_id = request_id


class TenantExists(WorkflowError):
    """Another tenant already carries this external ref."""


class UnknownRequest(LookupError):
    """No request has this id (HTTP 404)."""


class IllegalTransition(WorkflowError):
    def __init__(self, action: str, current: str) -> None:
        allowed = sorted(name for name, t in TRANSITIONS.items() if current in t.sources)
        super().__init__(
            f"cannot {action.replace('_', ' ')} a request in state '{current}'"
            f" (allowed from '{current}': {', '.join(allowed) or 'nothing, it is final'})"
        )
        self.current = current


def legal_regime_for(region: str) -> str:
    """The privacy law whose deadline applies to an account in ``region``."""
    code = region.upper()
    if code in GDPR_REGIONS:
        return "gdpr"
    if code == "US-CA":
        return "ccpa"
    return "none"


def legal_deadline(regime: str, received_at: datetime) -> datetime | None:
    if regime == "gdpr":
        return clock.add_months(received_at, 1)
    if regime == "ccpa":
        return received_at + CCPA_WINDOW
    return None


def extended_deadline(regime: str, deadline: datetime) -> datetime:
    """GDPR Art. 12(3): two further months; CCPA §1798.130: 45 further days."""
    return clock.add_months(deadline, 2) if regime == "gdpr" else deadline + CCPA_WINDOW


@dataclass(frozen=True)
class Phase:
    name: str
    first_day: int
    last_day: int | None  # None: from first_day on, for good
    starts: date
    ends: date | None
    current: bool


def plan(received_at: datetime, today: date) -> list[Phase]:
    """The offboarding plan's phases with their dates, counted from the day the request arrived."""
    day_one = received_at.date()
    phases = []
    for name, first, last in PLAN:
        starts = day_one + timedelta(days=first - 1)
        ends = day_one + timedelta(days=last - 1) if last is not None else None
        phases.append(Phase(name, first, last, starts, ends,
                            current=starts <= today and (ends is None or today <= ends)))
    return phases


def allowed_actions(status: str) -> list[str]:
    """What a person may do to a request in ``status`` (``mark_ready`` belongs to the export jobs)."""
    return sorted(name for name, t in TRANSITIONS.items() if status in t.sources and name != "mark_ready")


def register_tenant(*, actor: str, **facts: Any) -> Tenant:
    """A new customer account (the API's and the pages' one way to add one)."""
    tenant = Tenant(**facts)
    try:
        with db.session.begin_nested():  # only this insert is undone if the ref is taken
            db.session.add(tenant)
    except IntegrityError:
        ref = facts.get("external_ref")
        raise TenantExists(f"a tenant with external_ref {ref!r} already exists") from None
    audit.record("tenant.created", actor=actor, tenant_id=tenant.id,
                 data={"external_ref": tenant.external_ref, "region": tenant.region})
    return tenant


def open_request(
    tenant: Tenant,
    *,
    actor: str,
    requested_by: str,
    channel: str,
    churn_reason: str,
    formats: list[str],
    churn_detail: str | None = None,
    owner: str | None = None,
    legal_regime: str | None = None,
    no_sales_contact: bool = False,
    competitor_signed: bool = False,
) -> OffboardingRequest:
    """Receive a request; one open request per tenant at a time."""
    open_one = db.session.scalar(
        select(OffboardingRequest.id).where(
            OffboardingRequest.tenant_id == tenant.id,
            OffboardingRequest.status.not_in(TERMINAL_STATES),
        )
    )
    if open_one is not None:
        raise OpenRequestExists(f"tenant {tenant.id} already has an open request ({open_one})", open_one)
    received_at = clock.now()
    regime = legal_regime_for(tenant.region)
    if legal_regime and legal_regime != regime:
        if regime != "none":
            raise WorkflowError(f"region {tenant.region} falls under {regime}; "
                                "the legal regime can be added, never lowered or swapped")
        regime = legal_regime
    request = OffboardingRequest(
        tenant_id=tenant.id,
        requested_by=requested_by,
        owner=owner,
        channel=channel,
        churn_reason=churn_reason,
        churn_detail=churn_detail,
        formats=sorted(set(formats)),
        no_sales_contact=no_sales_contact,
        competitor_signed=competitor_signed,
        status="received",
        legal_regime=regime,
        legal_deadline=legal_deadline(regime, received_at),
        acknowledgement_due=received_at + ACKNOWLEDGEMENT_WINDOW,
        export_due=received_at + EXPORT_WINDOW,
        received_at=received_at,
    )
    try:
        with db.session.begin_nested():  # only this insert is undone if it collides
            db.session.add(request)
    except IntegrityError:
        raise OpenRequestExists(f"tenant {tenant.id} already has an open request", None) from None
    audit.record(
        "request.received",
        actor=actor,
        tenant_id=tenant.id,
        request_id=request.id,
        data={"channel": channel, "churn_reason": churn_reason, "formats": request.formats,
              "legal_regime": regime},
    )
    return request


def apply(request_id: int, action: str, *, actor: str, reason: str | None = None, role: str | None = None,
          invoice_ref: str | None = None) -> OffboardingRequest:
    """Move a request along ``action``; raise IllegalTransition naming the current state.

    ``reason`` is the text the step records (a failure or withdrawal reason, the verification
    note), ``role`` the actor's role for the approval rule, ``invoice_ref`` the final invoice
    a closure names.
    """
    if action == "close" and not invoice_ref:
        raise ValueError("close needs the final invoice reference")
    request = locked(request_id)
    if action == "approve" and request.status == "verified":
        refusal = approval_refusal(request, actor=actor, role=role)
        if refusal is not None:
            raise WorkflowError(refusal)
    data: dict[str, Any] = {}
    if action == "close":
        request.final_invoice_ref = data["final_invoice_ref"] = invoice_ref
    return move(request, action, actor=actor, reason=reason, data=data)


def verify(request_id: int, *, actor: str, note: str, no_sales_contact: bool | None = None,
           competitor_signed: bool | None = None) -> OffboardingRequest:
    """Record that the cancellation is intended and why, with what the save-attempt rule needs."""
    request = locked(request_id)
    if request.status in TRANSITIONS["verify"].sources:
        if no_sales_contact is not None:
            request.no_sales_contact = no_sales_contact
        if competitor_signed is not None:
            request.competitor_signed = competitor_signed
    return move(request, "verify", actor=actor, reason=note,
                data={"no_sales_contact": request.no_sales_contact,
                      "competitor_signed": request.competitor_signed})


def move(request: OffboardingRequest, action: str, *, actor: str, reason: str | None = None,
         data: dict[str, Any] | None = None) -> OffboardingRequest:
    """The transition itself, on a request already locked: stamp, audit, tell the customer."""
    transition = TRANSITIONS[action]
    if transition.needs_reason and not reason:
        raise ValueError(f"{action} needs a reason")
    if request.status not in transition.sources:
        raise IllegalTransition(action, request.status)
    previous, now = request.status, clock.now()
    request.status = transition.target
    setattr(request, transition.stamp, now)
    if action == "fail":
        request.failure_reason = reason
    elif action == "withdraw":
        request.withdrawal_reason = reason
    elif action == "verify":
        request.verified_by, request.verification_note = actor, reason
    elif action == "approve":
        request.approved_by = actor
    elif action == "close" and request.tenant.closed_at is None:
        request.tenant.closed_at = now  # starts the retention clock
    audit.record(
        f"request.{transition.target}",
        actor=actor,
        tenant_id=request.tenant_id,
        request_id=request.id,
        data={"from": previous, "to": transition.target, "reason": reason, **(data or {})},
    )
    _tell_customer(request, action, actor)
    return request


def needs_second_approver(tenant: Tenant) -> bool:
    """At or above the configured value tier, approval takes someone other than the verifier."""
    threshold = config.current().approval_tier
    return VALUE_TIERS.index(tenant.value_tier) >= VALUE_TIERS.index(threshold)


def approval_refusal(request: OffboardingRequest, *, actor: str, role: str | None) -> str | None:
    """Why ``actor`` may not approve this verified request, or None when they may."""
    if needs_second_approver(request.tenant) and actor == request.verified_by and role != "admin":
        return (f"a {request.tenant.value_tier} account needs approval by someone other than its "
                "verifier (or an admin)")
    return None


def customer_address(request: OffboardingRequest) -> str | None:
    """Where customer messages go: the account's contact, else the requester when an address."""
    if request.tenant.contact_email:
        return request.tenant.contact_email
    return request.requested_by if "@" in request.requested_by else None


def _tell_customer(request: OffboardingRequest, action: str, actor: str) -> None:
    """The message each step owes the customer: acknowledgement, the plan once verified, closure."""
    recipient = customer_address(request)
    if recipient is None:
        return
    context: dict[str, Any]
    if action == "acknowledge":
        kind, context = "acknowledgement", {}
    elif action == "verify":
        kind, context = "plan", {"phases": plan(request.received_at, clock.now().date())}
    elif action == "close":
        kind, context = "closure", {"invoice_ref": request.final_invoice_ref}
    else:
        return
    notify.send(kind, context, recipient=recipient, actor=actor, tenant_id=request.tenant_id,
                request_id=request.id)


def extend_deadline(request_id: int, *, actor: str, reason: str) -> OffboardingRequest:
    """Use the one extension the law allows, before the first deadline passes."""
    request = locked(request_id)
    now = clock.now()
    refusal = extension_refusal(request, now)
    if refusal is not None:
        raise WorkflowError(refusal)
    previous = request.legal_deadline
    assert previous is not None
    request.legal_deadline = extended_deadline(request.legal_regime, previous)
    request.extended_at, request.extension_reason = now, reason
    audit.record(
        "request.deadline_extended",
        actor=actor,
        tenant_id=request.tenant_id,
        request_id=request.id,
        data={"from": previous.isoformat(), "to": request.legal_deadline.isoformat(),
              "reason": reason},
    )
    recipient = customer_address(request)
    if recipient is not None:
        notify.send("deadline_extended", {"previous_deadline": previous, "reason": reason},
                    recipient=recipient, actor=actor, tenant_id=request.tenant_id, request_id=request.id)
    return request


def extension_refusal(request: OffboardingRequest, now: datetime) -> str | None:
    """Why the legal deadline cannot be extended now, or None when it can."""
    if request.legal_deadline is None:
        return "this request has no legal deadline to extend (regime 'none')"
    if request.extended_at is not None:
        return "the legal deadline was already extended once"
    if request.status in TERMINAL_STATES:
        return f"the request is {request.status}; nothing to extend"
    if now >= request.legal_deadline:
        return "the legal deadline has passed; an extension must come before it"
    return None


def overdue(now: datetime) -> ColumnElement[bool]:
    """SQL condition: an open request with a deadline it has already missed."""
    r = OffboardingRequest
    # The export answers the legal request, so delivering it meets the legal deadline too.
    # The processing limit has no column of its own: received_at against now - PROCESSING_WINDOW is
    # the same SQL on both backends.
    return and_(
        r.status.not_in(TERMINAL_STATES),
        or_(
            and_(r.acknowledged_at.is_(None), r.acknowledgement_due < now),
            and_(r.export_ready_at.is_(None), r.export_due < now),
            and_(r.export_ready_at.is_(None), r.legal_deadline.is_not(None), r.legal_deadline < now),
            and_(r.closed_at.is_(None), r.received_at < now - PROCESSING_WINDOW),
        ),
    )


def is_overdue(request: OffboardingRequest, now: datetime) -> bool:
    return request.status not in TERMINAL_STATES and bool(_missed(request, now))


def flag_missed_deadlines() -> int:
    """Periodic job: audit each deadline an open request has missed (acknowledgement, export, legal,
    and the 14-day processing limit, met by the closure), and warn the owner of each one due within
    WARNING_WINDOW, once per deadline; how many flags were new."""
    now = clock.now()
    flagged = 0
    with db.transaction():
        # Row locks make a doubled run (two schedulers during a deploy) skip what the other flags.
        due = select(OffboardingRequest).where(or_(overdue(now), near(now))).with_for_update(
            of=OffboardingRequest, skip_locked=True)
        for request in db.session.scalars(due):
            missed = {data.get("deadline") for data in _flagged(request.id, "request.deadline_missed")}
            for deadline in _missed(request, now) - missed:
                audit.record("request.deadline_missed", actor=audit.SYSTEM,
                             tenant_id=request.tenant_id, request_id=request.id,
                             data={"deadline": deadline, "status": request.status})
                flagged += 1
            # Keyed by the due time too: an extended legal deadline is a new one, warned of again.
            warned = {(data.get("deadline"), data.get("due"))
                      for data in _flagged(request.id, "request.deadline_warning")}
            for deadline, due in _near(request, now).items():
                if (deadline, due.isoformat()) not in warned:
                    _warn(request, deadline, due, now)
                    flagged += 1
    return flagged


def near(now: datetime) -> ColumnElement[bool]:
    """SQL condition: an open request with a deadline not met that falls within WARNING_WINDOW."""
    r, soon = OffboardingRequest, now + WARNING_WINDOW
    return and_(
        r.status.not_in(TERMINAL_STATES),
        or_(
            and_(r.acknowledged_at.is_(None), r.acknowledgement_due >= now, r.acknowledgement_due <= soon),
            and_(r.export_ready_at.is_(None), r.export_due >= now, r.export_due <= soon),
            and_(r.export_ready_at.is_(None), r.legal_deadline >= now, r.legal_deadline <= soon),
            and_(r.closed_at.is_(None), r.received_at >= now - PROCESSING_WINDOW,
                 r.received_at <= soon - PROCESSING_WINDOW),
        ),
    )


def _near(request: OffboardingRequest, now: datetime) -> dict[str, datetime]:
    soon = now + WARNING_WINDOW
    unmet = {"acknowledgement": request.acknowledgement_due if request.acknowledged_at is None else None,
             "export": request.export_due if request.export_ready_at is None else None,
             "legal": request.legal_deadline if request.export_ready_at is None else None,
             "processing": request.processing_due if request.closed_at is None else None}
    return {name: due for name, due in unmet.items() if due is not None and now <= due <= soon}


def _flagged(request_id: int, action: str) -> list[dict[str, Any]]:
    return [event.data for event in db.session.scalars(
        select(AuditEvent).where(AuditEvent.request_id == request_id, AuditEvent.action == action))]


def _warn(request: OffboardingRequest, deadline: str, due: datetime, now: datetime) -> None:
    """Audit the near deadline and tell the request's owner, naming it and the time left."""
    minutes = int((due - now).total_seconds() // 60)
    left = f"{minutes // 60} h {minutes % 60:02d} min"
    audit.record("request.deadline_warning", actor=audit.SYSTEM, tenant_id=request.tenant_id,
                 request_id=request.id, data={"deadline": deadline, "due": due.isoformat(), "left": left,
                                              "owner": request.owner, "status": request.status})
    if request.owner:
        notify.send("deadline_warning", {"deadline": deadline, "due": due, "left": left},
                    recipient=request.owner, actor=audit.SYSTEM, tenant_id=request.tenant_id,
                    request_id=request.id)


def _missed(request: OffboardingRequest, now: datetime) -> set[str]:
    missed = set()
    if request.acknowledged_at is None and request.acknowledgement_due < now:
        missed.add("acknowledgement")
    if request.export_ready_at is None and request.export_due < now:
        missed.add("export")
    legal = request.legal_deadline
    if request.export_ready_at is None and legal is not None and legal < now:
        missed.add("legal")
    if request.closed_at is None and request.processing_due < now:
        missed.add("processing")
    return missed


def locked(request_id: int) -> OffboardingRequest:
    """The request under a row lock, fresh from the database (UnknownRequest when there is none)."""
    request = db.session.scalar(
        select(OffboardingRequest)
        .where(OffboardingRequest.id == request_id)
        .with_for_update(of=OffboardingRequest)
        .execution_options(populate_existing=True)
    )
    if request is None:
        raise UnknownRequest(f"request {request_id} not found")
    return request
