"""Win-back: a reminder for the account's owner to get back in touch 6 to 12 months after a
departure on good terms. The service never writes to the customer about it: the owner decides.

``notify_due`` (a cron job) e-mails the owner once a reminder falls due. The claim on a reminder is
a conditional update of ``notified_at`` in the transaction that queues the e-mail, so two runs
that overlap send it once. The reminder still goes after the tenant's primary purge: it is for our
own staff and names the account only, leaving out the survey's answers (anonymised by the purge)
and the reminder's free-text note, which may name a person.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select, update

import audit
from compliance import clock, db, notify, workflow
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


def notify_due() -> int:
    """The cron job: e-mail the owner of every reminder due today or earlier and not yet told, one
    reminder per transaction; how many were sent by this run."""
    ids = db.session.scalars(
        select(WinbackReminder.id).where(WinbackReminder.due_on <= clock.now().date(),
                                         WinbackReminder.notified_at.is_(None))
        .order_by(WinbackReminder.due_on, WinbackReminder.id)).all()
    db.session.rollback()
    sent = 0
    for reminder_id in ids:
        with db.transaction():
            sent += remind(reminder_id)
    return sent


def remind(reminder_id: int) -> bool:
    """Claim the reminder and queue its e-mail to the owner in the caller's transaction; False when
    another run claimed it first (its update, even a concurrent one, leaves no row to change here)."""
    claimed = db.session.execute(
        update(WinbackReminder)
        .where(WinbackReminder.id == reminder_id, WinbackReminder.notified_at.is_(None))
        .values(notified_at=clock.now()).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:
        return False
    reminder = db.session.get_one(WinbackReminder, reminder_id, populate_existing=True)
    facts = context(reminder)
    message = notify.send("winback_due", facts, recipient=reminder.owner, actor=audit.SYSTEM,
                          tenant_id=reminder.tenant_id, request_id=reminder.request_id,
                          meta={"winback_id": reminder.id})
    audit.record("winback.reminded", actor=audit.SYSTEM, tenant_id=reminder.tenant_id,
                 request_id=reminder.request_id, subject=("winback", reminder.id),
                 data={"owner": reminder.owner, "due_on": reminder.due_on.isoformat(), "message": message.id,
                       "purged": facts["purged_on"] is not None,
                       "no_contact": facts["no_contact_since"] is not None})
    return True


def context(reminder: WinbackReminder) -> dict[str, Any]:
    """What the ``winback_due`` message says beyond the tenant and request: when and why they left,
    the survey's answers and the note, the last two left out once the tenant is purged."""
    request = db.session.get_one(OffboardingRequest, reminder.request_id)
    tenant = request.tenant
    purged = tenant.purged_at is not None
    answers = None if purged else db.session.execute(
        select(ExitFeedback.reason, ExitFeedback.would_return)
        .where(ExitFeedback.request_id == request.id)).first()
    return {"left_on": request.closed_at, "flagged_on": reminder.created_at,
            "churn_reason": request.churn_reason, "survey_reason": answers.reason if answers else None,
            "would_return": answers.would_return if answers else None,
            "note": None if purged else reminder.note, "no_contact_since": tenant.no_contact_since,
            "purged_on": tenant.purged_at}
