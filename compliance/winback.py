"""Win-back: a reminder for the account's owner to get back in touch 6 to 12 months after a
departure on good terms. The service never writes to the customer about it: the owner decides."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

import audit
from compliance import clock, db, workflow
from compliance.models import ExitFeedback, OffboardingRequest, WinbackReminder

MONTHS = range(6, 13)
LEFT = ("closed", "feedback_collected")


def refusal(request: OffboardingRequest) -> str | None:
    """Why this departure cannot be flagged for win-back, or None when it can."""
    if request.status not in LEFT:
        return f"the request is {request.status}; only a closed account can be won back"
    if request.tenant.no_contact_since is not None:
        return "the customer asked for no further contact"
    said = db.session.scalar(select(ExitFeedback.would_return).where(ExitFeedback.request_id == request.id))
    if said == "no":
        return "the customer said in the exit survey that they would not come back"
    if db.session.scalar(select(WinbackReminder.id).where(WinbackReminder.request_id == request.id)):
        return "this departure is already flagged for win-back"
    if not request.owner:
        return "the request has no owner to remind; assign one first"
    return None


def flag(request_id: int, *, months: int, note: str | None, actor: str) -> WinbackReminder:
    """A reminder for the request's owner, due ``months`` after today (WorkflowError when refused)."""
    if months not in MONTHS:
        raise ValueError("months must be between 6 and 12")
    request = db.session.get(OffboardingRequest, request_id)
    if request is None:
        raise workflow.UnknownRequest(f"no request {request_id}")
    refused = refusal(request)
    if refused is not None:
        raise workflow.WorkflowError(refused)
    assert request.owner is not None
    due_on = clock.add_months(clock.now(), months).date()
    reminder = WinbackReminder(tenant_id=request.tenant_id, request_id=request.id, owner=request.owner,
                               months=months, due_on=due_on, note=note or None, created_by=actor)
    db.session.add(reminder)
    db.session.flush()
    audit.record("winback.flagged", actor=actor, tenant_id=request.tenant_id, request_id=request.id,
                 subject=("winback", reminder.id),
                 data={"owner": request.owner, "months": months, "due_on": due_on.isoformat()})
    return reminder


def due(today: date | None = None) -> list[WinbackReminder]:
    """Reminders due by ``today`` (the clock's), oldest first."""
    day = today or clock.now().date()
    return list(db.session.scalars(select(WinbackReminder).where(WinbackReminder.due_on <= day)
                                   .order_by(WinbackReminder.due_on, WinbackReminder.id)))
