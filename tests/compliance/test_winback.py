"""Win-back reminders falling due: the cron job e-mails the owner once, sets ``notified_at`` and
audits it; nothing before the due day, nothing twice, nothing ever to the customer."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from rq.cron import CronScheduler
from sqlalchemy import select

from compliance import db, queues, winback
from compliance.models import AuditEvent, ExitFeedback, OutboxMessage, Tenant, WinbackReminder
from compliance.worker import CRON_CONFIG
from tests.compliance.test_feedback import closed

OWNER = "owner@offboard.example"
DUE = datetime(2026, 9, 2, tzinfo=UTC)  # the first instant of the day six months after the frozen 2 March


def flagged(ref: str = "kestrel", note: str | None = "offer the new team plan") -> WinbackReminder:
    """A request closed on 28 February 2026, flagged on 2 March for a reminder six months later."""
    request = closed(ref, owner=OWNER)
    reminder = winback.flag(request.id, months=6, note=note, actor="user:csm")
    db.session.commit()
    assert reminder.due_on == date(2026, 9, 2)
    return reminder


def mails() -> list[OutboxMessage]:
    return list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def reminded(reminder_id: int) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "winback.reminded", AuditEvent.subject_id == str(reminder_id))))


def reloaded(reminder: WinbackReminder) -> WinbackReminder:
    db.session.expire_all()
    return db.session.get_one(WinbackReminder, reminder.id)


def test_a_due_reminder_mails_the_owner_once_and_the_customer_nothing(session: None, clock: Any) -> None:
    reminder = flagged()
    db.session.add(ExitFeedback(request_id=reminder.request_id, tenant_id=reminder.tenant_id,
                                month="2026-03", value_tier="premium", region="DE", reason="too_expensive",
                                would_return="maybe"))
    db.session.commit()
    before = mails()

    clock.freeze(DUE - timedelta(seconds=1))  # the day before: not yet
    assert winback.notify_due() == 0
    assert mails() == before and reloaded(reminder).notified_at is None

    clock.freeze(DUE + timedelta(hours=10))
    assert winback.notify_due() == 1

    [message] = [mail for mail in mails() if mail not in before]
    assert (message.kind, message.recipient, message.status) == ("winback_due", OWNER, "pending")
    assert message.subject == "Win-back reminder: Kestrel Labs left on 28 February 2026"
    for part in (message.body, message.html):
        assert "Kestrel Labs" in part and "kestrel" in part and "28 February 2026" in part
        assert "price" in part and "too expensive" in part and "maybe" in part
        assert "offer the new team plan" in part
        assert "Nothing was sent to the customer" in part and "your decision" in part
        assert f"/admin/requests/{reminder.request_id}" in part
        assert "cfo@kestrel.example" not in part  # the requester, a person, is not named
    assert reloaded(reminder).notified_at == clock.now()
    [event] = reminded(reminder.id)
    assert event.actor == "system" and event.request_id == reminder.request_id
    assert event.data == {"owner": OWNER, "due_on": "2026-09-02", "message": message.id, "purged": False,
                          "no_contact": False}

    clock.advance(timedelta(days=1))
    assert winback.notify_due() == 0  # a second run, even a day later, sends nothing more
    assert len(mails()) == len(before) + 1 and len(reminded(reminder.id)) == 1
    assert all(mail.recipient != "cfo@kestrel.example" for mail in mails() if mail not in before)


def test_a_run_that_lost_the_claim_sends_nothing(session: None, clock: Any) -> None:
    reminder = flagged()
    clock.freeze(DUE)
    # Two overlapping runs both listed the reminder; the second to claim it finds notified_at set.
    assert winback.remind(reminder.id) is True
    assert winback.remind(reminder.id) is False
    db.session.commit()
    assert [mail.kind for mail in mails()].count("winback_due") == 1 and len(reminded(reminder.id)) == 1


def test_after_the_purge_the_reminder_names_the_account_only(session: None, clock: Any) -> None:
    reminder = flagged(note="ask Jane Doe, their CTO")
    db.session.get_one(Tenant, reminder.tenant_id).purged_at = clock.now() + timedelta(days=90)
    db.session.commit()
    clock.freeze(DUE)

    assert winback.notify_due() == 1

    [message] = [mail for mail in mails() if mail.kind == "winback_due"]
    for part in (message.body, message.html):
        assert "Kestrel Labs" in part and "purged on 31 May 2026" in part
        assert "Jane Doe" not in part and "Nothing was sent to the customer" in part
    assert reminded(reminder.id)[0].data["purged"] is True


def test_a_customer_who_since_asked_for_no_contact_is_not_to_be_contacted(session: None, clock: Any) -> None:
    reminder = flagged()
    db.session.get_one(Tenant, reminder.tenant_id).no_contact_since = clock.now()
    db.session.commit()
    clock.freeze(DUE)

    assert winback.notify_due() == 1

    [message] = [mail for mail in mails() if mail.kind == "winback_due"]
    assert message.recipient == OWNER
    for part in (message.body, message.html):
        assert "asked for no further contact: do not get in touch" in part and "your decision" not in part
    assert reminded(reminder.id)[0].data["no_contact"] is True


def test_the_job_is_scheduled_hourly_and_runs_on_the_worker(session: None, clock: Any, redis: Any,
                                                            work: Any) -> None:
    scheduler = CronScheduler(connection=redis)
    scheduler.load_config_from_file(CRON_CONFIG)
    jobs = {job.func: job for job in scheduler.get_jobs()}
    assert jobs[winback.notify_due].cron == "45 * * * *"
    assert jobs[winback.notify_due].queue_name in queues.QUEUE_NAMES

    reminder = flagged()
    clock.freeze(DUE)
    for _ in range(2):  # a doubled cron run mails the owner once
        queues.queue("default").enqueue(winback.notify_due)
        work()
    assert [mail.recipient for mail in mails() if mail.kind == "winback_due"] == [OWNER]
    assert reloaded(reminder).notified_at == DUE


def test_the_reports_api_says_when_the_owner_was_told(client: Any, as_role: Any, clock: Any) -> None:
    reminder = flagged()
    clock.freeze(DUE)
    headers = as_role("auditor")

    def listed() -> list[tuple[int, str | None]]:
        answer = client.get("/api/v1/reports/dashboard", headers=headers).json
        return [(item["id"], item["notified_at"]) for item in answer["winback_due"]]

    assert listed() == [(reminder.id, None)]
    winback.notify_due()
    assert listed() == [(reminder.id, "2026-09-02T00:00:00+00:00")]
