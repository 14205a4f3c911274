"""Staging files: each pulled dataset as an Arrow IPC stream, published by rename.

A pull writes ``<name>.tmp-<random>`` and renames it into place only when the
source is exhausted, so a crashed pull leaves no file that looks complete.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa
from pyarrow import ipc

Progress = Callable[[int, int], None]  # rows so far, bytes so far


def staging_dir(storage_root: Path, export_id: int) -> Path:
    return storage_root / "staging" / str(export_id)


def write_stream(path: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch],
                 progress: Progress) -> tuple[int, int]:
    """Write ``batches`` to ``path`` atomically; report progress after every batch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    rows = 0
    try:
        with pa.OSFile(str(temporary), "wb") as sink, ipc.new_stream(sink, schema) as writer:
            for batch in batches:
                writer.write_batch(batch.cast(schema) if batch.schema != schema else batch)
                rows += batch.num_rows
                progress(rows, sink.tell())
        size = temporary.stat().st_size
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return rows, size


def open_stream(path: Path) -> pa.RecordBatchReader:
    """A reader over a published staging file (memory-mapped: nothing is loaded at once)."""
    return ipc.open_stream(pa.memory_map(str(path), "r"))
