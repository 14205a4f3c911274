"""`make run`'s entry point, started for real: web server, worker and scheduler in subprocesses."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

pytestmark = pytest.mark.e2e


def test_run_serves_the_api_and_stops_cleanly(service: Any) -> None:  # the conftest's Service
    key = service.admin_key()  # printed once, when the service answers its health check
    status, health = service.call("GET", "/healthz")
    assert status == 200 and health["checks"] == {"database": "ok", "redis": "ok"}

    status, tenants = service.api("GET", "/tenants")
    assert status == 200
    assert [t["external_ref"] for t in tenants["items"]] == ["demo-001"]  # seeded
    status, tenant = service.api("POST", "/tenants", {"external_ref": "e2e-1", "name": "E2E Ltd",
                                                      "region": "UK"})
    assert status == 201, tenant
    status, request = service.api("POST", "/requests", {
        "tenant_id": tenant["id"], "requested_by": "cfo@e2e.example", "channel": "email",
        "churn_reason": "price"})
    assert status == 201, request
    assert request["status"] == "received" and request["legal_regime"] == "gdpr"
    assert service.call("GET", "/api/v1/tenants")[0] == 401
    forged = key[:-1] + ("B" if key.endswith("A") else "A")
    assert service.call("GET", "/api/v1/tenants", key=forged)[0] == 401

    children = psutil.Process(service.process.pid).children(recursive=True)
    assert len(children) >= 3  # web server, worker, scheduler
    assert service.stop() == 0, service.output
    time.sleep(0.5)
    assert [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []


def test_second_start_does_not_print_a_new_key(service_env: dict[str, str],
                                               start_service: Callable[[], Any]) -> None:
    """The bootstrap key is generated once: a restart says one exists instead."""
    first = subprocess.run([sys.executable, "-m", "compliance.cli", "db", "upgrade"], env=service_env,
                           capture_output=True, text=True, timeout=60, check=True)
    assert "latest revision" in first.stdout
    created = subprocess.run([sys.executable, "-m", "compliance.cli", "keys", "create", "--role", "admin"],
                             env=service_env, capture_output=True, text=True, timeout=60, check=True)
    assert created.stdout.startswith("ob_")
    service = start_service()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "admin API key exists" not in service.output:
        assert service.process.poll() is None, service.output
        time.sleep(0.2)
    assert "admin API key exists" in service.output
    assert service.key() is None
    assert service.stop() == 0, service.output


def test_several_web_workers_serve_and_metrics_add_them_up(
        service_env: dict[str, str], start_service: Callable[[], Any]) -> None:
    service_env["OFFBOARD_WEB_WORKERS"] = "3"
    service = start_service()
    service.admin_key()
    web = next(child for child in psutil.Process(service.process.pid).children()
               if "gunicorn" in " ".join(child.cmdline()))
    workers = {worker.pid for worker in web.children()}
    assert len(workers) == 3

    def healthz_count() -> float:
        with urllib.request.urlopen(f"{service.base}/metrics", timeout=10) as answer:
            exposition = answer.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines()
                   if line.startswith("offboard_http_requests_total{") and 'endpoint="/healthz"' in line)

    before = healthz_count()
    with ThreadPoolExecutor(max_workers=6) as pool:
        assert set(pool.map(lambda _: service.call("GET", "/healthz")[0], range(60))) == {200}
    assert healthz_count() - before == 60  # whichever worker answers /metrics counts them all
    # Every worker writes its counters where any worker's /metrics reads them (multiprocess mode).
    folder = Path(service_env["OFFBOARD_INSTANCE_DIR"]) / "prometheus"
    counted_by = {int(name.stem.rsplit("_", 1)[1]) for name in folder.glob("counter_*.db")}
    assert counted_by and counted_by <= workers, (counted_by, workers)
    assert service.stop() == 0, service.output
