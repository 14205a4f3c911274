"""Retention: a tenant's purge dates and state, legal holds, contractual overrides, and runs of
the primary purge or the backup sweep (dry or real) with their reports."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any

from croniter import croniter
from flask_smorest import Blueprint, abort
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from rq.cron import CronScheduler
from sqlalchemy import or_, select

import audit
from compliance import clock, db, queues
from compliance.api.pagination import paginate
from compliance.api.schemas import Page, PageArgs, ReasonIn, Strict, one_of, text
from compliance.api.tenants import get_or_404
from compliance.api.writes import writes
from compliance.auth import current_principal, requires
from compliance.models import LegalHold, PurgeStep, RetentionOverride, RetentionRun, Tenant
from retention import backups, holds, policy, purge

blp = Blueprint("retention", __name__, url_prefix="/api/v1",
                description="Retention dates, legal holds, overrides and purge runs")
READERS = ("admin", "csm", "legal", "auditor")
RUN_READERS = ("admin", "legal", "auditor")
KINDS = ("primary", "backups")
SWEEP = purge.scheduled_sweep
RUNS_SCANNED = 500  # a tenant is in at most one daily sweep a day between closing and its purge
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2999, 12, 31, tzinfo=UTC)


class AsOf(fields.Field):
    """A date (its start, UTC) or an ISO 8601 datetime (UTC when it names no zone)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(metadata={"type": "string", "example": "2026-06-01", "description": (
            "YYYY-MM-DD (the start of that day, UTC) or an ISO 8601 datetime; default now"
        )}, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str):
            raise ValidationError("must be a date (YYYY-MM-DD) or an ISO 8601 datetime")
        try:
            parsed = parse_as_of(value)
        except ValueError as error:
            raise ValidationError(str(error)) from error
        return parsed


def parse_as_of(value: str) -> datetime:
    """``YYYY-MM-DD`` as the start of that day in UTC, or an ISO datetime (naive means UTC)."""
    try:
        if len(value) == 10:
            moment = datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(value)
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"{value[:40]!r} is not a date (YYYY-MM-DD) or an ISO 8601 datetime") from None
    if not EARLIEST <= moment <= LATEST:
        raise ValueError(f"{value[:40]!r} is outside {EARLIEST.year}..{LATEST.year}")
    return moment


class HoldIn(Strict):
    reason = text(2000, required=True)
    matter = text(200, required=True, metadata={"description": "the legal matter the hold is for"})


class OverrideIn(Strict):
    primary_days = fields.Integer(validate=validate.Range(1, 3650),
                                  metadata={"description": "days primary data is kept after closure"})
    backup_months = fields.Integer(validate=validate.Range(1, 120),
                                   metadata={"description": "calendar months backups are kept"})
    reason = text(2000, required=True)

    @validates_schema
    def _one_duration(self, data: dict[str, Any], **_: Any) -> None:
        if "primary_days" not in data and "backup_months" not in data:
            raise ValidationError("give primary_days, backup_months or both", "primary_days")


class RunIn(Strict):
    kind = one_of(KINDS, load_default="primary", metadata={
        "description": "primary: purge the tenants due; backups: the backup sweep (expired snapshots, "
                       "crypto-shredding)"})
    as_of = AsOf()
    tenant_id = fields.Integer(validate=validate.Range(1, 2**63 - 1),
                               metadata={"description": "primary runs only: just this tenant"})
    dry_run = fields.Boolean(load_default=True)

    @validates_schema
    def _tenant_for_primary(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("kind") == "backups" and "tenant_id" in data:
            raise ValidationError("a backups run sweeps every snapshot; tenant_id is for primary runs",
                                  "tenant_id")


class HoldOut(Schema):
    id = fields.Integer()
    tenant_id = fields.Integer()
    matter = fields.String()
    reason = fields.String()
    active = fields.Function(lambda hold: hold.released_at is None)
    placed_by = fields.String()
    placed_at = fields.DateTime()
    released_by = fields.String(allow_none=True)
    released_at = fields.DateTime(allow_none=True)
    release_reason = fields.String(allow_none=True)


class HoldList(Schema):
    items = fields.List(fields.Nested(HoldOut))


class RunSummary(Schema):
    id = fields.Integer()
    kind = fields.String()
    as_of = fields.DateTime()
    dry_run = fields.Boolean()
    tenant_id = fields.Integer(allow_none=True)
    requested_by = fields.String()
    status = fields.String()
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)


class RunOut(RunSummary):
    report = fields.Dict(allow_none=True, metadata={"description": (
        "primary: due and held tenant ids, a dry run's plans, a real run's enqueued ids and results; "
        "backups: snapshots, tenants and held entries, each with the status the sweep gave it or, in a "
        "dry run, the one it would give it (would)")})


class RunPage(Page):
    items = fields.List(fields.Nested(RunSummary))


class OverrideOut(Schema):
    primary_days = fields.Integer(allow_none=True)
    backup_months = fields.Integer(allow_none=True)
    reason = fields.String()
    set_by = fields.String()
    set_at = fields.DateTime()


class StepOut(Schema):
    system = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class LastRunOut(RunSummary):
    outcome = fields.String(metadata={"description": "what the run did with this tenant"})


class RetentionOut(Schema):
    tenant_id = fields.Integer()
    state = fields.String(metadata={"description": "open | retained | due | held | purged"})
    closed_at = fields.DateTime(allow_none=True)
    primary_days = fields.Integer(metadata={"description": "in force: the policy's or the override's"})
    backup_months = fields.Integer()
    primary_purge_due = fields.DateTime(allow_none=True)
    backup_purge_due = fields.DateTime(allow_none=True)
    override = fields.Nested(OverrideOut, allow_none=True)
    holds = fields.List(fields.Nested(HoldOut), metadata={"description": "the active holds"})
    purged_at = fields.DateTime(allow_none=True)
    backups_purged_at = fields.DateTime(allow_none=True)
    last_run = fields.Nested(LastRunOut, allow_none=True)
    purge_steps = fields.List(fields.Nested(StepOut))
    next_sweep_at = fields.DateTime(metadata={"description": "the next run of the daily purge sweep"})
    purge_expected_at = fields.DateTime(allow_none=True, metadata={
        "description": "the first sweep at or after the due date, unless held, open or purged"})


@blp.route("/tenants/<id:tenant_id>/retention", methods=["GET"])
@requires(*READERS)
@blp.response(200, RetentionOut)
@blp.alt_response(404, description="no such tenant")
def get_retention(tenant_id: int) -> dict[str, Any]:
    return retention_status(get_or_404(tenant_id))


@blp.route("/tenants/<id:tenant_id>/holds", methods=["GET"])
@requires(*READERS)
@blp.response(200, HoldList)
@blp.alt_response(404, description="no such tenant")
def list_holds(tenant_id: int) -> dict[str, Any]:
    get_or_404(tenant_id)
    return {"items": db.session.scalars(select(LegalHold).where(LegalHold.tenant_id == tenant_id)
                                        .order_by(LegalHold.placed_at.desc(), LegalHold.id.desc())).all()}


@blp.route("/tenants/<id:tenant_id>/holds", methods=["POST"])
@requires("legal", "admin")
@blp.arguments(HoldIn)
@blp.response(201, HoldOut)
@blp.alt_response(404, description="no such tenant")
@blp.alt_response(409, description="an active hold for this matter is already on the tenant")
@writes
def place_hold(data: dict[str, Any], tenant_id: int) -> LegalHold:
    get_or_404(tenant_id)
    try:
        return holds.place(tenant_id, reason=data["reason"], matter=data["matter"],
                           actor=current_principal().actor)
    except holds.DuplicateHold as error:
        abort(409, message=str(error))


@blp.route("/tenants/<id:tenant_id>/holds/<id:hold_id>", methods=["DELETE"])
@requires("legal", "admin")
@blp.arguments(ReasonIn)
@blp.response(200, HoldOut)
@blp.alt_response(404, description="no such hold on this tenant")
@writes
def release_hold(data: dict[str, Any], tenant_id: int, hold_id: int) -> LegalHold:
    """Release the hold; a released hold is answered as it is, unchanged."""
    hold = db.session.get(LegalHold, hold_id)
    if hold is None or hold.tenant_id != tenant_id:
        abort(404, message=f"hold {hold_id} of tenant {tenant_id} not found")
    return holds.release(hold, reason=data["reason"], actor=current_principal().actor)


@blp.route("/tenants/<id:tenant_id>/retention/override", methods=["PUT"])
@requires("legal", "admin")
@blp.arguments(OverrideIn)
@blp.response(200, RetentionOut)
@blp.alt_response(404, description="no such tenant")
@blp.alt_response(409, description="that purge is done: its duration can no longer change")
@writes
def set_override(data: dict[str, Any], tenant_id: int) -> dict[str, Any]:
    """Set the tenant's durations; a duration not given keeps its current value."""
    tenant = get_or_404(tenant_id)
    if "primary_days" in data and tenant.purged_at is not None:
        abort(409, message=f"tenant {tenant_id}'s primary data was purged at {tenant.purged_at.isoformat()}")
    if "backup_months" in data and tenant.backups_purged_at is not None:
        abort(409, message=f"tenant {tenant_id}'s backups were purged at "
                           f"{tenant.backups_purged_at.isoformat()}")
    override = db.session.get(RetentionOverride, tenant_id)
    before = ({"primary_days": override.primary_days, "backup_months": override.backup_months}
              if override else None)
    if override is None:
        override = RetentionOverride(tenant_id=tenant_id)
        db.session.add(override)
    for name in ("primary_days", "backup_months"):
        if name in data:
            setattr(override, name, data[name])
    override.reason, override.set_by, override.set_at = data["reason"], current_principal().actor, clock.now()
    db.session.flush()
    audit.record("retention.override_set", actor=override.set_by, tenant_id=tenant_id,
                 subject=("retention_override", tenant_id),
                 data={"primary_days": override.primary_days, "backup_months": override.backup_months,
                       "reason": override.reason, "previous": before})
    return retention_status(tenant)


@blp.route("/retention/runs", methods=["POST"])
@requires("admin")
@blp.arguments(RunIn)
@blp.response(201, RunOut)
@blp.alt_response(422, description="a real run as of a later time than now, an unknown tenant, "
                                   "or a tenant for a backups run")
@writes
def start_run(data: dict[str, Any]) -> RetentionRun:
    """Run the primary purge or the backup sweep now: a dry run reports what it would delete; a real
    one enqueues the work, whose results the run's report gathers."""
    tenant_id = data.get("tenant_id")
    if tenant_id is not None and db.session.get(Tenant, tenant_id) is None:
        abort(422, message=f"tenant {tenant_id} not found",
              errors={"json": {"tenant_id": ["no such tenant"]}})
    actor = current_principal().actor
    db.session.commit()  # the run works in transactions of its own
    try:
        if data["kind"] == "backups":
            return backups.run(as_of=data.get("as_of"), dry_run=data["dry_run"], actor=actor, enqueue=True)
        return purge.run(as_of=data.get("as_of"), tenant_id=tenant_id, dry_run=data["dry_run"], actor=actor,
                         enqueue=True)
    except ValueError as error:
        abort(422, message=str(error), errors={"json": {"as_of": [str(error)]}})


@blp.route("/retention/runs", methods=["GET"])
@requires(*RUN_READERS)
@blp.arguments(PageArgs, location="query", as_kwargs=True, unknown=RAISE)
@blp.response(200, RunPage)
def list_runs(limit: int, cursor: str | None = None) -> dict[str, Any]:
    return paginate(select(RetentionRun), RetentionRun.id, limit=limit, cursor=cursor)


@blp.route("/retention/runs/<id:run_id>", methods=["GET"])
@requires(*RUN_READERS)
@blp.response(200, RunOut)
@blp.alt_response(404, description="no such run")
def get_run(run_id: int) -> RetentionRun:
    row = db.session.get(RetentionRun, run_id)
    if row is None:
        abort(404, message=f"retention run {run_id} not found")
    return row


def retention_status(tenant: Tenant) -> dict[str, Any]:
    """What ``GET /tenants/<id>/retention`` answers; the tenant page shows the same."""
    schedule, active, now = policy.schedule_of(tenant), holds.active(tenant.id), clock.now()
    state = _state(tenant, schedule, bool(active), now)
    expected = None
    if state in ("retained", "due") and schedule.primary_due is not None:
        # the sweep at the due minute itself finds the tenant due
        expected = next_sweep(max(now, schedule.primary_due - timedelta(seconds=1)))
    return {
        "tenant_id": tenant.id, "state": state, "closed_at": tenant.closed_at,
        "primary_days": schedule.primary_days, "backup_months": schedule.backup_months,
        "primary_purge_due": schedule.primary_due, "backup_purge_due": schedule.backup_due,
        "override": db.session.get(RetentionOverride, tenant.id), "holds": active,
        "purged_at": tenant.purged_at, "backups_purged_at": tenant.backups_purged_at,
        "last_run": _last_run(tenant), "next_sweep_at": next_sweep(now), "purge_expected_at": expected,
        "purge_steps": db.session.scalars(select(PurgeStep).where(PurgeStep.tenant_id == tenant.id)
                                          .order_by(PurgeStep.id)).all(),
    }


def _state(tenant: Tenant, schedule: policy.Schedule, held: bool, now: datetime) -> str:
    if tenant.purged_at is not None:
        return "purged"
    if held:
        return "held"
    if schedule.primary_due is None:
        return "open"
    return "due" if schedule.primary_due <= now else "retained"


def _last_run(tenant: Tenant) -> dict[str, Any] | None:
    """The newest run that named the tenant, or whose sweep found it due (none can before closing)."""
    if tenant.closed_at is None:
        return None
    runs = db.session.scalars(select(RetentionRun).where(
        or_(RetentionRun.tenant_id == tenant.id, RetentionRun.tenant_id.is_(None)),
        RetentionRun.started_at >= tenant.closed_at).order_by(RetentionRun.id.desc()).limit(RUNS_SCANNED))
    for row in runs:
        outcome = _outcome(row.report or {}, tenant.id)
        if outcome is not None:
            return {**{name: getattr(row, name) for name in RunSummary().fields}, "outcome": outcome}
    return None


def _outcome(report: dict[str, Any], tenant_id: int) -> str | None:
    results = [entry for entry in report.get("tenants", []) if entry.get("tenant_id") == tenant_id]
    if results and "would" in results[-1]:  # a backups dry run's plan
        return "held" if results[-1]["would"] == "held" else "planned"
    if results:
        return str(results[-1].get("status"))
    if tenant_id in report.get("held", []):
        return "held"
    if tenant_id in report.get("enqueued", []):
        return "enqueued"
    if any(plan.get("tenant_id") == tenant_id for plan in report.get("plans", [])):
        return "planned"
    return "due" if tenant_id in report.get("due", []) else None


_cron_lock = threading.Lock()


@cache
def sweep_cron() -> str:
    """The cron expression the purge sweep is registered with, read from the cron config itself."""
    from compliance.worker import CRON_CONFIG

    with _cron_lock:  # rq fills a module-global list while it loads a config
        scheduler = CronScheduler(connection=queues.connection())
        scheduler.load_config_from_file(CRON_CONFIG)
    expressions = [job.cron for job in scheduler.get_jobs() if job.func is SWEEP and job.cron]
    if not expressions:
        raise LookupError(f"{CRON_CONFIG} registers no cron for {SWEEP.__module__}.{SWEEP.__name__}")
    return expressions[0]


def next_sweep(after: datetime) -> datetime:
    """The first sweep strictly after ``after``, reading the cron in local time as rq's scheduler does."""
    local = croniter(sweep_cron(), after.astimezone().replace(tzinfo=None)).get_next(datetime)
    return local.astimezone(UTC)
