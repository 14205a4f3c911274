"""Delivery through the real service (``python -m compliance.cli run``): an export of the seeded
demo tenant, a link's quota under 50 concurrent downloads, and curl resuming a download."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e
CONCURRENT = 50
QUOTA = 5


def fetch(url: str) -> tuple[int, bytes]:
    """A customer's plain GET: status and the whole body."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def curl(*args: str) -> None:
    done = subprocess.run(["curl", "--fail", "--silent", "--show-error", *args],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, (args[:-1], done.stderr)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_quota_holds_under_concurrency_and_curl_resumes_to_a_verifiable_bundle(
        service: Any, tmp_path: Path) -> None:  # the conftest's Service
    export = service.ready_export()
    sha256, size = export["bundle_sha256"], export["bundle_bytes"]
    assert size > 200_000, "the demo bundle is too small to resume from 100 kB"

    # (a) 50 customers at once on a link good for 5 downloads (the first 50 of 60/min per IP).
    first_id, first_token, first_page = service.issue(export["id"], QUOTA)
    first_url = f"{first_page}/bundle.zip"
    gate = threading.Barrier(CONCURRENT)

    def download(_: int) -> tuple[int, str]:
        gate.wait(timeout=30)
        status, body = fetch(first_url)
        return status, hashlib.sha256(body).hexdigest() if status == 200 else ""

    with ThreadPoolExecutor(CONCURRENT) as pool:
        results = list(pool.map(download, range(CONCURRENT)))
    assert Counter(status for status, _ in results) == {200: QUOTA, 410: CONCURRENT - QUOTA}, results
    assert {digest for status, digest in results if status == 200} == {sha256}
    first = service.link_row(export["id"], first_id)
    assert first["downloads"] == QUOTA
    outcomes = Counter((h["action"], h["outcome"]) for h in first["history"])
    assert outcomes == {("download.bundle", "ok"): QUOTA,
                        ("download.bundle", "exhausted"): CONCURRENT - QUOTA}  # one event per attempt

    # (b) a second link: a part by range, resumed by curl; a whole download cut in half, resumed.
    second_id, second_token, second_page = service.issue(export["id"], QUOTA)
    second_url = f"{second_page}/bundle.zip"
    part = tmp_path / "part.zip"
    curl("-r", "0-99999", "-o", str(part), second_url)
    assert part.stat().st_size == 100_000
    curl("-C", "-", "-o", str(part), second_url)
    assert part.stat().st_size == size and sha256_of(part) == sha256

    whole = tmp_path / "whole.zip"
    curl("-o", str(whole), second_url)
    assert sha256_of(whole) == sha256
    with open(whole, "r+b") as handle:
        handle.truncate(size // 2)
    curl("-C", "-", "-o", str(whole), second_url)
    assert whole.stat().st_size == size and sha256_of(whole) == sha256
    second = service.link_row(export["id"], second_id)
    assert second["downloads"] == 2  # the range that opened the link and the whole one; resumes are free
    assert [h["outcome"] for h in second["history"]] == [
        "range 0-99999", f"range 100000-{size - 1}", "ok", f"range {size // 2}-{size - 1}"]

    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(whole) as archive:
        archive.extractall(unpacked)
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=unpacked, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "report.pdf: OK" in check.stdout and "FAILED" not in check.stdout

    # (c) the service's output names links, never tokens.
    assert service.stop() == 0, service.output
    output = service.output
    for token in (first_token, second_token):
        assert token not in output
        assert token.split(".")[2] not in output  # not even the signature alone
    assert f"/d/link-{first_id}/bundle.zip" in output and f"/d/link-{second_id}/bundle.zip" in output
    assert "Traceback" not in output and "Error handling request" not in output
