"""Staging files: each pulled dataset as an Arrow IPC stream, encrypted, published by rename.

A pull writes ``<name>.tmp-<random>`` and renames it into place only when the
source is exhausted, so a crashed pull leaves no file that looks complete. The
file outlives its job (until assemble), so it is sealed with the tenant's data key.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa
from pyarrow import ipc

from exporters import crypto, keys

Progress = Callable[[int, int], None]  # rows so far, bytes so far


def staging_dir(storage_root: Path, export_id: int) -> Path:
    return storage_root / "staging" / str(export_id)


def write_stream(path: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch], progress: Progress,
                 *, tenant_id: int, actor: str) -> tuple[int, int]:
    """Write ``batches`` to ``path`` atomically; report progress after every batch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    version, key = keys.data_key_for(tenant_id, actor=actor)
    info = json.dumps({"tenant_id": tenant_id, "key_version": version}).encode()
    rows = 0
    try:
        with open(temporary, "wb") as raw:
            sealed = crypto.EncryptingWriter(raw, key, info)
            sink = pa.PythonFile(sealed, mode="w")
            with ipc.new_stream(sink, schema) as writer:
                for batch in batches:
                    writer.write_batch(batch.cast(schema) if batch.schema != schema else batch)
                    rows += batch.num_rows
                    progress(rows, sealed.tell())
            size = sealed.tell()
            sink.close()  # writes the final segment: only now does the file decrypt as whole
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return rows, size


def open_stream(path: Path, tenant_id: int) -> pa.RecordBatchReader:
    """A reader over a published staging file, decrypting segment by segment as it goes."""
    handle = open(path, "rb")  # noqa: SIM115 -- lives as long as the reader that reads through it
    size = os.fstat(handle.fileno()).st_size

    def read_at(offset: int, length: int) -> bytes:
        return os.pread(handle.fileno(), length, offset)

    info = json.loads(crypto.read_info(read_at))
    if info.get("tenant_id") != tenant_id:
        raise crypto.DecryptionError(f"staging file {path.name} belongs to another tenant")
    key = keys.unwrap(tenant_id, int(info["key_version"]))
    return ipc.open_stream(pa.PythonFile(crypto.DecryptingReader(read_at, size, key), mode="r"))
