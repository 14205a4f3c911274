"""The dashboard's figures: requests by state, how long acknowledgement, delivery and closure
take, the 72-hour export promise, overdue requests, upcoming purges, churn reasons by month, and
the exit survey's answers with the win-back reminders due (and whether their owners were told).

Everything is counted by the database (SQL aggregates, the same on SQLite and PostgreSQL);
a percentile reads the one row at its rank, never the whole column. Durations are whole
seconds between two stored timestamps. The figures about durations cover the requests
received in the window: the current calendar month and the eleven before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, and_, case, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from compliance import clock, db, winback, workflow
from compliance.models import ExitFeedback, LegalHold, OffboardingRequest, Tenant, WinbackReminder
from compliance.models.feedback import SURVEY_REASONS, WOULD_RETURN
from compliance.models.requests import CHURN_REASONS
from retention import policy

MONTHS = 12
PURGE_HORIZON = timedelta(days=30)
PURGES_SHOWN = 50
OPEN_STATES = tuple(state for state in workflow.STATES if state not in workflow.TERMINAL_STATES)
R = OffboardingRequest


class SecondsBetween(FunctionElement[int]):
    """Whole seconds from the first timestamp to the second (each truncated to its second)."""

    type = Integer()
    inherit_cache = True


class MonthOf(FunctionElement[str]):
    """The UTC calendar month of a timestamp as ``YYYY-MM``."""

    type = String()
    inherit_cache = True


@compiles(SecondsBetween, "sqlite")
def _seconds_sqlite(element: SecondsBetween, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(CAST(strftime('%s', {end}) AS INTEGER) - CAST(strftime('%s', {start}) AS INTEGER))"


@compiles(SecondsBetween, "postgresql")
def _seconds_postgresql(element: SecondsBetween, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return (f"(CAST(floor(EXTRACT(EPOCH FROM {end})) AS BIGINT) "
            f"- CAST(floor(EXTRACT(EPOCH FROM {start})) AS BIGINT))")


@compiles(MonthOf, "sqlite")
def _month_sqlite(element: MonthOf, compiler: Any, **kw: Any) -> str:
    return f"strftime('%Y-%m', {compiler.process(element.clauses, **kw)})"


@compiles(MonthOf, "postgresql")
def _month_postgresql(element: MonthOf, compiler: Any, **kw: Any) -> str:
    return f"to_char({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC', 'YYYY-MM')"


@dataclass(frozen=True)
class Durations:
    """How long a step took across the requests that reached it, in seconds."""

    count: int
    median: int | None
    p90: int | None


@dataclass(frozen=True)
class Promise:
    """Exports delivered within the 72-hour window, of those that could be judged."""

    counted: int
    in_time: int

    @property
    def share(self) -> float | None:
        return self.in_time / self.counted if self.counted else None


@dataclass(frozen=True)
class Purge:
    """A purge due soon: the tenant, which data, when, and the active holds that block it."""

    tenant: Tenant
    kind: str  # "primary" or "backups"
    due_at: datetime
    due: bool  # already due: the next sweep takes it, unless held
    holds: list[LegalHold]

    @property
    def held(self) -> bool:
        return bool(self.holds)


@dataclass(frozen=True)
class Churn:
    """Requests per month (oldest first) by churn reason; only reasons that occur."""

    months: list[str]
    series: dict[str, list[int]]


@dataclass(frozen=True)
class Reason:
    """Survey answers naming a reason, and the yearly value of those accounts (whole currency
    units; accounts without an ``annual_value`` count as 0)."""

    count: int
    revenue: int


@dataclass(frozen=True)
class Feedback:
    """The exit survey's answers submitted in the window; each figure over those who answered it."""

    answered: int
    reasons: dict[str, Reason]  # every survey reason, in the survey's order
    ratings: list[int]  # how many rated 1, 2, ... 10
    would_return: dict[str, int]  # yes, maybe, no
    recommends: list[int]  # how many answered 0, 1, ... 10

    @property
    def rating_average(self) -> float | None:
        total = sum(self.ratings)
        points = sum(score * count for score, count in enumerate(self.ratings, start=1))
        return points / total if total else None

    @property
    def would_return_share(self) -> float | None:
        """Of those who answered, the share who said yes."""
        total = sum(self.would_return.values())
        return self.would_return["yes"] / total if total else None

    @property
    def recommend_score(self) -> float | None:
        """Net promoter score: % answering 9-10 minus % answering 0-6, from -100 to 100."""
        total = sum(self.recommends)
        return 100 * (sum(self.recommends[9:]) - sum(self.recommends[:7])) / total if total else None


@dataclass(frozen=True)
class Dashboard:
    generated_at: datetime
    since: datetime
    open_by_state: dict[str, int]
    overdue: int
    to_acknowledgement: Durations
    to_export: Durations
    to_closure: Durations
    export_promise: Promise
    purges: list[Purge]
    purges_total: int
    churn: Churn
    feedback: Feedback
    winback_due: list[WinbackReminder]


def dashboard() -> Dashboard:
    """Every figure of the dashboard, at the clock's now."""
    now = clock.now()
    since = window_start(now)
    purges = upcoming_purges(now)
    return Dashboard(
        generated_at=now, since=since, open_by_state=open_by_state(), overdue=overdue(now),
        to_acknowledgement=durations(R.acknowledged_at, since), to_export=durations(R.export_ready_at, since),
        to_closure=durations(R.closed_at, since),
        export_promise=export_promise(since, now), purges=purges[:PURGES_SHOWN], purges_total=len(purges),
        churn=churn_by_month(now), feedback=exit_feedback(since), winback_due=winback.due(now.date()))


def window_start(now: datetime) -> datetime:
    """The first instant of the calendar month ``MONTHS - 1`` months before ``now``'s."""
    return clock.add_months(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), 1 - MONTHS)


def open_by_state() -> dict[str, int]:
    """Open requests per state, every open state listed (zero when none), in workflow order."""
    counts = dict(db.session.execute(select(R.status, func.count()).where(R.status.in_(OPEN_STATES))
                                     .group_by(R.status)).all())
    return {state: counts.get(state, 0) for state in OPEN_STATES}


def overdue(now: datetime) -> int:
    return db.session.scalar(select(func.count()).select_from(R).where(workflow.overdue(now))) or 0


def durations(reached: Any, since: datetime) -> Durations:
    """From ``received_at`` to ``reached``, over the window's requests that reached it.

    Percentiles are nearest-rank: the p-th percentile of n durations is the one at rank
    ceil(p * n) when sorted ascending, a duration that really occurred (the median of 10 is
    the 5th, the 90th percentile of 10 the 9th).
    """
    seconds = SecondsBetween(R.received_at, reached)
    where = (R.received_at >= since, reached.is_not(None))
    count = db.session.scalar(select(func.count()).select_from(R).where(*where)) or 0
    if not count:
        return Durations(0, None, None)

    def at_rank(fraction: float) -> int | None:
        rank = max(1, math.ceil(fraction * count))
        return db.session.scalar(select(seconds).where(*where).order_by(seconds).offset(rank - 1).limit(1))

    return Durations(count, at_rank(0.5), at_rank(0.9))


def export_promise(since: datetime, now: datetime) -> Promise:
    """Of the window's requests whose export was delivered or whose 72 hours are over (withdrawn
    ones that never got an export are not judged), how many were delivered within 72 hours."""
    window = int(workflow.EXPORT_WINDOW.total_seconds())
    judged = or_(R.export_ready_at.is_not(None),
                 and_(R.status != "withdrawn", R.received_at <= now - workflow.EXPORT_WINDOW))
    in_time = and_(R.export_ready_at.is_not(None),
                   SecondsBetween(R.received_at, R.export_ready_at) <= window)
    counted, kept = db.session.execute(
        select(func.count(), func.coalesce(func.sum(case((in_time, 1), else_=0)), 0))
        .where(R.received_at >= since, judged)).one()
    return Promise(counted, kept)


def upcoming_purges(now: datetime, horizon: timedelta = PURGE_HORIZON) -> list[Purge]:
    """Primary and backup purges due by ``now + horizon`` and not yet done, soonest first (ones
    past due come first: a held tenant stays due until released), each with its active holds."""
    due = {"primary": policy.due_for_primary_purge(now + horizon),
           "backups": policy.due_for_backup_purge(now + horizon)}
    ids = {tenant_id for found in due.values() for tenant_id in found}
    if not ids:
        return []
    tenants = {tenant.id: tenant for tenant in db.session.scalars(select(Tenant).where(Tenant.id.in_(ids)))}
    blocking: dict[int, list[LegalHold]] = {}
    for hold in db.session.scalars(select(LegalHold).where(
            LegalHold.tenant_id.in_(ids), LegalHold.released_at.is_(None)).order_by(LegalHold.id)):
        blocking.setdefault(hold.tenant_id, []).append(hold)
    purges = []
    for kind, found in due.items():
        for tenant_id in found:
            schedule = policy.schedule_of(tenants[tenant_id])
            due_at = schedule.primary_due if kind == "primary" else schedule.backup_due
            if due_at is not None:  # always set: only closed tenants fall due
                purges.append(Purge(tenants[tenant_id], kind, due_at, due=due_at <= now,
                                    holds=blocking.get(tenant_id, [])))
    return sorted(purges, key=lambda purge: (purge.due_at, purge.tenant.id, purge.kind))


def churn_by_month(now: datetime) -> Churn:
    """Requests received per calendar month of the window, by churn reason."""
    since = window_start(now)
    months = [clock.add_months(since, offset).strftime("%Y-%m") for offset in range(MONTHS)]
    month = MonthOf(R.received_at)
    rows = db.session.execute(select(month, R.churn_reason, func.count()).where(R.received_at >= since)
                              .group_by(month, R.churn_reason)).all()
    series: dict[str, list[int]] = {}
    for reason in sorted({row[1] for row in rows}, key=_reason_order):
        series[reason] = [0] * MONTHS
    for key, reason, count in rows:
        if key in months:
            series[reason][months.index(key)] = count
    return Churn(months, series)


def _reason_order(reason: str) -> tuple[int, str]:
    return (CHURN_REASONS.index(reason) if reason in CHURN_REASONS else len(CHURN_REASONS), reason)


def exit_feedback(since: datetime) -> Feedback:
    """The survey answers submitted since ``since``, counted by the database."""
    in_window = ExitFeedback.submitted_at >= since
    answered = db.session.scalar(select(func.count()).select_from(ExitFeedback).where(in_window)) or 0
    # int(): PostgreSQL sums a BIGINT column as NUMERIC, which arrives as a Decimal.
    by_reason = {reason: (count, int(revenue)) for reason, count, revenue in db.session.execute(
        select(ExitFeedback.reason, func.count(), func.coalesce(func.sum(ExitFeedback.annual_value), 0))
        .where(in_window, ExitFeedback.reason.is_not(None)).group_by(ExitFeedback.reason))}
    reasons = {reason: Reason(*by_reason.get(reason, (0, 0))) for reason in SURVEY_REASONS}

    def counts(column: Any) -> dict[Any, int]:
        return dict(db.session.execute(select(column, func.count()).where(in_window, column.is_not(None))
                                       .group_by(column)).all())

    ratings, returns, recommends = (counts(ExitFeedback.rating), counts(ExitFeedback.would_return),
                                    counts(ExitFeedback.recommend))
    return Feedback(answered=answered, reasons=reasons,
                    ratings=[ratings.get(score, 0) for score in range(1, 11)],
                    would_return={answer: returns.get(answer, 0) for answer in WOULD_RETURN},
                    recommends=[recommends.get(score, 0) for score in range(11)])
