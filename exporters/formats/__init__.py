"""Streaming writers: a dataset's record batches become the files a customer opens.

Every writer consumes a ``pyarrow.RecordBatchReader`` chunk by chunk (memory bounded by the
chunk, never by the dataset), writes under a temporary name in ``dest_dir``, syncs and renames
into place, and returns what it wrote with the byte count and sha256 it computed on the way out.
The same input always gives byte-identical files.
"""

from __future__ import annotations

from collections.abc import Callable

from exporters.formats.csv import write_csv
from exporters.formats.encoding import PLAIN, OutputFile, Storing
from exporters.formats.jsonl import write_json, write_jsonl, write_jsonl_and_json
from exporters.formats.parquet import write_parquet

WRITERS: dict[str, Callable[..., list[OutputFile]]] = {
    "csv": write_csv,
    "jsonl": write_jsonl,
    "json": write_json,
    "parquet": write_parquet,
}

__all__ = ["PLAIN", "WRITERS", "OutputFile", "Storing", "write_csv", "write_json", "write_jsonl",
           "write_jsonl_and_json", "write_parquet"]
