"""Backups: the catalogue of snapshots that hold tenants' data, and the sweep that ends them.

A snapshot is registered with where it lives (a storage URL: a directory or ``s3://bucket/prefix``,
opened with the same ``exporters.storage`` as bundles, and the object or prefix of the snapshot in
it) and which tenants it holds. Its ``method`` says how it goes away once it is older than the
backup retention (``backup_retention_months``, default 12): ``delete`` removes its objects;
``crypto_shred`` is for copies we cannot delete (offsite, immutable), which become unreadable when
the keys of their tenants are destroyed.

The daily sweep (``run_backup_sweep``) does two things, each step in a transaction of its own
that checks the legal holds at the moment it deletes:

1. Every expired ``delete`` snapshot is deleted and audited (``backups.snapshot_deleted``), unless
   a tenant it holds is under a legal hold: then it is kept and reported with the hold.
2. Every closed tenant whose backup purge is due (``policy.due_for_backup_purge``), or whose
   primary purge is done and whose last snapshot is gone, is crypto-shredded: its data keys are
   destroyed (``exporters.keys``: each ``tenant_key.destroyed``), so any copy we do not control
   becomes unreadable; ``backups.purged`` records it and ``backups_purged_at`` is set. Then,
   committed, the backups deletion certificate is issued and legal is told, as for the primary
   purge. A ``crypto_shred`` snapshot is retired (``backups.snapshot_retired``) once it has
   expired and every tenant it holds is crypto-shredded.

Every sweep is a ``run``: a ``RetentionRun`` of kind ``backups`` that keeps its report, started by
the cron job, ``POST /api/v1/retention/runs`` or ``offboard backups sweep``. A dry run keeps the
``plan`` instead: the sweep's own decisions, item by item, with nothing deleted, destroyed or
audited, so that what it lists is what the real sweep then does.

``backups.purged`` is a contract with ``audit.certificates``: its data is exactly
``{"snapshots", "started_at", "finished_at"}``. Re-running the sweep changes nothing: a snapshot
is purged once, a tenant's purge is one ``PurgeStep`` (kind ``backups``) done once.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import exists, func, or_, select

import audit
from compliance import clock, config, db, notify, queues
from compliance.models import (
    BackupSnapshot,
    LegalHold,
    RetentionRun,
    Tenant,
    TenantKey,
    backup_snapshot_tenants,
)
from exporters import keys
from exporters.storage import Storage, check_name, open_storage
from retention import holds, policy, purge

QUEUE = "retention"
ACTOR = "system:backups"
METHODS = ("delete", "crypto_shred")
STEP = "tenant_keys"  # the PurgeStep system of a tenant's backup purge
# taken_at + N calendar months <= now is checked exactly; the query may look a few days wider
_MONTH_SLACK = timedelta(days=4)
log = structlog.get_logger("offboard.retention")


class InvalidSnapshot(ValueError):
    """A snapshot that cannot be registered; ``field`` names the input that is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# --- the catalogue -------------------------------------------------------------------------------


def register(*, taken_at: datetime, location: str, object_name: str, tenant_ids: list[int],
             method: str = "delete", actor: str) -> BackupSnapshot:
    """Add a snapshot to the catalogue (audited); the caller commits. InvalidSnapshot otherwise."""
    if taken_at.tzinfo is None:
        raise InvalidSnapshot("taken_at", "taken_at must name its time zone (or be UTC)")
    if taken_at > clock.now():
        raise InvalidSnapshot("taken_at", f"taken_at {taken_at.isoformat()} is in the future")
    if method not in METHODS:
        raise InvalidSnapshot("method", f"method must be one of {', '.join(METHODS)}, not {method!r}")
    try:
        open_storage(location)
    except ValueError as error:
        raise InvalidSnapshot("location", str(error)) from None
    try:
        check_name(object_name.rstrip("/"))
    except ValueError as error:
        raise InvalidSnapshot("object", str(error)) from None
    wanted = sorted(set(tenant_ids))
    if not wanted:
        raise InvalidSnapshot("tenant_ids", "a snapshot holds at least one tenant")
    tenants = list(db.session.scalars(select(Tenant).where(Tenant.id.in_(wanted)).order_by(Tenant.id)))
    unknown = sorted(set(wanted) - {tenant.id for tenant in tenants})
    if unknown:
        raise InvalidSnapshot("tenant_ids", f"no tenant has id {', '.join(map(str, unknown))}")
    snapshot = BackupSnapshot(taken_at=taken_at, location=location.strip(), object=object_name.rstrip("/"),
                              method=method, registered_by=actor, registered_at=clock.now(), tenants=tenants)
    db.session.add(snapshot)
    db.session.flush()
    audit.record("backups.snapshot_registered", actor=actor, subject=("backup_snapshot", snapshot.id),
                 data=_describe(snapshot))
    return snapshot


def expires_at(snapshot: BackupSnapshot) -> datetime:
    return clock.add_months(snapshot.taken_at, config.current().backup_retention_months)


def _describe(snapshot: BackupSnapshot) -> dict[str, Any]:
    return {"snapshot_id": snapshot.id, "taken_at": snapshot.taken_at.isoformat(),
            "location": snapshot.location, "object": snapshot.object, "method": snapshot.method,
            "tenant_ids": [tenant.id for tenant in snapshot.tenants]}


# --- the run ---------------------------------------------------------------------------------------


def scheduled_backup_sweep() -> dict[str, Any]:
    """The daily cron job: the backup sweep as of now."""
    return run_backup_sweep(actor=audit.SYSTEM)


def run_backup_sweep(as_of: datetime | None = None, *, actor: str = ACTOR) -> dict[str, Any]:
    """The real sweep, here and now (no queue): its report, with the id of the run that keeps it."""
    row = run(as_of=as_of, actor=actor)
    return {"run_id": row.id, **(row.report or {})}


def run(*, as_of: datetime | None = None, dry_run: bool = False, actor: str = ACTOR,
        enqueue: bool = False) -> RetentionRun:
    """A ``RetentionRun`` of kind ``backups`` as of ``as_of``: a dry run keeps the ``plan`` as its
    report; a real one sweeps, here or (``enqueue``) in a job on the retention queue.

    Like the primary purge, a real run never looks ahead: a snapshot deleted or a key destroyed a
    day early cannot be brought back.
    """
    now = clock.now()
    as_of = as_of or now
    if as_of > now and not dry_run:
        raise ValueError(f"a backup sweep cannot run as of {as_of.isoformat()}, later than now")
    with db.transaction():
        row = RetentionRun(kind="backups", as_of=as_of, dry_run=dry_run, requested_by=actor, status="running",
                           started_at=now)
        db.session.add(row)
    if dry_run:
        with db.transaction():
            report = plan(as_of)
        return _finish(row.id, report, "done")
    if enqueue:
        queues.queue(QUEUE).enqueue(sweep, row.id, job_id=f"backups-run-{row.id}",
                                    job_timeout=purge.JOB_TIMEOUT, result_ttl=7 * 86400,
                                    failure_ttl=30 * 86400)
        return row
    sweep(row.id)
    return db.session.get(RetentionRun, row.id, populate_existing=True) or row


def sweep(run_id: int) -> dict[str, Any]:
    """RQ job, or called inline: the real sweep of a backups run; its report, kept in the run."""
    with db.transaction():
        row = db.session.get(RetentionRun, run_id, populate_existing=True)
        assert row is not None
        as_of = row.as_of
    try:
        report = _sweep(as_of)
    except Exception as error:  # the run must not stay "running" for ever
        _finish(run_id, {"as_of": as_of.isoformat(), "error": f"{type(error).__name__}: {error}"[:2000]},
                "failed")
        raise
    _finish(run_id, report, "done")
    log.info("backup_sweep", run_id=run_id, snapshots=len(report["snapshots"]),
             tenants=len(report["tenants"]))
    return report


def _finish(run_id: int, report: dict[str, Any], status: str) -> RetentionRun:
    with db.transaction():
        row = db.session.get(RetentionRun, run_id, with_for_update=True, populate_existing=True)
        assert row is not None
        row.report, row.status, row.finished_at = report, status, clock.now()
    return row


# --- the sweep and its plan ----------------------------------------------------------------------


def _sweep(as_of: datetime) -> dict[str, Any]:
    """Delete the expired snapshots, crypto-shred the tenants whose backups are due, retire the
    expired copies we cannot delete; the report, item by item."""
    with db.transaction():
        expired = _expired(as_of)
    snapshots = [_delete_snapshot(snapshot_id) for snapshot_id in expired["delete"]]
    with db.transaction():
        due = [*policy.due_for_backup_purge(as_of), *_last_snapshot_gone(as_of)]
    tenants = [_purge_tenant(tenant_id) for tenant_id in dict.fromkeys(due)]
    snapshots += [_retire_snapshot(snapshot_id) for snapshot_id in expired["crypto_shred"]]
    return {"as_of": as_of.isoformat(), "snapshots": snapshots, "tenants": tenants,
            "held": [entry for entry in snapshots + tenants if entry["status"] == "held"]}


def plan(as_of: datetime) -> dict[str, Any]:
    """What ``_sweep`` as of ``as_of`` would do, item by item and in its order, deleting, destroying
    and recording nothing: each entry's ``would`` is the ``status`` the sweep would report for it
    (deleted, retired, waiting, held; a tenant: purged, held). A deletion that fails, it cannot
    foresee."""
    expired = _expired(as_of)
    snapshots = [_plan_snapshot(_snapshot(snapshot_id)) for snapshot_id in expired["delete"]]
    deleting = {entry["snapshot_id"] for entry in snapshots if entry["would"] == "deleted"}
    due = [*policy.due_for_backup_purge(as_of), *_last_snapshot_gone(as_of, deleting)]
    tenants = [_plan_tenant(tenant_id, deleting) for tenant_id in dict.fromkeys(due)]
    shredded = {entry["tenant_id"] for entry in tenants if entry["would"] == "purged"}
    snapshots += [_plan_snapshot(_snapshot(snapshot_id), shredded) for snapshot_id in expired["crypto_shred"]]
    return {"as_of": as_of.isoformat(), "snapshots": snapshots, "tenants": tenants,
            "held": [entry for entry in snapshots + tenants if entry["would"] == "held"]}


def _expired(as_of: datetime) -> dict[str, list[int]]:
    """Ids of the live snapshots older than the backup retention at ``as_of``, by method."""
    months = config.current().backup_retention_months
    candidates = db.session.scalars(select(BackupSnapshot).where(
        BackupSnapshot.purged_at.is_(None),
        BackupSnapshot.taken_at <= clock.add_months(as_of, -months) + _MONTH_SLACK)
        .order_by(BackupSnapshot.taken_at, BackupSnapshot.id))
    found: dict[str, list[int]] = {method: [] for method in METHODS}
    for snapshot in candidates:
        if clock.add_months(snapshot.taken_at, months) <= as_of:
            found[snapshot.method].append(snapshot.id)
    return found


def _last_snapshot_gone(as_of: datetime, deleting: Collection[int] = ()) -> list[int]:
    """Closed tenants, primary purge done, backups not, that some snapshot held and none holds
    any more (each deleted, or an expired copy to crypto-shred); a plan counts the snapshots it
    would delete, ``deleting``, as gone."""
    candidates = db.session.scalars(select(Tenant.id).where(
        Tenant.closed_at.is_not(None), Tenant.purged_at.is_not(None), Tenant.backups_purged_at.is_(None),
        exists().where(backup_snapshot_tenants.c.tenant_id == Tenant.id)).order_by(Tenant.id)).all()
    gone = []
    for tenant_id in candidates:
        snapshots = db.session.scalars(select(BackupSnapshot).join(backup_snapshot_tenants).where(
            backup_snapshot_tenants.c.tenant_id == tenant_id, BackupSnapshot.purged_at.is_(None),
            BackupSnapshot.id.not_in(deleting))).all()
        if all(s.method == "crypto_shred" and expires_at(s) <= as_of for s in snapshots):
            gone.append(tenant_id)
    return gone


def _plan_snapshot(snapshot: BackupSnapshot, shredded: Collection[int] = ()) -> dict[str, Any]:
    """What ``_delete_snapshot`` or ``_retire_snapshot`` would decide, ``shredded`` being the
    tenants the plan crypto-shreds before it retires copies."""
    entry = {**_describe(snapshot), "expires_at": expires_at(snapshot).isoformat()}
    found = _holds_on(snapshot)
    if found:
        return {**entry, "would": "held", **_hold_exception(snapshot, found)}
    if snapshot.method == "delete":
        return {**entry, "would": "deleted"}
    waiting = [tenant.id for tenant in snapshot.tenants if tenant.id not in shredded
               and db.session.get(Tenant, tenant.id, populate_existing=True).backups_purged_at is None]
    if waiting:
        return {**entry, "would": "waiting", "exception": _readable(snapshot.id, waiting)}
    return {**entry, "would": "retired"}


def _plan_tenant(tenant_id: int, deleting: Collection[int]) -> dict[str, Any]:
    tenant = db.session.get(Tenant, tenant_id)
    assert tenant is not None
    due = policy.schedule_of(tenant).backup_due
    live_keys = db.session.scalar(select(func.count()).select_from(TenantKey).where(
        TenantKey.tenant_id == tenant_id, TenantKey.wrapped_key.is_not(None)))
    entry = {"tenant_id": tenant_id, "external_ref": tenant.external_ref,
             "backup_due": due.isoformat() if due else None, "keys": live_keys,
             "snapshots": len(_deleted_snapshots(tenant_id, deleting))}
    found = holds.active(tenant_id)
    if found:
        return {**entry, "would": "held", "holds": [hold.id for hold in found],
                "exception": str(holds.HoldActive(tenant_id, found))}
    return {**entry, "would": "purged"}


# --- one snapshot ----------------------------------------------------------------------------------


def _locked_snapshot(snapshot_id: int) -> BackupSnapshot:
    snapshot = db.session.scalar(select(BackupSnapshot).where(BackupSnapshot.id == snapshot_id)
                                 .with_for_update().execution_options(populate_existing=True))
    assert snapshot is not None
    return snapshot


def _holds_on(snapshot: BackupSnapshot) -> list[LegalHold]:
    ids = [tenant.id for tenant in snapshot.tenants]
    return list(db.session.scalars(select(LegalHold).where(
        LegalHold.tenant_id.in_(ids), LegalHold.released_at.is_(None)).order_by(LegalHold.id)))


def _snapshot(snapshot_id: int) -> BackupSnapshot:
    snapshot = db.session.get(BackupSnapshot, snapshot_id, populate_existing=True)
    assert snapshot is not None
    return snapshot


def _held(snapshot: BackupSnapshot, found: list[LegalHold]) -> dict[str, Any]:
    log.info("backup_snapshot_held", snapshot_id=snapshot.id, holds=[hold.id for hold in found])
    return {"snapshot_id": snapshot.id, "status": "held",
            "tenant_ids": [tenant.id for tenant in snapshot.tenants], **_hold_exception(snapshot, found)}


def _hold_exception(snapshot: BackupSnapshot, found: list[LegalHold]) -> dict[str, Any]:
    return {"holds": [{"hold_id": hold.id, "tenant_id": hold.tenant_id, "matter": hold.matter,
                       "placed_at": hold.placed_at.isoformat()} for hold in found],
            "exception": f"snapshot {snapshot.id} is kept: "
                         + "; ".join(f"tenant {hold.tenant_id} is under legal hold {hold.id} ({hold.matter})"
                                     for hold in found)}


def _readable(snapshot_id: int, waiting: list[int]) -> str:
    return (f"snapshot {snapshot_id} stays readable for tenant(s) {', '.join(map(str, waiting))}, "
            "whose keys are not destroyed")


def _delete_snapshot(snapshot_id: int) -> dict[str, Any]:
    """Delete an expired snapshot's objects, unless it holds a tenant under a hold (checked here, in
    the transaction that deletes); the deletion and its one event commit together."""
    try:
        with db.transaction():
            snapshot = _locked_snapshot(snapshot_id)
            if snapshot.purged_at is not None:  # another sweep did it meanwhile
                return {"snapshot_id": snapshot_id, "status": "already_purged"}
            found = _holds_on(snapshot)
            if found:
                return _held(snapshot, found)
            started = clock.now().isoformat()
            storage = open_storage(snapshot.location)
            objects = storage.delete_prefix(snapshot.object)
            if _still_there(storage, snapshot.object):
                raise OSError(f"snapshot {snapshot.object!r} is still in {storage!r} after its deletion")
            snapshot.purged_at, snapshot.purge_error = clock.now(), None
            data = {**_describe(snapshot), "objects": objects, "started_at": started,
                    "finished_at": clock.now().isoformat()}
            audit.record("backups.snapshot_deleted", actor=ACTOR, subject=("backup_snapshot", snapshot.id),
                         data=data)
            return {"snapshot_id": snapshot_id, "status": "deleted", "objects": objects,
                    "tenant_ids": data["tenant_ids"]}
    except Exception as error:  # this snapshot waits for the next sweep; the others still go
        message = f"{type(error).__name__}: {error}"[:2000]
        log.warning("backup_snapshot_failed", snapshot_id=snapshot_id, error=message[:300])
        with db.transaction():
            _locked_snapshot(snapshot_id).purge_error = message
        return {"snapshot_id": snapshot_id, "status": "failed", "error": message}


def _still_there(storage: Storage, name: str) -> bool:
    """Whether the snapshot's object, or anything under its prefix, is still stored: a second pass
    over the prefix must find nothing (what it finds, appeared meanwhile, it removes too)."""
    return storage.exists(name) or storage.delete_prefix(name) > 0


def _retire_snapshot(snapshot_id: int) -> dict[str, Any]:
    """An expired copy we cannot delete ends when every tenant it holds is crypto-shredded."""
    with db.transaction():
        snapshot = _locked_snapshot(snapshot_id)
        if snapshot.purged_at is not None:
            return {"snapshot_id": snapshot_id, "status": "already_purged"}
        found = _holds_on(snapshot)
        if found:
            return _held(snapshot, found)
        waiting = [tenant.id for tenant in snapshot.tenants
                   if db.session.get(Tenant, tenant.id, populate_existing=True).backups_purged_at is None]
        if waiting:
            return {"snapshot_id": snapshot_id, "status": "waiting", "tenant_ids": waiting,
                    "exception": _readable(snapshot_id, waiting)}
        snapshot.purged_at, snapshot.purge_error = clock.now(), None
        audit.record("backups.snapshot_retired", actor=ACTOR, subject=("backup_snapshot", snapshot.id),
                     data=_describe(snapshot))
        return {"snapshot_id": snapshot_id, "status": "retired"}


# --- one tenant ------------------------------------------------------------------------------------


def _purge_tenant(tenant_id: int) -> dict[str, Any]:
    """Crypto-shred the tenant (unless held, checked where the keys are destroyed), record it once,
    then certify and notify."""
    with db.transaction():
        step = purge.locked_step(tenant_id, STEP, "backups")
        if step.status == "pending":
            step.attempts += 1
            step.started_at = step.started_at or clock.now()
    try:
        with db.transaction():
            step = purge.locked_step(tenant_id, STEP, "backups")
            tenant = db.session.scalar(select(Tenant).where(Tenant.id == tenant_id).with_for_update()
                                       .execution_options(populate_existing=True))
            assert tenant is not None
            if step.status == "done" or tenant.backups_purged_at is not None:
                return {"tenant_id": tenant_id, "status": "already_purged"}
            holds.ensure_none(tenant_id)
            deleted = [snapshot.purged_at for snapshot in _deleted_snapshots(tenant_id)]
            now = clock.now()
            destroyed = keys.destroy_tenant_keys(tenant_id, actor=ACTOR)
            data = {"snapshots": len(deleted), "started_at": min([*deleted, now]).isoformat(),
                    "finished_at": clock.now().isoformat()}
            request_id = purge.latest_request(tenant_id)
            audit.record("backups.purged", actor=ACTOR, tenant_id=tenant_id, request_id=request_id, data=data)
            tenant.backups_purged_at = now
            step.status, step.finished_at, step.last_error = "done", now, None
            step.result = {**data, "keys": destroyed}
    except holds.HoldActive as held:
        with db.transaction():
            purge.locked_step(tenant_id, STEP, "backups").attempts -= 1  # refused, not tried
        log.info("backups_purge_held", tenant_id=tenant_id, holds=held.hold_ids)
        return {"tenant_id": tenant_id, "status": "held", "holds": held.hold_ids, "exception": str(held)}
    except Exception as error:  # the next sweep tries again
        message = f"{type(error).__name__}: {error}"[:2000]
        log.warning("backups_purge_failed", tenant_id=tenant_id, error=message[:300])
        with db.transaction():
            purge.locked_step(tenant_id, STEP, "backups").last_error = message
        return {"tenant_id": tenant_id, "status": "failed", "error": message}
    result: dict[str, Any] = {"tenant_id": tenant_id, "status": "purged", "keys": destroyed, **data}
    result["certificate"] = purge.certify(tenant_id, "backups", request_id)
    result["notified"] = _notify(tenant_id, request_id, result)
    log.info("backups_purged", tenant_id=tenant_id, keys=destroyed, snapshots=data["snapshots"])
    return result


def _deleted_snapshots(tenant_id: int, deleting: Collection[int] = ()) -> list[BackupSnapshot]:
    """The tenant's ``delete`` snapshots that are gone (in a plan, also those it would delete)."""
    return list(db.session.scalars(select(BackupSnapshot).join(backup_snapshot_tenants).where(
        backup_snapshot_tenants.c.tenant_id == tenant_id, BackupSnapshot.method == "delete",
        or_(BackupSnapshot.purged_at.is_not(None), BackupSnapshot.id.in_(deleting)))
        .execution_options(populate_existing=True)))


def _notify(tenant_id: int, request_id: int | None, result: dict[str, Any]) -> list[str]:
    certificate = result["certificate"]
    context = {"snapshots": result["snapshots"], "keys": result["keys"], "certificate": certificate}
    with db.transaction():
        recipients = purge.legal_recipients(tenant_id)  # the primary purge's recipients
        for recipient in recipients:
            notify.send("backups_purged", context, recipient=recipient, actor=ACTOR, tenant_id=tenant_id,
                        request_id=request_id, meta={"certificate": certificate})
    if not recipients:
        log.warning("backups_nobody_to_notify", tenant_id=tenant_id)
    return recipients
