"""The deadline sweep's warnings: a deadline not met and due within WARNING_WINDOW is audited and
mailed to the request's owner once, the 14-day processing limit like the others; and the customer
is told of an extended legal deadline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from compliance import db, workflow
from compliance.models import OffboardingRequest, OutboxMessage
from tests.compliance.test_workflow import at, drive, events, make_tenant, open_for

OWNER = "cara.mendes@offboard.example"


def outbox(request_id: int, kind: str) -> list[OutboxMessage]:
    return list(db.session.scalars(select(OutboxMessage).where(
        OutboxMessage.request_id == request_id, OutboxMessage.kind == kind).order_by(OutboxMessage.id)))


def test_a_near_deadline_is_warned_of_once_then_flagged_when_missed(session: None, clock: Any) -> None:
    request = open_for(make_tenant("DE"), owner=OWNER)  # acknowledgement due 3 March 2026, 09:00
    db.session.flush()
    assert workflow.flag_missed_deadlines() == 0  # 24 h away: not yet

    clock.freeze(at(2026, 3, 3, 3))  # 6 h left
    assert workflow.flag_missed_deadlines() == 1
    [event] = events(request.id, "request.deadline_warning")
    assert event.actor == "system"
    assert event.data == {"deadline": "acknowledgement", "due": at(2026, 3, 3, 9).isoformat(),
                          "left": "6 h 00 min", "owner": OWNER, "status": "received"}
    [message] = outbox(request.id, "deadline_warning")
    assert message.recipient == OWNER and message.status == "pending"
    assert message.subject == f"Request {request.id} (Acme GmbH): acknowledgement due in 6 h 00 min"
    for part in (message.body, message.html):
        assert "acknowledgement" in part and "3 March 2026, 09:00 UTC" in part and "6 h 00 min" in part

    clock.advance(timedelta(hours=1))
    assert workflow.flag_missed_deadlines() == 0  # a second run adds nothing
    assert len(events(request.id, "request.deadline_warning")) == 1
    assert len(outbox(request.id, "deadline_warning")) == 1
    assert events(request.id, "request.deadline_missed") == []

    clock.freeze(at(2026, 3, 3, 9, 0, 1))
    assert workflow.flag_missed_deadlines() == 1
    assert [e.data["deadline"] for e in events(request.id, "request.deadline_missed")] == ["acknowledgement"]
    assert len(events(request.id, "request.deadline_warning")) == 1


def test_a_request_without_owner_is_audited_and_mails_nobody(session: None, clock: Any) -> None:
    request = open_for(make_tenant("DE"))
    db.session.flush()
    clock.freeze(at(2026, 3, 3, 3))

    assert workflow.flag_missed_deadlines() == 1

    [event] = events(request.id, "request.deadline_warning")
    assert event.data["deadline"] == "acknowledgement" and event.data["owner"] is None
    assert db.session.scalars(select(OutboxMessage).where(
        OutboxMessage.request_id == request.id, OutboxMessage.kind == "deadline_warning")).all() == []


def test_a_deadline_already_met_is_not_warned_of(session: None, clock: Any) -> None:
    acknowledged = drive(open_for(make_tenant("DE"), owner=OWNER), "acknowledged")
    ready = drive(open_for(make_tenant("DE"), owner=OWNER), "export_ready")
    db.session.flush()

    clock.freeze(at(2026, 3, 3, 3))  # the acknowledgement is 6 h away, and met
    assert workflow.flag_missed_deadlines() == 0
    clock.freeze(at(2026, 3, 5, 3))  # the export is 6 h away: only the unexported request hears
    assert workflow.flag_missed_deadlines() == 1
    assert [e.data["deadline"] for e in events(acknowledged.id, "request.deadline_warning")] == ["export"]
    assert events(ready.id, "request.deadline_warning") == []
    assert outbox(ready.id, "deadline_warning") == []


def test_an_extended_legal_deadline_is_warned_of_again(session: None, clock: Any) -> None:
    request = drive(open_for(make_tenant("DE"), owner=OWNER), "failed")  # export never ready
    db.session.flush()
    clock.freeze(at(2026, 4, 2, 0))  # the GDPR month ends in 9 h
    workflow.flag_missed_deadlines()
    workflow.extend_deadline(request.id, actor="user:legal", reason="40 systems to export")
    clock.freeze(at(2026, 6, 2, 0))

    assert workflow.flag_missed_deadlines() == 1

    assert [(e.data["deadline"], e.data["due"]) for e in events(request.id, "request.deadline_warning")
            if e.data["deadline"] == "legal"] == [("legal", at(2026, 4, 2, 9).isoformat()),
                                                 ("legal", at(2026, 6, 2, 9).isoformat())]


def test_the_processing_limit_is_warned_of_then_flagged_until_the_request_is_closed(session: None,
                                                                                  clock: Any) -> None:
    # Every other deadline is met: only the 14 days from receipt to closure (16 March, 09:00) are left.
    request = drive(open_for(make_tenant("DE"), owner=OWNER), "export_ready")
    closed = drive(open_for(make_tenant("DE"), owner=OWNER), "closed")
    db.session.flush()
    received = request.received_at

    clock.freeze(received + timedelta(days=13, hours=11))  # 13 h left
    assert workflow.flag_missed_deadlines() == 0
    clock.freeze(received + timedelta(days=13, hours=11, minutes=59))  # 12 h 01 min left: not yet
    assert workflow.flag_missed_deadlines() == 0

    clock.freeze(received + timedelta(days=13, hours=12, minutes=1))  # 11 h 59 min left
    assert workflow.flag_missed_deadlines() == 1
    [event] = events(request.id, "request.deadline_warning")
    assert event.data == {"deadline": "processing", "due": at(2026, 3, 16, 9).isoformat(),
                          "left": "11 h 59 min", "owner": OWNER, "status": "export_ready"}
    [message] = outbox(request.id, "deadline_warning")
    assert message.recipient == OWNER
    assert message.subject == f"Request {request.id} (Acme GmbH): processing due in 11 h 59 min"
    for part in (message.body, message.html):
        assert "16 March 2026, 09:00 UTC" in part
        assert "It is met when the request is closed, at most 14 days after it was received." in part
    assert workflow.flag_missed_deadlines() == 0  # warned once

    clock.freeze(received + timedelta(days=14))  # due exactly now is not yet missed
    assert workflow.flag_missed_deadlines() == 0
    assert not workflow.is_overdue(request, clock.now())

    clock.freeze(received + timedelta(days=14, seconds=1))
    assert workflow.flag_missed_deadlines() == 1
    assert [e.data for e in events(request.id, "request.deadline_missed")] == [
        {"deadline": "processing", "status": "export_ready"}]
    assert workflow.flag_missed_deadlines() == 0  # flagged once
    now = clock.now()
    assert workflow.is_overdue(request, now)
    assert set(db.session.scalars(select(OffboardingRequest.id).where(
        OffboardingRequest.id.in_([request.id, closed.id]), workflow.overdue(now)))) == {request.id}

    # The closed request met it: never warned, never flagged, never overdue.
    assert events(closed.id, "request.deadline_warning") == events(closed.id, "request.deadline_missed") == []
    assert outbox(closed.id, "deadline_warning") == [] and not workflow.is_overdue(closed, now)


def test_the_customer_is_told_of_the_extension_and_why(session: None, clock: Any) -> None:
    tenant = make_tenant("DE")
    tenant.contact_email = "it@acme.example"
    request = open_for(tenant)
    clock.advance(timedelta(days=10))

    workflow.extend_deadline(request.id, actor="user:legal", reason="40 systems to export")

    [message] = outbox(request.id, "deadline_extended")
    assert message.recipient == "it@acme.example" and message.status == "pending"
    assert message.subject == "Acme GmbH: we need more time for your request"
    for part in (message.body, message.html):
        assert "40 systems to export" in part
        assert "2 April 2026" in part and "2 June 2026" in part  # was due by, now due by
    assert db.session.get(OffboardingRequest, request.id).legal_deadline == at(2026, 6, 2, 9)
