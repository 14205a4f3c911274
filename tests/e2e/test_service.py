"""`make run`'s entry point, started for real: web server, worker and scheduler in subprocesses."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import psutil
import pytest

pytestmark = pytest.mark.e2e
KEY_LINE = re.compile(r"^\s+(ob_[0-9a-f]{12}_[A-Za-z0-9_-]{43})\s*$")


class Output:
    """Collects a child's stdout in a thread so its pipe never fills up."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(process,), daemon=True)
        self._thread.start()

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    def key(self) -> str | None:
        return next((m.group(1) for line in self.lines if (m := KEY_LINE.match(line))), None)


def call(method: str, url: str, key: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_run_serves_the_api_and_stops_cleanly(service_env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "compliance.cli", "run"], env=service_env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output = Output(process)
    base = f"http://127.0.0.1:{service_env['PORT']}"
    try:
        deadline = time.monotonic() + 60
        status: int | None = None
        while time.monotonic() < deadline and status != 200:
            assert process.poll() is None, "".join(output.lines)
            try:
                status, health = call("GET", f"{base}/healthz")
            except OSError:
                time.sleep(0.2)
        assert status == 200, "".join(output.lines)
        assert health["checks"] == {"database": "ok", "redis": "ok"}
        key = output.key()
        assert key, "no bootstrap admin key printed:\n" + "".join(output.lines)

        status, tenants = call("GET", f"{base}/api/v1/tenants", key)
        assert status == 200
        assert [t["external_ref"] for t in tenants["items"]] == ["demo-001"]  # seeded
        status, tenant = call("POST", f"{base}/api/v1/tenants", key,
                              {"external_ref": "e2e-1", "name": "E2E Ltd", "region": "UK"})
        assert status == 201, tenant
        status, request = call("POST", f"{base}/api/v1/requests", key,
                               {"tenant_id": tenant["id"], "requested_by": "cfo@e2e.example",
                                "channel": "email", "churn_reason": "price"})
        assert status == 201, request
        assert request["status"] == "received" and request["legal_regime"] == "gdpr"
        status, _ = call("GET", f"{base}/api/v1/tenants")
        assert status == 401

        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= 3  # web server, worker, scheduler
    finally:
        process.send_signal(signal.SIGINT)
        exit_code = process.wait(timeout=30)
    assert exit_code == 0, "".join(output.lines)
    time.sleep(0.5)
    assert [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []


def test_second_start_does_not_print_a_new_key(service_env: dict[str, str]) -> None:
    """The bootstrap key is generated once: a restart says one exists instead."""
    first = subprocess.run([sys.executable, "-m", "compliance.cli", "db", "upgrade"], env=service_env,
                           capture_output=True, text=True, timeout=60, check=True)
    assert "latest revision" in first.stdout
    created = subprocess.run([sys.executable, "-m", "compliance.cli", "keys", "create", "--role", "admin"],
                             env=service_env, capture_output=True, text=True, timeout=60, check=True)
    assert created.stdout.startswith("ob_")
    process = subprocess.Popen([sys.executable, "-m", "compliance.cli", "run"], env=service_env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(process)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("admin API key exists" in x for x in output.lines):
            assert process.poll() is None, "".join(output.lines)
            time.sleep(0.2)
        assert output.key() is None
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, "".join(output.lines)
