"""The cron configuration loads in rq's scheduler and its jobs run on a real worker."""

from __future__ import annotations

from datetime import timedelta

from rq.cron import CronScheduler
from sqlalchemy import select

import audit
from audit import checkpoints, log
from compliance import db, queues, workflow
from compliance.models import AuditCheckpoint, AuditEvent, Tenant
from compliance.worker import CRON_CONFIG


def test_schedule_registers_the_deadline_sweep(redis) -> None:  # type: ignore[no-untyped-def]
    scheduler = CronScheduler(connection=redis)
    scheduler.load_config_from_file(CRON_CONFIG)
    jobs = {job.func: job for job in scheduler.get_jobs()}
    assert workflow.flag_missed_deadlines in jobs
    assert jobs[workflow.flag_missed_deadlines].cron == "*/5 * * * *"
    assert jobs[workflow.flag_missed_deadlines].queue_name in queues.QUEUE_NAMES


def test_deadline_sweep_runs_on_the_worker_once_per_deadline(session, clock, work) -> None:  # type: ignore[no-untyped-def]
    tenant = Tenant(external_ref="late-1", name="Late Co", region="US-CA")
    db.session.add(tenant)
    db.session.flush()
    request = workflow.open_request(tenant, actor="test", requested_by="x", channel="email",
                                    churn_reason="price", formats=["csv"])
    db.session.commit()
    clock.advance(timedelta(days=46))
    for _ in range(2):  # a doubled cron run must not double the events
        queues.queue("default").enqueue(workflow.flag_missed_deadlines)
        work()
    events = db.session.scalars(select(AuditEvent).where(
        AuditEvent.request_id == request.id, AuditEvent.action == "request.deadline_missed")).all()
    assert sorted(event.data["deadline"] for event in events) == ["acknowledgement", "export", "legal",
                                                                  "processing"]


def test_the_audit_checkpoint_runs_every_minute_on_the_worker(session, work) -> None:  # type: ignore[no-untyped-def]
    scheduler = CronScheduler(connection=queues.connection())
    scheduler.load_config_from_file(CRON_CONFIG)
    jobs = {job.func: job for job in scheduler.get_jobs()}
    assert jobs[checkpoints.scheduled].cron == "* * * * *"

    audit.record("test.event", actor="test", data={"n": 1})
    db.session.commit()
    for _ in range(2):  # the second run finds nothing new and signs nothing
        queues.queue("default").enqueue(checkpoints.scheduled)
        work()
    signed = db.session.scalars(select(AuditCheckpoint)).all()
    assert len(signed) == 1 and signed[0].size == log.size() >= 1
