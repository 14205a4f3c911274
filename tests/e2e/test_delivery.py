"""Delivery through the real service (``python -m compliance.cli run``): an export of the seeded
demo tenant, a link's quota under 50 concurrent downloads, and curl resuming a download."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e
KEY_LINE = re.compile(r"^\s+(ob_[0-9a-f]{12}_[A-Za-z0-9_-]{43})\s*$")
DEMO_TENANT_ID = 1
CONCURRENT = 50
QUOTA = 5


class Service:
    """The service in a subprocess, its stdout (and stderr) collected by a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.base = f"http://127.0.0.1:{env['PORT']}"
        self.process = subprocess.Popen([sys.executable, "-m", "compliance.cli", "run"], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def admin_key(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output
            try:
                status, _ = call("GET", f"{self.base}/healthz")
            except OSError:
                status = None
            key = next((m.group(1) for line in self.lines if (m := KEY_LINE.match(line))), None)
            if status == 200 and key:
                return key
            time.sleep(0.2)
        raise AssertionError("the service did not come up with an admin key:\n" + self.output)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=30)
        self._pump.join(timeout=5)
        return code


@pytest.fixture
def service(service_env: dict[str, str]) -> Iterator[Service]:
    running = Service(service_env)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            assert running.stop() == 0, running.output


def call(method: str, url: str, key: str | None = None, body: dict[str, Any] | None = None
         ) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


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


def ready_export(base: str, key: str) -> dict[str, Any]:
    status, request = call("POST", f"{base}/api/v1/requests", key, {
        "tenant_id": DEMO_TENANT_ID, "requested_by": "cfo@demo-customer.example", "channel": "email",
        "churn_reason": "price"})
    assert status == 201, request
    for action in ("acknowledge", "approve"):
        status, answer = call("POST", f"{base}/api/v1/requests/{request['id']}/{action}", key)
        assert status == 200, answer
    status, export = call("POST", f"{base}/api/v1/requests/{request['id']}/exports", key, {})
    assert status == 202, export
    deadline = time.monotonic() + 60
    while export["status"] not in ("ready", "failed") and time.monotonic() < deadline:
        time.sleep(0.3)
        status, export = call("GET", f"{base}/api/v1/exports/{export['id']}", key)
        assert status == 200, export
    assert export["status"] == "ready", export
    return export


def issue(base: str, key: str, export_id: int) -> tuple[int, str, str]:
    """A new link: (link id, token, the bundle URL on this service)."""
    status, link = call("POST", f"{base}/api/v1/exports/{export_id}/links", key,
                        {"recipient": "it@demo-customer.example", "max_downloads": QUOTA})
    assert status == 201, link
    token = link["url"].rsplit("/d/", 1)[1]
    return link["id"], token, f"{base}/d/{token}/bundle.zip"


def link_row(base: str, key: str, export_id: int, link_id: int) -> dict[str, Any]:
    status, listed = call("GET", f"{base}/api/v1/exports/{export_id}/links", key)
    assert status == 200, listed
    return next(item for item in listed["items"] if item["id"] == link_id)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_quota_holds_under_concurrency_and_curl_resumes_to_a_verifiable_bundle(
        service: Service, tmp_path: Path) -> None:
    key = service.admin_key()
    base = service.base
    export = ready_export(base, key)
    sha256, size = export["bundle_sha256"], export["bundle_bytes"]
    assert size > 200_000, "the demo bundle is too small to resume from 100 kB"

    # (a) 50 customers at once on a link good for 5 downloads (the first 50 of 60/min per IP).
    first_id, first_token, first_url = issue(base, key, export["id"])
    gate = threading.Barrier(CONCURRENT)

    def download(_: int) -> tuple[int, str]:
        gate.wait(timeout=30)
        status, body = fetch(first_url)
        return status, hashlib.sha256(body).hexdigest() if status == 200 else ""

    with ThreadPoolExecutor(CONCURRENT) as pool:
        results = list(pool.map(download, range(CONCURRENT)))
    assert Counter(status for status, _ in results) == {200: QUOTA, 410: CONCURRENT - QUOTA}, results
    assert {digest for status, digest in results if status == 200} == {sha256}
    first = link_row(base, key, export["id"], first_id)
    assert first["downloads"] == QUOTA
    outcomes = Counter((h["action"], h["outcome"]) for h in first["history"])
    assert outcomes == {("download.bundle", "ok"): QUOTA,
                        ("download.bundle", "exhausted"): CONCURRENT - QUOTA}  # one event per attempt

    # (b) a second link: a part by range, resumed by curl; a whole download cut in half, resumed.
    second_id, second_token, second_url = issue(base, key, export["id"])
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
    second = link_row(base, key, export["id"], second_id)
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
