"""The primary purge: every system holding a closed tenant's data emptied, verified, and proved.

A tenant's purge is a list of systems (each source in its scope, the download links, the bundle
store, staging), each one ``PurgeStep`` row. A step is claimed and counted in one transaction,
then done in the next: the legal-hold check, the deletion, the re-count that proves it and the
audit event commit together, so a worker killed at any line leaves either a done step with its
one event, or a pending step the next run does again. A done step is never done twice.

The certificate (``audit.certificates``) is built only from the events written here, so their
names and data are a contract: see ``_EVENTS`` and ``_erase_source``.

Notice of the finished purge goes to legal: every enabled user with the ``legal`` role, or, when
there is none, the owner of the tenant's latest offboarding request (the CSM who ran it).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from rq.job import JobStatus
from sqlalchemy import func, or_, select

import audit
from audit import certificates
from compliance import clock, config, db, feedback, notify, queues
from compliance.models import (
    DownloadLink,
    Export,
    OffboardingRequest,
    PurgeStep,
    RetentionRun,
    SourceConfig,
    Tenant,
    User,
)
from exporters import jobs, links
from exporters.sources import Scope, registry
from exporters.staging import staging_dir
from retention import holds, policy

QUEUE = "retention"
ACTOR = "system:purge"
JOB_TIMEOUT = 6 * 3600
_LIVE = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED)
# What a done / finally failed step writes; the certificate reads the source and store events.
_EVENTS = {"source": ("purge.source_erased", "purge.source_failed"),
           "links": ("purge.links_revoked", "purge.step_failed"),
           "bundle_store": ("purge.bundles_deleted", "purge.step_failed"),
           "staging": ("purge.staging_deleted", "purge.step_failed")}
log = structlog.get_logger("offboard.retention")


class StepFailed(Exception):
    """A system could not be emptied (or verified empty) this attempt."""


@dataclass(frozen=True)
class SourceRef:
    """What a purge needs of a SourceConfig, detached from any session."""

    id: int
    name: str
    kind: str
    config: dict[str, Any]


# --- the job -----------------------------------------------------------------------------------


def purge_tenant(tenant_id: int, run_id: int | None = None) -> dict[str, Any]:
    """RQ job: purge every primary system of the tenant, then certify and notify.

    Safe to run any number of times and to kill anywhere: done steps are skipped, a step that
    died is done again. A legal hold, found here or at any step, stops it with nothing deleted.
    """
    result = _purge(tenant_id)
    if run_id is not None:
        _report(run_id, result)
    return result


def _purge(tenant_id: int) -> dict[str, Any]:
    with db.transaction():
        tenant = db.session.get(Tenant, tenant_id, populate_existing=True)
        if tenant is None:
            return {"tenant_id": tenant_id, "status": "not_found"}
        if tenant.purged_at is not None:
            return {"tenant_id": tenant_id, "status": "already_purged",
                    "purged_at": tenant.purged_at.isoformat()}
        blocking = holds.active(tenant_id)
        if blocking:
            return _held(tenant_id, [hold.id for hold in blocking])
        scope, request_id, sources = Scope(tenant=tenant.external_ref), latest_request(tenant_id), [
            SourceRef(s.id, s.name, s.kind, dict(s.config)) for s in _sources(tenant_id)]
    systems: dict[str, dict[str, Any]] = {}
    try:
        for source in sources:
            systems[f"source:{source.id}"] = _step(tenant_id, f"source:{source.id}", "source",
                                                   lambda source=source: _erase_source(source, scope),
                                                   request_id, source)
        for system, work in (("links", _revoke_links), ("bundle_store", _delete_bundles),
                             ("staging", _delete_staging)):
            systems[system] = _step(tenant_id, system, system, lambda work=work: work(tenant_id), request_id)
    except holds.HoldActive as held:
        return _held(tenant_id, held.hold_ids, systems)
    return _complete(tenant_id, request_id, systems)


def _held(tenant_id: int, hold_ids: list[int], systems: dict[str, Any] | None = None) -> dict[str, Any]:
    log.info("purge_held", tenant_id=tenant_id, holds=hold_ids)
    return {"tenant_id": tenant_id, "status": "held", "holds": hold_ids, "systems": systems or {}}


# --- one system, one step ----------------------------------------------------------------------


def _step(tenant_id: int, system: str, family: str, work: Callable[[], dict[str, Any]],
          request_id: int | None, source: SourceRef | None = None) -> dict[str, Any]:
    """Do one system's part, retrying with the connector backoff; its summary."""
    intervals = list(config.current().pull_retry_intervals)
    while True:
        step = _claim(tenant_id, system)
        if step.status != "pending":
            return _summary(step)
        if step.attempts > len(intervals) + 1:  # the worker died during every allowed attempt
            error = step.last_error or "the worker stopped during every attempt"
            return _summary(_record_failure(tenant_id, system, family, error, True, request_id, source))
        final = step.attempts > len(intervals)
        try:
            with db.transaction():
                step = locked_step(tenant_id, system)
                if step.status == "done":  # another run finished it meanwhile
                    return _summary(step)
                holds.ensure_none(tenant_id)  # a hold placed a second ago still wins; errors propagate
                try:
                    data = work()
                except StepFailed:
                    raise
                except Exception as error:
                    raise StepFailed(f"{type(error).__name__}: {error}"[:2000]) from error
                step.status, step.result, step.finished_at, step.last_error = "done", data, clock.now(), None
                audit.record(_EVENTS[family][0], actor=ACTOR, tenant_id=tenant_id, request_id=request_id,
                             data={**_identity(source), **data})
                return _summary(step)
        except holds.HoldActive:
            _uncount(tenant_id, system)  # refused, not tried: the hold must not use up the attempts
            raise
        except StepFailed as error:
            log.warning("purge_step_failed", tenant_id=tenant_id, system=system, error=str(error)[:300])
            step = _record_failure(tenant_id, system, family, str(error), final, request_id, source)
            if step.status == "failed":
                return _summary(step)
            time.sleep(intervals[min(step.attempts, len(intervals)) - 1])


def _claim(tenant_id: int, system: str) -> PurgeStep:
    """Count an attempt before making it, so a source that kills the worker still runs out of
    tries; a step that failed in an earlier run starts a fresh round."""
    with db.transaction():
        step = locked_step(tenant_id, system)
        if step.status == "failed":
            step.status, step.attempts, step.last_error, step.finished_at = "pending", 0, None, None
        if step.status == "pending":
            step.attempts += 1
            step.started_at = step.started_at or clock.now()
        return step


def _uncount(tenant_id: int, system: str) -> None:
    with db.transaction():
        step = locked_step(tenant_id, system)
        step.attempts = max(0, step.attempts - 1)


def locked_step(tenant_id: int, system: str, kind: str = "primary") -> PurgeStep:
    """The tenant's step for ``system`` in a ``kind`` of purge, made on first use, locked until
    the transaction ends (so two runs never do one step at once)."""
    query = (select(PurgeStep).where(PurgeStep.tenant_id == tenant_id, PurgeStep.kind == kind,
                                     PurgeStep.system == system)
             .with_for_update().execution_options(populate_existing=True))
    step = db.session.scalar(query)
    if step is None:
        db.session.add(PurgeStep(tenant_id=tenant_id, kind=kind, system=system, status="pending",
                                 attempts=0))
        db.session.flush()
        step = db.session.scalar(query)
    assert step is not None
    return step


def _record_failure(tenant_id: int, system: str, family: str, error: str, final: bool,
                    request_id: int | None, source: SourceRef | None) -> PurgeStep:
    with db.transaction():
        step = locked_step(tenant_id, system)
        step.last_error = error
        if final:
            step.status, step.finished_at = "failed", clock.now()
            data = {**_identity(source), "error": error, "attempts": step.attempts}
            if source is None:
                data["system"] = system
            audit.record(_EVENTS[family][1], actor=ACTOR, tenant_id=tenant_id, request_id=request_id,
                         data=data)
        return step


def _identity(source: SourceRef | None) -> dict[str, Any]:
    return {"source_id": source.id, "source": source.name, "kind": source.kind} if source else {}


def _summary(step: PurgeStep) -> dict[str, Any]:
    return {"status": step.status, "attempts": step.attempts, "error": step.last_error,
            "result": step.result}


# --- what each system's deletion is -----------------------------------------------------------


def _erase_source(source: SourceRef, scope: Scope) -> dict[str, Any]:
    """Erase, then count again: only the re-count proves the system empty."""
    with registry.get(source.kind)(source.config) as connector:
        categories = sorted({dataset.category for dataset in connector.datasets(scope)})
        started = clock.now().isoformat()
        removed = connector.erase(scope)
        remaining = connector.count(scope)
    left = {dataset: count for dataset, count in remaining.items() if count}
    if left:
        raise StepFailed(f"{sum(left.values())} records remain after the erase: {left}")
    return {"categories": categories, "started_at": started, "finished_at": clock.now().isoformat(),
            "removed": removed, "remaining": remaining}


def _revoke_links(tenant_id: int) -> dict[str, Any]:
    """First of the stores: no link may start a download of a bundle being deleted."""
    revoked = 0
    for link in db.session.scalars(select(DownloadLink).join(Export).join(OffboardingRequest).where(
            OffboardingRequest.tenant_id == tenant_id, DownloadLink.revoked_at.is_(None))):
        links.revoke(link, actor=ACTOR)
        revoked += 1
    return {"links": revoked}


def _delete_bundles(tenant_id: int) -> dict[str, Any]:
    storage, started = jobs.bundle_storage(), clock.now().isoformat()
    objects = size = 0
    for export in _exports(tenant_id):
        if export.bundle_name and storage.exists(export.bundle_name):
            size += storage.size(export.bundle_name)
            storage.delete(export.bundle_name)
            objects += 1
        objects += storage.delete_prefix(f"exports/{export.id}")
        if export.bundle_name and storage.exists(export.bundle_name):
            raise StepFailed(f"bundle {export.bundle_name} is still in {storage!r} after its deletion")
    return {"objects": objects, "bytes": size, "started_at": started, "finished_at": clock.now().isoformat()}


def _delete_staging(tenant_id: int) -> dict[str, Any]:
    started, files = clock.now().isoformat(), 0
    for export in _exports(tenant_id):
        folder = staging_dir(jobs.staging_root(), export.id)
        if folder.exists():
            files += sum(1 for item in folder.rglob("*") if item.is_file())
            shutil.rmtree(folder)
        if folder.exists():
            raise StepFailed(f"staging folder {folder} is still there after its deletion")
    return {"files": files, "started_at": started, "finished_at": clock.now().isoformat()}


# --- the end of a purge --------------------------------------------------------------------------


def _complete(tenant_id: int, request_id: int | None, systems: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mark the tenant purged (only when every system is verified empty) and write the one
    purge.completed; then, committed, certify and notify (their failure undoes nothing)."""
    with db.transaction():
        tenant = db.session.scalar(select(Tenant).where(Tenant.id == tenant_id).with_for_update()
                                   .execution_options(populate_existing=True))
        assert tenant is not None
        if tenant.purged_at is not None:  # a concurrent run got here first
            return {"tenant_id": tenant_id, "status": "already_purged", "systems": systems}
        verified = all(entry["status"] == "done" for entry in systems.values())
        if verified:
            tenant.purged_at = clock.now()
            feedback.anonymise(tenant_id)  # the exit survey keeps only its anonymous answers
        audit.record("purge.completed", actor=ACTOR, tenant_id=tenant_id, request_id=request_id,
                     data={"kind": "primary"})
    result: dict[str, Any] = {"tenant_id": tenant_id, "status": "purged" if verified else "failed",
                              "systems": systems}
    result["certificate"] = certify(tenant_id, "primary", request_id)
    result["notified"] = _notify(tenant_id, request_id, result)
    log.info("purge_completed", tenant_id=tenant_id, status=result["status"])
    return result


def certify(tenant_id: int, kind: str, request_id: int | None) -> dict[str, Any]:
    """Issue the deletion certificate of a finished purge (``kind`` primary or backups): its id
    and status, or what went wrong; the purge stands either way."""
    try:
        row = certificates.issue(tenant_id, kind, actor=ACTOR, request_id=request_id)
    except Exception as error:  # the certificate can be issued again later, through the API
        db.session.rollback()
        log.error("certificate_failed", kind=kind, tenant_id=tenant_id, error=str(error)[:300])
        return {"error": f"{type(error).__name__}: {error}"[:2000]}
    return {"id": row.id, "status": row.status}


def _notify(tenant_id: int, request_id: int | None, result: dict[str, Any]) -> list[str]:
    certificate = result["certificate"]
    context = {"status": result["status"], "systems": result["systems"], "certificate": certificate}
    with db.transaction():
        recipients = legal_recipients(tenant_id)
        for recipient in recipients:
            notify.send("purge_completed", context, recipient=recipient, actor=ACTOR, tenant_id=tenant_id,
                        request_id=request_id, meta={"certificate": certificate})
    if not recipients:
        log.warning("purge_nobody_to_notify", tenant_id=tenant_id)
    return recipients


def legal_recipients(tenant_id: int) -> list[str]:
    """Every enabled legal user; else the owner of the tenant's latest request."""
    legal = list(db.session.scalars(select(User.email).where(User.role == "legal", User.disabled_at.is_(None))
                                    .order_by(User.email)))
    if legal:
        return legal
    owner = db.session.scalar(select(OffboardingRequest.owner).where(
        OffboardingRequest.tenant_id == tenant_id, OffboardingRequest.owner.is_not(None))
        .order_by(OffboardingRequest.id.desc()).limit(1))
    return [owner] if owner else []


def _report(run_id: int, result: dict[str, Any]) -> None:
    """Append to the run's report; the run is done once every tenant it enqueued has answered."""
    with db.transaction():
        row = db.session.scalar(select(RetentionRun).where(RetentionRun.id == run_id).with_for_update()
                                .execution_options(populate_existing=True))
        if row is None:
            return
        report = dict(row.report or {})
        report["tenants"] = [*report.get("tenants", []), result]
        row.report = report
        if "enqueued" in report and _answered(report) and row.status == "running":
            row.status, row.finished_at = "done", clock.now()


def _answered(report: dict[str, Any]) -> bool:
    """Whether every tenant the run enqueued has reported back."""
    return set(report.get("enqueued", [])) <= {entry["tenant_id"] for entry in report.get("tenants", [])}


# --- planning and sweeping -----------------------------------------------------------------------


def plan_tenant(tenant_id: int) -> dict[str, Any]:
    """What a purge would delete now, asking every source to count and none to erase."""
    tenant = db.session.get(Tenant, tenant_id)
    if tenant is None:
        raise LookupError(f"tenant {tenant_id} not found")
    scope, storage, exports = Scope(tenant=tenant.external_ref), jobs.bundle_storage(), _exports(tenant_id)
    bundles = [e.bundle_name for e in exports if e.bundle_name and storage.exists(e.bundle_name)]
    staged = [staging_dir(jobs.staging_root(), e.id) for e in exports]
    due = policy.schedule_of(tenant).primary_due
    return {
        "tenant_id": tenant_id, "external_ref": tenant.external_ref,
        "due_at": due.isoformat() if due else None,
        "purged_at": tenant.purged_at.isoformat() if tenant.purged_at else None,
        "holds": [{"hold_id": h.id, "matter": h.matter, "placed_at": h.placed_at.isoformat()}
                  for h in holds.active(tenant_id)],
        "sources": [_plan_source(s, scope) for s in _sources(tenant_id)],
        "bundles": {"count": len(bundles), "bytes": sum(storage.size(name) for name in bundles)},
        "staging": {"files": sum(1 for d in staged if d.exists() for f in d.rglob("*") if f.is_file())},
        "links": {"active": db.session.scalar(select(func.count()).select_from(DownloadLink).join(Export)
                                              .where(Export.id.in_([e.id for e in exports]),
                                                     DownloadLink.revoked_at.is_(None)))},
    }


def _plan_source(source: SourceConfig, scope: Scope) -> dict[str, Any]:
    entry: dict[str, Any] = {"source_id": source.id, "source": source.name, "kind": source.kind}
    try:
        with registry.get(source.kind)(source.config) as connector:
            return {**entry, "counts": connector.count(scope)}
    except Exception as error:  # the plan says which source would fail, and goes on
        return {**entry, "error": f"{type(error).__name__}: {error}"[:500]}


def run(*, as_of: datetime | None = None, tenant_id: int | None = None, dry_run: bool = False,
        actor: str = "system", enqueue: bool = True) -> RetentionRun:
    """One primary retention run over the tenants due at ``as_of``, recorded with its report (a run
    of kind ``backups`` is ``retention.backups.run``).

    A real run never looks ahead: deleting what is due only tomorrow is the one mistake a
    purge cannot undo, so ``as_of`` later than now is refused unless it is a dry run.
    """
    now = clock.now()
    as_of = as_of or now
    if as_of > now and not dry_run:
        raise ValueError(f"a real purge cannot run as of {as_of.isoformat()}, later than now")
    with db.transaction():
        due = [t for t in policy.due_for_primary_purge(as_of) if tenant_id is None or t == tenant_id]
        held = [t for t in due if holds.active(t)]
        row = RetentionRun(kind="primary", as_of=as_of, dry_run=dry_run, tenant_id=tenant_id,
                           requested_by=actor, status="running", started_at=now,
                           report={"due": due, "held": held})
        db.session.add(row)
    if dry_run:
        return _finish(row, plans=[plan_tenant(t) for t in due])
    targets = [t for t in due if t not in held]  # the job checks again: a hold may come meanwhile
    if enqueue:
        enqueued = [t for t in targets if _enqueue(t, row.id)]
        return _finish(row, enqueued=enqueued, done=False)
    return _finish(row, tenants=[purge_tenant(t) for t in targets])


def _finish(row: RetentionRun, *, done: bool = True, **report: Any) -> RetentionRun:
    with db.transaction():
        row = db.session.get(RetentionRun, row.id, with_for_update=True, populate_existing=True) or row
        row.report = {**(row.report or {}), **report}
        if done or _answered(row.report):
            row.status, row.finished_at = "done", clock.now()
    return row


def _enqueue(tenant_id: int, run_id: int) -> bool:
    """One job per tenant and kind: a doubled sweep finds it queued or running and adds none."""
    job_id = f"purge-primary-{tenant_id}"
    queue = queues.queue(QUEUE)
    existing = queue.fetch_job(job_id)
    if existing is not None and existing.get_status(refresh=True) in _LIVE:
        return False
    if existing is not None:
        existing.delete()
    queue.enqueue(purge_tenant, tenant_id, run_id, job_id=job_id, job_timeout=JOB_TIMEOUT,
                  result_ttl=7 * 86400, failure_ttl=30 * 86400)
    return True


def scheduled_sweep() -> int:
    """The daily cron job: enqueue the purge of every due, unheld tenant; how many were enqueued."""
    row = run(actor=audit.SYSTEM)
    return len((row.report or {}).get("enqueued", []))


# --- shared lookups ----------------------------------------------------------------------------


def _sources(tenant_id: int) -> list[SourceConfig]:
    """The tenant's own sources and every shared one: the scope the certificate expects."""
    mine = or_(SourceConfig.tenant_id == tenant_id, SourceConfig.tenant_id.is_(None))
    return list(db.session.scalars(select(SourceConfig).where(mine).order_by(SourceConfig.id)))


def _exports(tenant_id: int) -> list[Export]:
    return list(db.session.scalars(select(Export).join(OffboardingRequest)
                                   .where(OffboardingRequest.tenant_id == tenant_id).order_by(Export.id)))


def latest_request(tenant_id: int) -> int | None:
    return db.session.scalar(select(OffboardingRequest.id).where(OffboardingRequest.tenant_id == tenant_id)
                             .order_by(OffboardingRequest.id.desc()).limit(1))
