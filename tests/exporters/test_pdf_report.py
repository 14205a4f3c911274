"""The bundle's PDF report, read back with pypdf (and poppler's pdftotext when installed)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pypdf import PdfReader

from compliance import typeset
from exporters.formats.pdf import DatasetSummary, ReportData, retention_text, write_report

GENERATED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RETENTION = ("Your data is kept for 90 days after your account closes, then permanently deleted "
             "from every system that holds it. Backups that contain it are purged within 12 "
             "months.")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def dataset(name: str, category: str = "content", rows: int = 1234, samples: int = 7,
            columns: int = 3) -> DatasetSummary:
    names = [f"col_{c}" for c in range(columns)]
    sample = [{n: f"{name}-{r}-{n}" for n in names} for r in range(samples)]
    return DatasetSummary(name, category, "app-db", rows, rows * 100, sample, names)


def report(**changes: object) -> ReportData:
    base = ReportData(
        account_name="Acme Widgets GmbH", tenant_ref="ext-4711", region="eu-central-1",
        request_id="req-0001", export_id="exp-0001", generated_at=GENERATED,
        formats=["csv", "jsonl", "parquet"],
        datasets=[dataset("users", "account", 42), dataset("documents", "content", 1_234_567),
                  dataset("usage_daily", "usage", 3650), dataset("empty_one", "reports", 0, 0)],
        files=[(f"data/file_{i}.csv", i * 1000, sha(str(i))) for i in range(25)])
    return replace(base, **changes)


def text_of(path: Path) -> str:
    """The document's text with whitespace (line wraps) collapsed to single spaces."""
    return " ".join(" ".join(page.extract_text() for page in PdfReader(path).pages).split())


def check_contents(text: str, data: ReportData) -> None:
    assert data.account_name in text
    for item in data.datasets:
        assert item.name in text
        assert f"{item.rows:,}" in text
    assert retention_text(data.primary_days, data.backup_months) in text
    for _, _, digest in data.files:
        assert digest in text


def test_report_holds_everything_the_customer_needs(tmp_path: Path) -> None:
    data = report()
    result = write_report(tmp_path / "report.pdf", data)
    content = (tmp_path / "report.pdf").read_bytes()
    assert result == ("report.pdf", len(content), hashlib.sha256(content).hexdigest())
    text = text_of(tmp_path / "report.pdf")
    check_contents(text, data)
    assert RETENTION in text
    for heading in ("What this bundle holds", "Sample rows", "Retention", "Checksums"):
        assert heading in text
    assert "users-0-col_1" in text and "users-5-col_0" not in text  # at most 5 sample rows
    assert "Prepared on 2 March 2026" in text and "req-0001" in text and "eu-central-1" in text
    pages = len(PdfReader(tmp_path / "report.pdf").pages)
    assert f"Page 1 of {pages}" in text and f"Page {pages} of {pages}" in text
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away


def test_pdftotext_reads_the_same(tmp_path: Path) -> None:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    data = report(account_name="Zoë Ltd")
    write_report(tmp_path / "report.pdf", data)
    out = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", str(tmp_path / "report.pdf"), "-"],
                         capture_output=True, check=True, text=True).stdout
    text = " ".join(out.split())
    check_contents(text, data)
    assert RETENTION in text


def test_retention_numbers_come_from_the_input(tmp_path: Path) -> None:
    write_report(tmp_path / "r.pdf", report(primary_days=30, backup_months=6))
    text = text_of(tmp_path / "r.pdf")
    assert ("kept for 30 days after your account closes" in text
            and "purged within 6 months." in text)
    assert retention_text(1, 1).endswith("within 1 month.") and "for 1 day after" in retention_text(1, 1)


def test_same_input_same_bytes(tmp_path: Path) -> None:
    data = report(account_name="Zoë Ltd")
    first = write_report(tmp_path / "a.pdf", data)
    second = write_report(tmp_path / "b.pdf", data)
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()
    assert first.sha256 == second.sha256
    other = write_report(tmp_path / "c.pdf", replace(data, generated_at=GENERATED + timedelta(1)))
    assert other.sha256 != first.sha256
    assert PdfReader(tmp_path / "a.pdf").metadata["/CreationDate"].startswith("D:20260302090000")


def test_two_hundred_datasets_span_pages(tmp_path: Path) -> None:
    categories = ["account", "content", "usage", "integrations", "reports", "custom"]
    many = [dataset(f"dataset_{i:03d}", categories[i % 6], i * 10, 3, 9) for i in range(200)]
    files = [(f"data/dataset_{i:03d}.parquet", i, sha(f"f{i}")) for i in range(400)]
    data = report(datasets=many, files=files)
    write_report(tmp_path / "r.pdf", data)
    assert len(PdfReader(tmp_path / "r.pdf").pages) > 10
    text = text_of(tmp_path / "r.pdf")
    check_contents(text, data)
    assert "Showing 6 of 9 columns." in text


@pytest.mark.parametrize("name", ["Zoë Ltd", "شركة", "株式会社 Ünïcödé 😀", "Ελληνική εταιρεία"])
def test_unicode_account_names(tmp_path: Path, name: str) -> None:
    item = DatasetSummary("données", "content", "src", 1, 1, [{"titre": name}], ["titre"])
    write_report(tmp_path / "r.pdf", report(account_name=name, datasets=[item]))
    text = text_of(tmp_path / "r.pdf")
    if name in ("Zoë Ltd", "Ελληνική εταιρεία"):
        assert name in text
    assert "données" in text


def test_without_dejavu_falls_back_to_latin1(tmp_path: Path) -> None:
    typeset.find_fonts.cache_clear()
    data = report(account_name="Zoë — شركة")
    write_report(tmp_path / "r.pdf", data, font_dir=tmp_path)  # holds no font
    text = text_of(tmp_path / "r.pdf")
    assert "Zoë ? ????" in text
    check_contents(text, replace(data, account_name="Zoë"))


def test_awkward_inputs(tmp_path: Path) -> None:
    long_cell = DatasetSummary("wide", "content", "s", 2, 2,
                               [{"a": "x" * 5000, "b": "line\nbreak"}, {}], ["a", "b"])
    no_columns = DatasetSummary("bare", "content", "s", 1, 1, [{"k": "v"}], [])
    long_path = ("deep/" * 60) + "file.bin"
    data = report(datasets=[long_cell, no_columns], files=[(long_path, 1, sha("x"))],
                  formats=[], generated_at=datetime(2026, 3, 2, 11, 0, tzinfo=timezone(timedelta(hours=2))))
    write_report(tmp_path / "r.pdf", data)
    text = text_of(tmp_path / "r.pdf")
    assert "x" * 39 + "…" in text and "x" * 41 not in text and "line break" in text
    assert "bare" in text and "k v" in text and sha("x") in text
    assert "2026-03-02T09:00:00+00:00" in text
    write_report(tmp_path / "empty.pdf", report(datasets=[], files=[]))
    assert "0 datasets, 0 rows, 0 B in total." in text_of(tmp_path / "empty.pdf")


def test_naive_datetime_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        write_report(tmp_path / "r.pdf", report(generated_at=datetime(2026, 1, 1)))
    assert not (tmp_path / "r.pdf").exists()


def test_overwrites_atomically(tmp_path: Path) -> None:
    dest = tmp_path / "report.pdf"
    dest.write_bytes(b"old")
    write_report(dest, report())
    assert dest.read_bytes().startswith(b"%PDF-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.pdf"]
