"""The bundle: every requested format of every pulled dataset, the files, a PDF report,
README.txt, manifest.json and SHA256SUMS, in one ZIP laid out by category.

Deterministic: entries sorted by path, fixed timestamps, times taken from the
export row, so assembling the same export twice gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select

import audit
from compliance import db
from compliance.models import Export, ExportTask
from exporters import delivery
from exporters.bundle_text import readme, sample_rows
from exporters.formats import WRITERS
from exporters.formats.pdf import DatasetSummary, ReportData, write_report
from exporters.sources import Scope, registry
from exporters.staging import open_stream, staging_dir

ZIP_TIME = (1980, 1, 1, 0, 0, 0)
CHUNK = 1 << 20
WRITERS_FOR = {"csv": ("csv",), "json": ("jsonl", "json"), "parquet": ("parquet",)}
STORED = {"parquet", "pdf"}  # already compressed: deflating again only costs time
SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Built:
    path: Path
    sha256: str
    size: int
    manifest: dict[str, Any]


@dataclass
class Entry:
    path: str  # inside the ZIP
    disk: Path | None  # a file we wrote; None for a source file copied as it is
    record: dict[str, Any]  # its manifest line (sha256 and bytes filled in once written)
    opener: Any = None  # for source files: () -> BinaryIO


def build(export_id: int, storage_root: Path) -> Built:
    """Write the bundle for a fully pulled export, sealed for storage; return where it is."""
    export = db.session.get(Export, export_id)
    assert export is not None
    tenant = export.request.tenant
    scope = Scope(tenant=tenant.external_ref)
    work = storage_root / "build" / f"{export_id}-{secrets.token_hex(4)}"
    work.mkdir(parents=True)
    try:
        entries, summaries = _dataset_entries(export, scope, storage_root, work)
        if "pdf" in export.formats:
            entries.append(_report_entry(export, summaries, entries, work))
        zip_path = work / "bundle.zip"
        manifest = _write_zip(zip_path, export, entries)
        digest = hashlib.sha256()
        with open(zip_path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        # Only the sealed bundle leaves the private work dir: storage never sees plaintext.
        sealed = storage_root / "build" / f".{export_id}-{secrets.token_hex(4)}.obx"
        delivery.seal(zip_path, sealed, tenant_id=tenant.id, sha256=digest.hexdigest(), actor=audit.SYSTEM)
        return Built(sealed, digest.hexdigest(), zip_path.stat().st_size, manifest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _dataset_entries(export: Export, scope: Scope, storage_root: Path,
                     work: Path) -> tuple[list[Entry], list[DatasetSummary]]:
    tenant = export.request.tenant
    entries: list[Entry] = []
    summaries: list[DatasetSummary] = []
    staging = staging_dir(storage_root, export.id)
    copied: set[int] = set()
    tasks = db.session.scalars(select(ExportTask).where(ExportTask.export_id == export.id)
                               .execution_options(populate_existing=True))  # rows written by pulls
    for task in sorted(tasks, key=lambda t: (t.category, t.source.name, t.dataset)):
        folder = f"{task.category}/{_safe(task.source.name)}"
        stem = _safe(task.dataset)
        stream = staging / f"{task.id}.arrows"
        base = {"dataset": task.dataset, "category": task.category, "source": task.source.name}
        (work / folder).mkdir(parents=True, exist_ok=True)
        for requested in export.formats:
            for writer in WRITERS_FOR.get(requested, ()):
                for out in WRITERS[writer](open_stream(stream, tenant.id), work / folder, stem):
                    entries.append(Entry(f"{folder}/{out.name}", work / folder / out.name, {
                        **base, "format": out.format, "rows": out.rows, "bytes": out.bytes,
                        "sha256": out.sha256}))
        source = registry.get(task.source.kind)(task.source.config)
        if hasattr(source, "iter_files") and task.source_config_id not in copied:
            copied.add(task.source_config_id)  # a source's files once, however many datasets it has
            for relative, size in source.iter_files(scope):
                opener = _opener(source, scope, relative)
                entries.append(Entry(f"files/{_safe(task.source.name)}/{relative}", None, {
                    **base, "format": "file", "rows": None, "bytes": size, "sha256": None}, opener))
        columns, samples = sample_rows(open_stream(stream, tenant.id))
        summaries.append(DatasetSummary(name=task.dataset, category=task.category,
                                        source=task.source.name, rows=task.rows, bytes=task.bytes,
                                        sample_rows=samples, columns=columns))
    return entries, summaries


def _report_entry(export: Export, summaries: list[DatasetSummary], entries: list[Entry],
                  work: Path) -> Entry:
    tenant = export.request.tenant
    report = ReportData(
        account_name=tenant.name, tenant_ref=tenant.external_ref, region=tenant.region,
        request_id=export.request_id, export_id=export.id,
        generated_at=export.started_at or export.created_at, formats=list(export.formats),
        datasets=summaries,
        files=[(e.path, e.record["bytes"], e.record["sha256"]) for e in entries if e.disk is not None],
    )
    name, size, sha256 = write_report(work / "report.pdf", report)
    return Entry(name, work / name, {"dataset": None, "category": None, "source": None,
                                     "format": "pdf", "rows": None, "bytes": size, "sha256": sha256})


def _write_zip(path: Path, export: Export, entries: list[Entry]) -> dict[str, Any]:
    with zipfile.ZipFile(path, "w", allowZip64=True) as archive:
        for entry in sorted(entries, key=lambda e: e.path):
            compress = zipfile.ZIP_STORED if entry.record["format"] in STORED else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo(entry.path, ZIP_TIME)
            info.compress_type = compress
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as target, _source(entry) as handle:
                digest, size = hashlib.sha256(), 0
                while chunk := handle.read(CHUNK):
                    target.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            entry.record.update(bytes=size, sha256=digest.hexdigest())
        manifest = _manifest(export, entries)
        extra = {
            "README.txt": readme(export).encode(),
            "manifest.json": json.dumps(manifest, indent=2, ensure_ascii=False).encode() + b"\n",
        }
        sums = [(e.record["sha256"], e.path) for e in entries]
        sums += [(hashlib.sha256(body).hexdigest(), name) for name, body in extra.items()]
        extra["SHA256SUMS"] = "".join(f"{sha}  {name}\n" for sha, name in sorted(sums, key=lambda s: s[1])
                                      ).encode()
        for name, body in extra.items():
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            archive.writestr(info, body)
    return manifest


def _manifest(export: Export, entries: list[Entry]) -> dict[str, Any]:
    tenant = export.request.tenant
    return {
        "export_id": export.id,
        "request_id": export.request_id,
        "account": {"external_ref": tenant.external_ref, "name": tenant.name},
        "formats": list(export.formats),
        "created_at": export.created_at.isoformat(),
        "started_at": (export.started_at or export.created_at).isoformat(),
        "files": [{"path": e.path, **e.record} for e in sorted(entries, key=lambda e: e.path)],
    }


def _source(entry: Entry) -> Any:
    return open(entry.disk, "rb") if entry.disk is not None else entry.opener()


def _opener(source: Any, scope: Scope, relative: str) -> Any:
    def open_file() -> BinaryIO:
        return source.open_file(scope, relative)  # type: ignore[no-any-return]

    return open_file


def _safe(name: str) -> str:
    """A path segment that can't climb out of its folder or confuse an unzip tool."""
    cleaned = SAFE.sub("_", name).strip("._") or "unnamed"
    return cleaned[:120]

