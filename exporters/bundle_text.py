"""The human words in a bundle: README.txt and the sample rows shown in the PDF report."""

from __future__ import annotations

import pyarrow as pa

from compliance.models import Export

SAMPLE_ROWS = 5
CELL_CHARS = 60

FOLDERS = {
    "account/": "users and account information",
    "content/": "what your team created",
    "usage/": "usage reports and analytics",
    "integrations/": "integrations and their configuration",
    "reports/": "reports the product generated for you",
    "files/": "attachments and uploads, exactly as they were stored",
}


def readme(export: Export) -> str:
    """What the customer reads first: where things are, how to open them, how to check them."""
    tenant = export.request.tenant
    folders = "\n".join(f"  {name:<15} {what}" for name, what in FOLDERS.items())
    started = export.started_at or export.created_at
    return f"""Data export for {tenant.name} ({tenant.external_ref})
Export {export.id} of offboarding request {export.request_id}, started {started:%Y-%m-%d %H:%M} UTC.

FOLDERS
{folders}
Inside each folder there is one sub-folder per system the data came from, and one
file per dataset and format. report.pdf summarises everything in this bundle.

FORMATS
  .csv      RFC 4180, UTF-8, header row. An empty field is a missing value (NULL);
            "" is an empty text. Large tables are split into .part-0001.csv, ... files.
  .jsonl    JSON Lines: one JSON object per row.
  .json     one JSON document per dataset: {{"dataset": ..., "rows": [...]}}.
  .parquet  Apache Parquet (zstd) with exact types. Open it with Python
            (pandas.read_parquet or pyarrow.parquet.read_table), DuckDB
            (SELECT * FROM 'file.parquet'), Spark, or most BI tools.

VERIFYING
  manifest.json lists every file with its dataset, source, format, rows, size and
  SHA-256. To check that nothing changed since the export was made, run in this folder:
      sha256sum -c SHA256SUMS          (Linux)
      shasum -a 256 -c SHA256SUMS      (macOS)
"""


def sample_rows(reader: pa.RecordBatchReader) -> tuple[list[str], list[dict[str, str]]]:
    """The first few rows as short text, for the report (reads only the first batch)."""
    columns = list(reader.schema.names)
    rows: list[dict[str, str]] = []
    for batch in reader:
        for row in batch.slice(0, SAMPLE_ROWS - len(rows)).to_pylist():
            rows.append({name: _cell(value) for name, value in row.items()})
        if len(rows) >= SAMPLE_ROWS:
            break
    return columns, rows


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"
