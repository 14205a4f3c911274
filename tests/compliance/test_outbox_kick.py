"""A committed message queues one delivery run at once (``notify.kick``), so the customer does not
wait for the minute's cron run; a rolled-back one queues nothing, and Redis being away never
undoes the commit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis import Redis
from rq.job import Job
from sqlalchemy import select

from compliance import db, notify, queues, workflow
from compliance.models import OffboardingRequest, OutboxMessage

CUSTOMER = "it@plover.example"


@pytest.fixture
def offboarding(session: None, redis: Redis) -> OffboardingRequest:
    tenant = workflow.register_tenant(actor="test", external_ref="plover", name="Plover Ltd", region="DE",
                                      contact_email=CUSTOMER)
    request = workflow.open_request(tenant, actor="test", requested_by="cfo@plover.example", channel="email",
                                    churn_reason="price", formats=["csv"])
    db.session.commit()
    return request


def write(request: OffboardingRequest, kind: str = "acknowledgement") -> OutboxMessage:
    return notify.send(kind, {}, recipient=CUSTOMER, actor="test", tenant_id=request.tenant_id,
                       request_id=request.id)


def statuses(request: OffboardingRequest) -> list[str]:
    db.session.expire_all()
    return list(db.session.scalars(select(OutboxMessage.status).where(OutboxMessage.request_id == request.id)
                                   .order_by(OutboxMessage.id)))


def test_a_commit_that_wrote_messages_queues_one_delivery_run(offboarding: OffboardingRequest, redis: Redis,
                                                              work: Callable[[], None]) -> None:
    default = queues.queue("default")
    assert default.job_ids == []
    write(offboarding)
    db.session.commit()
    assert default.job_ids == [notify.KICK_JOB]
    assert Job.fetch(notify.KICK_JOB, connection=redis).func is notify.deliver_pending
    write(offboarding, "save_invitation")
    db.session.commit()
    assert default.job_ids == [notify.KICK_JOB]  # the waiting run will take this one too

    work()
    assert statuses(offboarding) == ["sent", "sent"] and default.job_ids == []
    assert not Job.exists(notify.KICK_JOB, connection=redis)  # gone: the next commit queues a new run
    write(offboarding)
    db.session.commit()
    assert default.job_ids == [notify.KICK_JOB]


def test_a_rolled_back_message_and_a_commit_without_one_queue_nothing(
        offboarding: OffboardingRequest) -> None:
    write(offboarding)
    db.session.rollback()
    offboarding.owner = "cara@offboard.example"
    db.session.commit()
    assert queues.queue("default").job_ids == []
    assert statuses(offboarding) == []


def test_with_redis_away_the_message_is_still_committed_for_the_cron_run(
        offboarding: OffboardingRequest, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(queues, "_connection", Redis(host="127.0.0.1", port=1, socket_connect_timeout=1))
    write(offboarding)
    db.session.commit()
    assert statuses(offboarding) == ["pending"]
    assert "outbox.kick_failed" in caplog.text and "Connection refused" in caplog.text
    monkeypatch.undo()
    assert notify.deliver_pending() == 1 and statuses(offboarding) == ["sent"]
