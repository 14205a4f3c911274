"""The human-readable PDF report that travels in every bundle (fpdf2).

It tells a departing customer, in plain words, what the bundle holds, shows a few rows
of each dataset, states how long the data is kept, and lists every file's sha256.

Fonts, pages and tables come from ``compliance/typeset.py``: DejaVu Sans / Sans Mono from
``font_dir`` or a usual system font directory, else the core fonts with every non-latin-1
character as ``?``; characters DejaVu lacks (CJK, emoji, ...) become ``?`` too, and joined
scripts such as Arabic show their letters unshaped.

Output is deterministic: the creation date is ``generated_at`` and fpdf2 derives the
file /ID from the content, so the same data and the same font files give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from compliance.typeset import Document
from exporters.sources.base import CATEGORIES

SAMPLE_ROWS, SAMPLE_COLUMNS, CELL_CHARS = 5, 6, 40
CATEGORY_TITLES = {"account": "Account", "content": "Content", "usage": "Usage",
                   "integrations": "Integrations and configuration", "reports": "Reports"}


@dataclass(frozen=True)
class DatasetSummary:
    name: str
    category: str
    source: str
    rows: int
    bytes: int
    sample_rows: list[dict[str, str]] = field(default_factory=list)  # already rendered as text
    columns: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReportData:
    account_name: str
    tenant_ref: str
    region: str
    request_id: str
    export_id: str
    generated_at: datetime  # aware; also the PDF's creation date
    formats: list[str]
    datasets: list[DatasetSummary]
    files: list[tuple[str, int, str]]  # (path in the bundle, size in bytes, sha256 hex)
    primary_days: int = 90
    backup_months: int = 12


class ReportFile(NamedTuple):
    name: str
    bytes: int
    sha256: str


def retention_text(primary_days: int, backup_months: int) -> str:
    """The retention promise in plain words (tests and the admin pages can quote it)."""
    days = "day" if primary_days == 1 else "days"
    months = "month" if backup_months == 1 else "months"
    return (f"Your data is kept for {primary_days} {days} after your account closes, then "
            "permanently deleted from every system that holds it. Backups that contain it "
            f"are purged within {backup_months} {months}.")


def write_report(dest: Path, report: ReportData, *, font_dir: Path | None = None) -> ReportFile:
    """Render the report to ``dest`` atomically (temp name, then rename); its name, size, sha256."""
    if report.generated_at.tzinfo is None:
        raise ValueError("generated_at must be timezone-aware")
    data = bytes(_Report(report, font_dir).render())
    temporary = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, dest)
    finally:
        temporary.unlink(missing_ok=True)
    return ReportFile(dest.name, len(data), hashlib.sha256(data).hexdigest())


class _Report(Document):
    """One report; the fonts decide which characters survive (see ``compliance/typeset.py``)."""

    heading_size = 15

    def __init__(self, report: ReportData, font_dir: Path | None) -> None:
        super().__init__(f"Data export for {report.account_name}", report.generated_at,
                         f"Export {report.export_id}", font_dir)
        self.report = report

    def render(self) -> bytearray:
        self._title_page()
        self._contents()
        self._samples()
        self._retention()
        self._checksums()
        return self.output()

    # -- sections ------------------------------------------------------------------------

    def _title_page(self) -> None:
        report = self.report
        self.add_page()
        self.ln(40)
        self.heading("Your data export", 26)
        self.heading(report.account_name, 18)
        self.paragraph(f"Prepared on {_date(report.generated_at)}", 12)
        self.ln(8)
        details = [("Account reference", report.tenant_ref), ("Region", report.region),
                   ("Request", report.request_id), ("Export", report.export_id),
                   ("Formats", ", ".join(report.formats) or "-"),
                   ("Generated at", report.generated_at.astimezone(UTC).isoformat())]
        self._table(None, [[label, value] for label, value in details], (35, 65))
        self.ln(8)
        self.paragraph("This report describes the bundle it came with: what it holds, a few "
                       "rows of each dataset, how long we keep your data, and the checksum of "
                       "every file so you can verify that nothing was altered.")

    def _contents(self) -> None:
        datasets = self.report.datasets
        self.add_page()
        self.heading("What this bundle holds")
        rows, size = sum(d.rows for d in datasets), sum(d.bytes for d in datasets)
        self.paragraph(f"{len(datasets)} datasets, {rows:,} rows, {_size(size)} in total.")
        order = {category: index for index, category in enumerate(CATEGORIES)}
        categories = sorted({d.category for d in datasets}, key=lambda c: (order.get(c, 99), c))
        for category in categories:
            self.heading(CATEGORY_TITLES.get(category, category.title()), 12)
            members = [d for d in datasets if d.category == category]
            self._table(["Dataset", "Source", "Rows", "Size"],
                        [[d.name, d.source, f"{d.rows:,}", _size(d.bytes)] for d in members],
                        (40, 30, 15, 15))
            self.ln(4)

    def _samples(self) -> None:
        self.add_page()
        self.heading("Sample rows")
        self.paragraph(f"Up to {SAMPLE_ROWS} rows of each dataset, long values shortened. The "
                       "files in the bundle hold every row in full.")
        for dataset in self.report.datasets:
            self.heading(f"{dataset.name} ({dataset.rows:,} rows)", 11)
            samples = dataset.sample_rows[:SAMPLE_ROWS]
            columns = dataset.columns or (list(samples[0]) if samples else [])
            if not samples or not columns:
                self.paragraph("No rows.", 9)
                continue
            shown = columns[:SAMPLE_COLUMNS]
            if len(columns) > len(shown):
                self.paragraph(f"Showing {len(shown)} of {len(columns)} columns.", 8)
            cells = [[_cut(row.get(column, "")) for column in shown]
                     for row in samples]
            self._table([_cut(c) for c in shown], cells, [1] * len(shown), size=7)
            self.ln(4)

    def _retention(self) -> None:
        self.add_page()
        self.heading("Retention")
        self.paragraph(retention_text(self.report.primary_days, self.report.backup_months), 11)
        self.paragraph("A legal hold, when one applies, postpones deletion until it is released. "
                       "Every deletion is recorded and confirmed in a signed deletion certificate.")

    def _checksums(self) -> None:
        self.add_page()
        self.heading("Checksums")
        self.paragraph("The SHA-256 of every file in the bundle. To check a file, compute its "
                       "SHA-256 (for example `sha256sum FILE`) and compare.")
        rows = [[path, _size(size), sha] for path, size, sha in self.report.files]
        self._table(["File", "Size", "SHA-256"], rows, (62, 16, 102), size=7, mono_last=True)


def _cut(value: str) -> str:
    value = " ".join(str(value).split())
    return value if len(value) <= CELL_CHARS else value[:CELL_CHARS - 1] + "…"


def _size(count: int) -> str:
    """Bytes for people: 999 B, 1.2 KB, ... (binary multiples, one decimal)."""
    if count < 1024:
        return f"{count} B"
    value, unit = float(count), "B"
    for unit in ("KB", "MB", "GB", "TB"):  # noqa: B007 - the last unit reached is the one shown
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"


def _date(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return f"{utc.day} {utc:%B %Y}, {utc:%H:%M} UTC"
