"""The bundle: every requested format of every pulled dataset, the files, a PDF report,
README.txt, manifest.json and SHA256SUMS, in one ZIP laid out by category, sealed for storage.

Deterministic: entries sorted by path, fixed timestamps, times taken from the
export row, compression cut at fixed offsets, so assembling the same export twice
gives the same ZIP (sealed apart: each sealed file has its own salt).

One pass per byte where it can be: the writers render each dataset straight into
ZIP member bodies (deflated on every core by ``zipstream.Deflater`` while the text is
rendered), hashing and CRC'ing the text on the way; JSON Lines and the JSON document
come from one rendering. The ZIP itself is never written in plaintext: it is streamed
once to hash it (the sealed file's header names its sha256) and once into the
encrypting writer. Only the sealed file leaves the private work dir, by the caller's
rename, so a crash publishes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import zlib
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
from sqlalchemy import select

import audit
from compliance import db
from compliance.models import Export, ExportTask
from exporters import crypto, delivery, keys
from exporters.bundle_text import readme, sample_rows
from exporters.formats import OutputFile, Storing, write_csv, write_jsonl_and_json, write_parquet
from exporters.formats.encoding import FileSet, release_memory, system_allocator
from exporters.sources import Scope, registry
from exporters.staging import open_stream, staging_dir
from exporters.zipstream import DEFLATED, STORED, Deflater, Member, archive_chunks, member_of_bytes

COPY = 1 << 20
DEFLATE_THREADS = 8  # at most: each Deflater keeps 2 chunks per thread in flight (~1.3 MiB each)
SAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Text is deflated into the ZIP as it is written; Parquet and PDF are stored (compressed already:
# deflating again only costs time). No fsync: work files are private and rebuilt after a crash.
UNDEFLATED = Storing(durable=False)


@dataclass(frozen=True)
class Built:
    path: Path
    sha256: str
    size: int
    manifest: dict[str, Any]


@dataclass
class Entry:
    path: str  # inside the ZIP
    record: dict[str, Any]  # its manifest line
    member: Member  # its data, ready for the ZIP
    rendered: bool = True  # a file we wrote (listed in the report), not a source's file


def build(export_id: int, storage_root: Path) -> Built:
    """Write the bundle for a fully pulled export, sealed for storage; return where it is."""
    export = db.session.get(Export, export_id)
    assert export is not None
    tenant = export.request.tenant
    scope = Scope(tenant=tenant.external_ref)
    work = storage_root / "build" / f"{export_id}-{secrets.token_hex(4)}"
    work.mkdir(parents=True)
    sealed = storage_root / "build" / f".{export_id}-{secrets.token_hex(4)}.obx"
    try:
        release_memory()  # what the pull left behind, when it ran in this process
        threads = max(2, min(os.cpu_count() or 2, DEFLATE_THREADS))
        with system_allocator(), ThreadPoolExecutor(threads, thread_name_prefix="deflate") as pool:
            deflated = Storing(compress=lambda file: Deflater(file, pool, inflight=2 * threads + 2),
                               durable=False)
            entries, summaries = _dataset_entries(export, scope, storage_root, work, deflated)
        if "pdf" in export.formats:
            entries.append(_report_entry(export, summaries, entries, work))
        entries.sort(key=lambda e: e.path)
        manifest = _manifest(export, entries)
        members = [entry.member for entry in entries] + _extras(export, entries, manifest)
        size, sha256 = _seal(members, sealed, tenant.id)
        return Built(sealed, sha256, size, manifest)
    except BaseException:
        sealed.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _dataset_entries(export: Export, scope: Scope, storage_root: Path, work: Path,
                     deflated: Storing) -> tuple[list[Entry], list[dict[str, Any]]]:
    """Every dataset's files, and what the report says about each dataset."""
    tenant = export.request.tenant
    entries: list[Entry] = []
    summaries: list[dict[str, Any]] = []
    staging = staging_dir(storage_root, export.id)
    copied: set[int] = set()
    tasks = db.session.scalars(select(ExportTask).where(ExportTask.export_id == export.id)
                               .execution_options(populate_existing=True))  # rows written by pulls
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet") as beside:
        for task in sorted(tasks, key=lambda t: (t.category, t.source.name, t.dataset)):
            folder = f"{task.category}/{_safe(task.source.name)}"
            stem = _safe(task.dataset)
            stream = staging / f"{task.id}.arrows"
            base = {"dataset": task.dataset, "category": task.category, "source": task.source.name}
            (work / folder).mkdir(parents=True, exist_ok=True)

            def reader(stream: Path = stream) -> pa.RecordBatchReader:
                return open_stream(stream, tenant.id)

            outputs = _write_formats(export.formats, reader, work / folder, stem, deflated, beside)
            entries += [_entry(f"{folder}/{out.name}", work / folder / out.name, out, base)
                        for out in outputs]
            with registry.get(task.source.kind)(task.source.config) as source:
                if hasattr(source, "iter_files") and task.source_config_id not in copied:
                    copied.add(task.source_config_id)  # a source's files once, however many datasets
                    entries += _copy_files(source, scope, task.source.name, base, work, deflated)
            columns, samples = sample_rows(reader())
            summaries.append({"name": task.dataset, "category": task.category,
                              "source": task.source.name, "rows": task.rows, "bytes": task.bytes,
                              "sample_rows": samples, "columns": columns})
    return entries, summaries


def _write_formats(formats: list[str], reader: Callable[[], pa.RecordBatchReader], dest: Path,
                   stem: str, deflated: Storing, beside: Executor) -> list[OutputFile]:
    """One dataset's files, in the order of ``formats``. Parquet runs on its own thread beside
    the CSV writer: both spend their time in pyarrow with the GIL released and Parquet has
    nothing to deflate, so the two cores share them (~0.35 s less at 1M rows, ~12 MB more).
    It is joined before the JSON writers, whose rendering and deflating take both cores."""
    outputs: dict[str, list[OutputFile]] = {}
    parquet: Future[list[OutputFile]] | None = None
    try:
        if "parquet" in formats:
            parquet = beside.submit(write_parquet, reader(), dest, stem, storing=UNDEFLATED)
        if "csv" in formats:
            outputs["csv"] = write_csv(reader(), dest, stem, storing=deflated)
        if parquet is not None:
            outputs["parquet"] = parquet.result()
        if "json" in formats:
            outputs["json"] = write_jsonl_and_json(reader(), dest, stem, storing=deflated)  # both, once
    finally:
        if parquet is not None:
            wait([parquet])  # never leave it writing into a work dir that is being removed
    return [out for requested in formats for out in outputs.get(requested, [])]


def _entry(path: str, disk: Path, out: OutputFile, base: dict[str, Any]) -> Entry:
    record = {**base, "format": out.format, "rows": out.rows, "bytes": out.bytes, "sha256": out.sha256}
    if out.compressed_bytes is None:
        member = Member(path, STORED, out.crc32, out.bytes, out.bytes, path=disk)
    else:
        member = Member(path, DEFLATED, out.crc32, out.bytes, out.compressed_bytes, path=disk)
    return Entry(path, record, member)


def _copy_files(source: Any, scope: Scope, source_name: str, base: dict[str, Any], work: Path,
                storing: Storing) -> list[Entry]:
    """A files source's files, deflated into the work dir as they are read (hashed on the way)."""
    folder = work / "files" / _safe(source_name)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (relative, _size) in enumerate(source.iter_files(scope)):
        handle: BinaryIO
        with FileSet(folder, storing) as files, source.open_file(scope, relative) as handle:
            sink = files.open(f"{index:08d}", "file")
            while chunk := handle.read(COPY):
                sink.write(chunk)
        [out] = files.outputs
        path = f"files/{_safe(source_name)}/{relative}"
        record = {**base, "format": "file", "rows": None, "bytes": out.bytes, "sha256": out.sha256}
        assert out.compressed_bytes is not None
        member = Member(path, DEFLATED, out.crc32, out.bytes, out.compressed_bytes, path=folder / out.name)
        entries.append(Entry(path, record, member, rendered=False))
    return entries


def _report_entry(export: Export, summaries: list[dict[str, Any]], entries: list[Entry],
                  work: Path) -> Entry:
    """report.pdf. fpdf2 and its fonts (~20 MB) are imported only now, when the writers' memory
    is gone, instead of with the worker."""
    from exporters.formats.pdf import DatasetSummary, ReportData, write_report

    tenant = export.request.tenant
    report = ReportData(
        account_name=tenant.name, tenant_ref=tenant.external_ref, region=tenant.region,
        request_id=export.request_id, export_id=export.id,
        generated_at=export.started_at or export.created_at, formats=list(export.formats),
        datasets=[DatasetSummary(**summary) for summary in summaries],
        files=[(e.path, e.record["bytes"], e.record["sha256"]) for e in entries if e.rendered],
    )
    name, size, sha256 = write_report(work / "report.pdf", report)
    crc = zlib.crc32((work / name).read_bytes())
    return Entry(name, {"dataset": None, "category": None, "source": None, "format": "pdf", "rows": None,
                        "bytes": size, "sha256": sha256},
                 Member(name, STORED, crc, size, size, path=work / name))


def _extras(export: Export, entries: list[Entry], manifest: dict[str, Any]) -> list[Member]:
    """README.txt, manifest.json and SHA256SUMS (which lists every other member), in that order."""
    extra = {
        "README.txt": readme(export).encode(),
        "manifest.json": json.dumps(manifest, indent=2, ensure_ascii=False).encode() + b"\n",
    }
    sums = [(e.record["sha256"], e.path) for e in entries]
    sums += [(hashlib.sha256(body).hexdigest(), name) for name, body in extra.items()]
    extra["SHA256SUMS"] = "".join(f"{sha}  {name}\n" for sha, name in sorted(sums, key=lambda s: s[1])
                                  ).encode()
    return [member_of_bytes(name, body, level=6) for name, body in extra.items()]


def _manifest(export: Export, entries: list[Entry]) -> dict[str, Any]:
    tenant = export.request.tenant
    return {
        "export_id": export.id,
        "request_id": export.request_id,
        "account": {"external_ref": tenant.external_ref, "name": tenant.name},
        "formats": list(export.formats),
        "created_at": export.created_at.isoformat(),
        "started_at": (export.started_at or export.created_at).isoformat(),
        "files": [{"path": e.path, **e.record} for e in entries],
    }


def _seal(members: list[Member], sealed: Path, tenant_id: int) -> tuple[int, str]:
    """Stream the ZIP twice: to hash it, then into the encrypting writer whose header names that
    hash (as ``delivery.seal`` writes it). The plaintext ZIP never touches the disk."""
    digest, size = hashlib.sha256(), 0
    for chunk in archive_chunks(members):
        digest.update(chunk)
        size += len(chunk)
    sha256 = digest.hexdigest()
    version, key = keys.data_key_for(tenant_id, actor=audit.SYSTEM)
    info = json.dumps({"v": delivery.INFO_VERSION, "tenant_id": tenant_id, "key_version": version,
                       "sha256": sha256}, sort_keys=True).encode()
    with open(sealed, "wb") as target:
        writer = crypto.EncryptingWriter(target, key, info)
        try:
            for chunk in archive_chunks(members):
                writer.write(chunk)
        except BaseException:
            writer.abandon()  # never sealed: the file can not decrypt as complete
            raise
        if writer.tell() != size:
            writer.abandon()
            raise RuntimeError("the ZIP changed between hashing and sealing")
        writer.close()
    return size, sha256


def _safe(name: str) -> str:
    """A path segment that can't climb out of its folder or confuse an unzip tool."""
    cleaned = SAFE.sub("_", name).strip("._") or "unnamed"
    return cleaned[:120]
