"""Runs of ``audit verify`` and what they found, kept in the log itself.

Each run, from the CLI, the daily schedule or the audit page, appends an ``audit.verified``
event with its outcome: the record of verification is as tamper-evident as what it verified
(removing or rewriting it breaks the next run), and it needs no table of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from audit import log, verify
from compliance import db, queues
from compliance.models import AuditEvent

ACTION = "audit.verified"
NOTES_KEPT = 5  # notes named in the event; the rest are counted
QUEUE = "default"
JOB_TIMEOUT = 3600  # a log of many millions of events takes minutes


@dataclass(frozen=True)
class Outcome:
    """A recorded run: when, by whom, and what it found."""

    at: datetime
    actor: str
    ok: bool
    size: int
    checkpoints: int
    problems: list[str]  # verify stops at the first problem: one at most
    first_bad_index: int | None
    notes: list[str]


def run(actor: str) -> verify.Report:
    """Verify the whole log, then record the outcome as done by ``actor``."""
    with db.transaction():
        report = verify.verify()
    with db.transaction():
        log.record(ACTION, actor=actor, data=_data(report))
    return report


def job(actor: str = log.SYSTEM) -> bool:
    """The queued job (daily from the scheduler, or asked for on the audit page): passed?"""
    return run(actor).ok


def enqueue(actor: str) -> str:
    """Queue a run on behalf of ``actor``; the job's id."""
    return queues.queue(QUEUE).enqueue(job, actor, job_timeout=JOB_TIMEOUT).id  # type: ignore[no-any-return]


def last() -> Outcome | None:
    """The most recent recorded run, if any."""
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == ACTION).order_by(
        AuditEvent.occurred_at.desc(), AuditEvent.id.desc()).limit(1)).first()
    if event is None:
        return None
    data = event.data
    return Outcome(at=event.occurred_at, actor=event.actor, ok=bool(data.get("ok")), size=data.get("size", 0),
                   checkpoints=data.get("checkpoints", 0), problems=list(data.get("problems", [])),
                   first_bad_index=data.get("first_bad_index"), notes=list(data.get("notes", [])))


def _data(report: verify.Report) -> dict[str, Any]:
    return {"ok": report.ok, "size": report.size, "checkpoints": report.checkpoints, "queued": report.queued,
            "problems": [] if report.problem is None else [report.problem],
            "first_bad_index": report.first_bad_index, "notes": report.notes[:NOTES_KEPT],
            "note_count": len(report.notes)}
