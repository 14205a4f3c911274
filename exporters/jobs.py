"""The export's RQ jobs: start -> pull (one per source dataset) -> assemble.

The database is the truth: every job reads its row, does its part, and writes the
outcome; running any job twice leaves the same result. Redis only carries work,
and ``reconcile`` puts back what Redis lost.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import structlog
from rq import Retry, get_current_job
from rq.job import Dependency, Job
from sqlalchemy import select, update

import audit
from compliance import clock, config, db, queues, workflow
from compliance.models import Export, ExportTask, OffboardingRequest, SourceConfig
from exporters import bundle, delivery
from exporters.sources import Scope, registry
from exporters.staging import staging_dir, write_stream
from exporters.storage import LocalStorage, Storage, open_storage

QUEUE = "exports"
PULL_TIMEOUT = 6 * 3600
ASSEMBLE_TIMEOUT = 6 * 3600
PROGRESS_INTERVAL = 0.5  # seconds between progress writes while a pull streams
log = structlog.get_logger("offboard.exports")


def launch(request_id: int, formats: list[str] | None, *, actor: str) -> Export:
    """Start an export (by default in the formats the request asked for) and queue its first job."""
    export = create_export(request_id, formats, actor=actor)
    db.session.commit()  # the job must find the row; if enqueueing fails, the reconciler retries
    enqueue_start(export.id)
    return export


def create_export(request_id: int, formats: list[str] | None, *, actor: str) -> Export:
    """Move the request to exporting and record the export; the caller commits, then enqueues."""
    request = workflow.apply(request_id, "start_export", actor=actor)
    export = Export(request_id=request.id, formats=sorted(set(formats or request.formats)), status="pending",
                    created_by=actor)
    db.session.add(export)
    db.session.flush()
    audit.record("export.created", actor=actor, tenant_id=request.tenant_id, request_id=request.id,
                 subject=("export", export.id), data={"formats": export.formats})
    return export


def enqueue_start(export_id: int) -> None:
    job = queues.queue(QUEUE).enqueue(start_export, export_id, job_timeout=600)
    _set_export_job(export_id, job.id)


def start_export(export_id: int) -> None:
    """Plan one task per (source, dataset) of the tenant, then enqueue the pulls and assemble."""
    with db.transaction():
        export = _locked_export(export_id)
        if export.status != "pending":
            return  # already planned by an earlier run of this job
        tenant = export.request.tenant
        scope = Scope(tenant=tenant.external_ref)
        configs = db.session.scalars(select(SourceConfig).where(
            (SourceConfig.tenant_id == tenant.id) | SourceConfig.tenant_id.is_(None),
        ).order_by(SourceConfig.id)).all()
        planned: list[ExportTask] = []
        for source_config in configs:
            try:
                with registry.get(source_config.kind)(source_config.config) as source:
                    datasets = source.datasets(scope)
            except Exception as error:
                # Nothing is planned unless every source answered: a retry plans everything again.
                _fail_export(export, f"source {source_config.name}: cannot list datasets: {error}")
                return
            planned += [ExportTask(export_id=export.id, source_config_id=source_config.id,
                                   dataset=dataset.name, category=dataset.category,
                                   total_rows=dataset.total_rows) for dataset in datasets]
        db.session.add_all(planned)
        export.status, export.started_at = "running", clock.now()
    enqueue_pulls(export_id)


def enqueue_pulls(export_id: int, task_ids: list[int] | None = None) -> None:
    """Enqueue pulls (all queued tasks, or the given ones) and an assemble that waits for them."""
    query = select(ExportTask).where(ExportTask.export_id == export_id, ExportTask.status == "queued")
    if task_ids is not None:
        query = query.where(ExportTask.id.in_(task_ids))
    with db.transaction():
        tasks = db.session.scalars(query).all()
        intervals = list(config.current().pull_retry_intervals)
        retry = Retry(max=len(intervals), interval=intervals) if intervals else None
        jobs = [queues.queue(QUEUE).enqueue(pull, task.id, retry=retry, job_timeout=PULL_TIMEOUT)
                for task in tasks]
        for task, job in zip(tasks, jobs, strict=True):
            task.job_id, task.heartbeat_at = job.id, clock.now()
    enqueue_assemble(export_id, jobs)


def enqueue_assemble(export_id: int, after: list[Job]) -> None:
    depends = Dependency(jobs=after, allow_failure=True, enqueue_at_front=False) if after else None
    job = queues.queue(QUEUE).enqueue(assemble, export_id, depends_on=depends,
                                      job_timeout=ASSEMBLE_TIMEOUT, retry=Retry(max=2, interval=30))
    _set_export_job(export_id, job.id)


def pull(task_id: int) -> None:
    """Stream one dataset into its staging file, writing progress as it goes."""
    with db.transaction():
        task = db.session.scalar(select(ExportTask).where(ExportTask.id == task_id).with_for_update())
        if task is None or task.status in ("done", "failed"):
            return
        task.status, task.attempts, task.error = "running", task.attempts + 1, None
        task.started_at = task.heartbeat_at = clock.now()
        source_config, export = task.source, db.session.get(Export, task.export_id)
        assert export is not None
        scope = Scope(tenant=export.request.tenant.external_ref)
        tenant_id, dataset_name = export.request.tenant_id, task.dataset
        path = staging_dir(staging_root(), export.id) / f"{task.id}.arrows"
    last_write = time.monotonic()

    def progress(rows: int, size: int) -> None:
        nonlocal last_write
        if time.monotonic() - last_write >= PROGRESS_INTERVAL:
            _save_task(task_id, rows=rows, bytes=size, heartbeat_at=clock.now())
            last_write = time.monotonic()

    try:
        with registry.get(source_config.kind)(source_config.config) as source:
            dataset = next(d for d in source.datasets(scope) if d.name == dataset_name)
            batches = source.read(dataset, scope, config.current().batch_rows)
            rows, size = write_stream(path, dataset.schema, batches, progress, tenant_id=tenant_id,
                                      actor=audit.SYSTEM)
    except Exception as error:
        job = get_current_job()
        retrying = job is not None and (job.retries_left or 0) > 0
        _save_task(task_id, status="queued" if retrying else "failed",
                   error=f"{type(error).__name__}: {error}"[:2000], heartbeat_at=clock.now())
        log.warning("pull_failed", task_id=task_id, retrying=retrying, error=str(error)[:300])
        raise
    _save_task(task_id, status="done", rows=rows, bytes=size, finished_at=clock.now(),
               heartbeat_at=clock.now())


def assemble(export_id: int) -> None:
    """Once every pull is finished: fail the export in words, or build and publish the bundle."""
    work_root = staging_root()
    with db.transaction():
        export = _locked_export(export_id)
        if export.status in ("ready", "failed"):
            return
        tasks = list(export.tasks)
        if any(task.status in ("queued", "running") for task in tasks):
            return  # a pull is still due; its own assemble (or the reconciler) comes back
        if _request_status(export) != "exporting":
            _abandon(export)
            return
        failed = [task for task in tasks if task.status == "failed"]
        if failed:
            _fail_export(export, "; ".join(
                f"dataset {t.dataset} of source {t.source.name} failed: {t.error}" for t in failed))
            return
        export.status = "assembling"
    try:
        built = bundle.build(export_id, work_root)
    except Exception as error:
        job = get_current_job()
        if job is None or not job.retries_left:
            with db.transaction():
                _fail_export(_locked_export(export_id), f"assembling the bundle failed: {error}")
        raise
    name = f"exports/{export_id}/bundle.zip.obx"
    storage = bundle_storage()
    storage.publish(name, built.path)
    with db.transaction():  # read back once now, so the first customer download does not wait
        export = _locked_export(export_id)
        export.bundle_name = name
        delivery.open_bundle(export, built.sha256).verify()
    with db.transaction():
        export = _locked_export(export_id)
        if _request_status(export) != "exporting":
            storage.delete(name)  # published, but nobody may get it: the request moved on
            _abandon(export)
            return
        export.status, export.finished_at = "ready", clock.now()
        export.bundle_name, export.bundle_sha256, export.bundle_bytes = name, built.sha256, built.size
        export.manifest = built.manifest
        audit.record("export.ready", actor=audit.SYSTEM, tenant_id=export.request.tenant_id,
                     request_id=export.request_id, subject=("export", export_id),
                     data={"sha256": built.sha256, "bytes": built.size,
                           "files": len(built.manifest["files"])})
        workflow.apply(export.request_id, "mark_ready", actor=audit.SYSTEM)
    shutil.rmtree(staging_dir(work_root, export_id), ignore_errors=True)


def retry_failed(export_id: int, *, actor: str) -> Export:
    """Put only the failed tasks back in the queue; the caller commits, then calls ``resume``."""
    export = _locked_export(export_id)
    if export.status != "failed":
        raise workflow.WorkflowError(f"export {export_id} is {export.status}; only a failed export "
                                     "can be retried")
    workflow.apply(export.request_id, "start_export", actor=actor)
    retried = [task for task in export.tasks if task.status == "failed"]
    for task in retried:
        task.status, task.error, task.requeues = "queued", None, 0
    # No tasks means planning itself failed (a source could not list its datasets): plan again.
    export.status = "running" if export.tasks else "pending"
    export.error, export.finished_at = None, None
    audit.record("export.retried", actor=actor, tenant_id=export.request.tenant_id,
                 request_id=export.request_id, subject=("export", export_id),
                 data={"tasks": [task.id for task in retried]})
    return export


def rerun_failed(export_id: int, *, actor: str) -> Export:
    """Retry the failed parts of an export now: ``retry_failed``, commit, ``resume``."""
    export = retry_failed(export_id, actor=actor)
    db.session.commit()
    resume(export_id)
    return export


def resume(export_id: int) -> None:
    """Enqueue whatever the export's state calls for next (after a commit)."""
    export = db.session.get(Export, export_id)
    if export is not None and export.status == "pending":
        enqueue_start(export_id)
    elif export is not None and export.status == "running":
        enqueue_pulls(export_id)


def _request_status(export: Export) -> str:
    """The request's state as committed now (a person may have failed or withdrawn it meanwhile)."""
    request = db.session.get(OffboardingRequest, export.request_id, populate_existing=True,
                             with_for_update=True)
    assert request is not None
    return request.status


def _abandon(export: Export) -> None:
    """The request left 'exporting' (failed or withdrawn by a person): stop without a bundle."""
    reason = f"abandoned: the request is now {export.request.status}"
    export.status, export.error, export.finished_at = "failed", reason, clock.now()
    audit.record("export.failed", actor=audit.SYSTEM, tenant_id=export.request.tenant_id,
                 request_id=export.request_id, subject=("export", export.id), data={"reason": reason})


def _fail_export(export: Export, reason: str) -> None:
    export.status, export.error, export.finished_at = "failed", reason[:4000], clock.now()
    audit.record("export.failed", actor=audit.SYSTEM, tenant_id=export.request.tenant_id,
                 request_id=export.request_id, subject=("export", export.id), data={"reason": reason})
    if _request_status(export) == "exporting":
        workflow.apply(export.request_id, "fail", actor=audit.SYSTEM, reason=reason[:2000])


def _locked_export(export_id: int) -> Export:
    export = db.session.scalar(select(Export).where(Export.id == export_id).with_for_update()
                               .execution_options(populate_existing=True))
    if export is None:
        raise LookupError(f"export {export_id} not found")
    return export


def _save_task(task_id: int, **values: object) -> None:
    with db.transaction():
        db.session.execute(update(ExportTask).where(ExportTask.id == task_id).values(**values))


def _set_export_job(export_id: int, job_id: str) -> None:
    with db.transaction():
        db.session.execute(update(Export).where(Export.id == export_id).values(job_id=job_id))


def bundle_storage() -> Storage:
    """Where bundles are kept, as configured (a local directory by default)."""
    settings = config.current()
    return open_storage(settings.storage, local_root_default=settings.instance_dir / "bundles")


def staging_root() -> Path:
    """Staging and build stay local; with local storage, beside the bundles so publish is a rename."""
    storage = bundle_storage()
    return storage.root if isinstance(storage, LocalStorage) else config.current().instance_dir / "work"

