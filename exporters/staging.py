"""Staging files: each pulled dataset as an Arrow IPC stream, encrypted, published by rename.

A pull writes ``<name>.tmp-<random>`` and renames it into place only when the
source is exhausted, so a crashed pull leaves no file that looks complete. The
file outlives its job (until assemble), so it is sealed with the tenant's data key.

Memory: the stream is written in messages of at most MESSAGE_BYTES whatever batch size
the source picked, and read back into Arrow buffers (``read_buffer``), never through
Python ``bytes``, so every reader's working set is a few small batches, not 15 MB ones.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa
from pyarrow import ipc

from exporters import crypto, keys
from exporters.formats.encoding import system_allocator

Progress = Callable[[int, int], None]  # rows so far, bytes so far
MESSAGE_BYTES = 1 << 20  # Arrow data per IPC message: small batches for every reader


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
        with system_allocator(), open(temporary, "wb") as raw:
            sealed = crypto.EncryptingWriter(raw, key, info)
            sink = pa.PythonFile(sealed, mode="w")
            with ipc.new_stream(sink, schema) as writer:
                for batch in batches:
                    for message in _messages(batch.cast(schema) if batch.schema != schema else batch):
                        writer.write_batch(message)
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


def _messages(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """The batch in slices of about MESSAGE_BYTES (one slice when it is small already)."""
    if batch.num_rows == 0:
        return
    step = max(1, batch.num_rows * MESSAGE_BYTES // max(1, batch.nbytes))
    for start in range(0, batch.num_rows, step):
        yield batch.slice(start, step)


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
    return ipc.open_stream(pa.PythonFile(_ArrowReader(read_at, size, key), mode="r"))


class _ArrowReader(crypto.DecryptingReader):
    """Decrypts straight into Arrow buffers: pyarrow calls ``read_buffer`` for message bodies,
    which then need no Python ``bytes`` (one copy instead of three)."""

    def read_buffer(self, size: int) -> pa.Buffer:
        size = max(0, min(size, self.plaintext_size - self.tell()))
        buffer = pa.allocate_buffer(size)
        done = self.readinto(memoryview(buffer))
        return buffer if done == size else buffer.slice(0, done)
