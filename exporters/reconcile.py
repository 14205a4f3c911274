"""Putting back what Redis lost: the database says what should be running, Redis may not.

Runs every minute from ``rq cron``. A task whose job vanished (Redis flushed or
restarted) or whose worker stopped heartbeating is enqueued again, a bounded
number of times, then failed in words. Idempotent: a doubled run finds live jobs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select

from compliance import clock, db, queues
from compliance.models import Export, ExportTask
from exporters import jobs

MAX_REQUEUES = 3
STALE_AFTER = timedelta(minutes=3)  # no RQ heartbeat for this long: the worker is presumed dead
ALIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


def reconcile() -> dict[str, int]:
    """One pass over unfinished exports; counts of what was put back or given up."""
    now = clock.now()
    counts = {"starts": 0, "pulls": 0, "failed": 0, "assembles": 0}
    with db.transaction():
        exports = db.session.scalars(select(Export).where(
            Export.status.in_(("pending", "running", "assembling"))).with_for_update(skip_locked=True)).all()
        plan = [(export.id, export.status, _alive(export.job_id, now)) for export in exports]
        lost_tasks: dict[int, list[int]] = {}
        for export in exports:
            if export.status != "running":
                continue
            for task in export.tasks:
                if task.status not in ("queued", "running") or _alive(task.job_id, now):
                    continue
                if task.requeues >= MAX_REQUEUES:
                    task.status = "failed"
                    task.error = f"the worker running it was lost {task.requeues + 1} times; gave up"
                    counts["failed"] += 1
                else:
                    task.status, task.requeues = "queued", task.requeues + 1
                    lost_tasks.setdefault(export.id, []).append(task.id)
    for export_id, status, export_job_alive in plan:
        if export_id in lost_tasks:
            jobs.enqueue_pulls(export_id, lost_tasks[export_id])
            counts["pulls"] += len(lost_tasks[export_id])
        elif status == "pending" and not export_job_alive:
            jobs.enqueue_start(export_id)
            counts["starts"] += 1
        elif status in ("running", "assembling") and not export_job_alive and _all_settled(export_id):
            jobs.enqueue_assemble(export_id, [])
            counts["assembles"] += 1
    return counts


def _alive(job_id: str | None, now: datetime) -> bool:
    """Whether an RQ job still exists and, if started, its worker still heartbeats it."""
    if job_id is None:
        return False
    try:
        job = Job.fetch(job_id, connection=queues.connection())
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status == JobStatus.STARTED:
        # A worker heartbeats its running job every 30 s; a killed one stops.
        beat = job.last_heartbeat.replace(tzinfo=UTC) if job.last_heartbeat else None
        return beat is not None and now - beat <= STALE_AFTER
    return status in ALIVE


def _all_settled(export_id: int) -> bool:
    statuses = db.session.scalars(select(ExportTask.status).where(ExportTask.export_id == export_id))
    return all(status in ("done", "failed") for status in statuses)
