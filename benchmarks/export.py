"""Export speed and memory against ``psql \\copy``, on a busy tenant's event log.

Run it with the project installed (``pip install -e .``) from the repository root::

    python benchmarks/export.py [--rows 1000000] [--repeat 3] [--small-rows 100000]

It reads ``TEST_DATABASE_URL`` (default postgresql+psycopg://postgres@127.0.0.1:5432/test) and
``TEST_REDIS_URL`` (default redis://127.0.0.1:6379/0; the bundle step enqueues on its
``exports`` queue, so give it a Redis no worker is serving).

What it does (see docs/performance.md):

1. builds ``bench.events`` once (reused while it holds the right rows): ``--rows`` rows of
   tenant 1 among twice as many, and ``bench.events_small`` with ``--small-rows`` for the
   memory comparison;
2. times the baseline, ``psql -c "\\copy (SELECT * FROM bench.events WHERE tenant_id=1) TO
   'file' CSV HEADER"``;
3. times Offboard's pull (``SqlSource.read`` into the encrypted staging Arrow IPC file, as
   the pull job writes it, with a tenant key kept in a private SQLite app database) plus one
   writer, for CSV, JSON Lines and Parquet separately, and the whole bundle (csv, json,
   parquet, pdf) through the real RQ jobs run by a ``SimpleWorker`` in burst mode against a
   private SQLite app database;
4. runs every Offboard step in a child process and reads its peak RSS (``ru_maxrss`` from
   ``wait4``), at ``--rows`` and again at ``--small-rows``, and the CPU seconds the child
   spent on the timed work (all its threads; not the database server's).

Each time is the median of ``--repeat`` runs. It prints a table, then, as its last line, one
JSON object with the numbers. On a shared, noisy machine the CPU seconds vary far less than
the times do.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

# Run as a script, this folder is first on sys.path, where benchmarks/audit.py would hide the
# ``audit`` package the service imports.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
TENANT = 1
BATCH_ROWS = 50_000  # the service's default OFFBOARD_BATCH_ROWS
FORMATS = ("csv", "jsonl", "parquet")  # the writers timed one by one
BUNDLE_FORMATS = ["csv", "json", "parquet", "pdf"]
TARGETS = {"csv": 1.5, "parquet": 1.5, "jsonl": 2.5, "bundle": 5.0}  # x the \copy time
RSS_LIMIT_MB, RSS_FLAT = 300, 0.20
GENERATOR = "offboard benchmark events v1"  # in the table comment: a changed generator rebuilds

# The event log: id, tenant, who, when, what, how much, a ~150-byte JSON payload, a ~60-char note.
BUILD = """
DROP TABLE IF EXISTS bench.{table};
CREATE TABLE bench.{table} (
    id bigint PRIMARY KEY, tenant_id int NOT NULL, user_email text NOT NULL,
    created_at timestamptz NOT NULL, event_type text NOT NULL, amount numeric(12,2),
    payload jsonb, note text);
INSERT INTO bench.{table}
SELECT g, 1 + g % 2, 'user' || g % 9973 || '@example.com',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1.25 second',
       (ARRAY['login', 'logout', 'purchase', 'view', 'export', 'update'])[1 + g % 6],
       CASE WHEN g % 10 = 0 THEN NULL ELSE round((g % 100000) / 7.0, 2) END,
       jsonb_build_object('session', md5(g::text),
                          'ip', '10.' || g % 256 || '.' || g % 97 || '.' || g % 13,
                          'agent', 'Mozilla/5.0', 'items', jsonb_build_array(g % 17, g % 31, g % 101),
                          'ok', g % 3 = 0, 'ref', 'order-' || g, 'country', 'DE'),
       'note ' || substr(md5((g * 7)::text) || md5((g * 11)::text), 1, 55)
FROM generate_series(1, {total}) AS g;
CREATE INDEX ON bench.{table} (tenant_id, id);
COMMENT ON TABLE bench.{table} IS '{comment}';
"""


# -- the table -------------------------------------------------------------------------------


def ensure_table(url: str, table: str, rows: int) -> bool:
    """Build ``bench.<table>`` unless it already holds ``rows`` rows of tenant 1 (of 2x rows)
    from this generator; True when it was built."""
    engine = create_engine(url)
    comment = f"{GENERATOR}: {rows} rows of tenant {TENANT} among {2 * rows}"
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE SCHEMA IF NOT EXISTS bench"))
            found = conn.execute(text("SELECT obj_description(to_regclass(:name), 'pg_class')"),
                                 {"name": f"bench.{table}"}).scalar()
            if found == comment:
                counts = conn.execute(text(
                    f"SELECT count(*) FILTER (WHERE tenant_id = {TENANT}), count(*) "  # noqa: S608
                    f"FROM bench.{table}")).one()
                if tuple(counts) == (rows, 2 * rows):
                    return False
            # Without parameters, so the driver leaves the SQL's "%" alone.
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(BUILD.format(table=table, total=2 * rows, comment=comment))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM (ANALYZE) bench.{table}")  # hint bits and statistics set
        return True
    finally:
        engine.dispose()


# -- the steps, each in a child process --------------------------------------------------------


def run_child(step: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run ``step`` in a fresh interpreter; its report plus its own peak RSS in MB."""
    log = work / "child.log"
    with open(log, "w") as errors:
        child = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(step)],
                                 stdout=subprocess.PIPE, stderr=errors, text=True)
        assert child.stdout is not None
        output = child.stdout.read()
        _pid, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, nobody else's
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"step {step['kind']} failed:\n{log.read_text()[-4000:]}")
    report = json.loads(output.strip().splitlines()[-1])
    report["rss_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    return report


def child_main(step: dict[str, Any]) -> None:
    """Inside the child: do one step, print its report as one JSON line."""
    peak = _AnonPeak()
    report = _bundle(step) if step["kind"] == "bundle" else _pull_and_write(step)
    report["anon_mb"] = peak.stop()
    print(json.dumps(report))


def _pull_and_write(step: dict[str, Any]) -> dict[str, Any]:
    """The pull job's work (source to staging file), then one format's writer, if any."""
    import audit
    from compliance import config, db, schema
    from compliance.models import Tenant
    from exporters.formats import WRITERS
    from exporters.sources import Scope
    from exporters.sources import sql as sql_source
    from exporters.staging import open_stream, write_stream

    used = _spy_on_paths(sql_source)
    sql_source.FAST_PATH = not step["generic"]
    work = Path(step["work"])
    (work / "out").mkdir()
    # Staging is sealed with the tenant's data key, as the pull job does: a private SQLite app
    # database holds the tenant and its key (no Flask, no RQ).
    database_url = f"sqlite:///{work / 'app.db'}"
    config.use(config.load({"OFFBOARD_ENV": "test", "OFFBOARD_INSTANCE_DIR": str(work / "instance"),
                            "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}))
    schema.upgrade(database_url)
    db.configure(database_url)
    with db.transaction():
        db.session.add(tenant := Tenant(external_ref=str(TENANT), name="Busy tenant", region="DE"))
        db.session.flush()
        tenant_id = tenant.id
    before = _rss_mb()
    cpu = time.process_time()
    started = time.perf_counter()
    source = sql_source.SqlSource(sql_source.SqlSource.validate(_source_config(step)))
    scope = Scope(str(TENANT))
    dataset = next(d for d in source.datasets(scope) if d.name == step["table"])
    staged = work / "staging" / "events.arrows"
    with db.transaction():
        rows, staged_bytes = write_stream(staged, dataset.schema,
                                          source.read(dataset, scope, BATCH_ROWS), lambda *_: None,
                                          tenant_id=tenant_id, actor=audit.SYSTEM)
    source.close()
    pulled = time.perf_counter()
    written = staged_bytes
    if step["format"]:
        outputs = WRITERS[step["format"]](open_stream(staged, tenant_id), work / "out", "events")
        written = sum(output.bytes for output in outputs)
    finished = time.perf_counter()
    return {"seconds": finished - started, "pull_s": pulled - started, "write_s": finished - pulled,
            "cpu_s": time.process_time() - cpu, "rows": rows, "bytes": written, "path": used(),
            "before_mb": before}


def _bundle(step: dict[str, Any]) -> dict[str, Any]:
    """The real thing: the API starts an export, a burst SimpleWorker runs start, pull and
    assemble in this process, against a private SQLite app database."""
    from rq import SimpleWorker

    from compliance import config, db, queues, schema
    from compliance.app import create_app
    from compliance.auth import create_api_key
    from compliance.models import Export
    from exporters import jobs
    from exporters.sources import sql as sql_source

    used = _spy_on_paths(sql_source)
    sql_source.FAST_PATH = not step["generic"]
    instance = Path(step["work"]) / "instance"
    database_url = f"sqlite:///{instance / 'app.db'}"
    settings = config.load({"OFFBOARD_ENV": "test", "OFFBOARD_INSTANCE_DIR": str(instance),
                            "DATABASE_URL": database_url, "REDIS_URL": step["redis_url"],
                            "LOG_LEVEL": "WARNING", "OFFBOARD_PULL_RETRY_INTERVALS": "0"})
    instance.mkdir(parents=True, exist_ok=True)
    schema.upgrade(database_url)
    app = create_app(settings)
    client = app.test_client()
    with app.app_context():
        _key, secret = create_api_key(name="bench", role="csm", created_by="bench")
        db.session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    request_id = _approved_request(client, headers, step)
    queue = queues.queue(jobs.QUEUE)

    before = _rss_mb()
    cpu = time.process_time()
    started = time.perf_counter()
    answer = client.post(f"/api/v1/requests/{request_id}/exports",
                         json={"formats": BUNDLE_FORMATS}, headers=headers)
    assert answer.status_code == 202, answer.get_json()
    SimpleWorker([queue], connection=queues.connection()).work(burst=True)
    finished = time.perf_counter()
    cpu = time.process_time() - cpu

    with app.app_context():
        export = db.session.get(Export, answer.get_json()["id"])
        assert export is not None and export.status == "ready", (export and export.error)
        rows = sum(task.rows or 0 for task in export.tasks)
        size = export.bundle_bytes
        files = len(export.manifest["files"])
    return {"seconds": finished - started, "cpu_s": cpu, "rows": rows, "bytes": size, "files": files,
            "path": used(), "before_mb": before}


def _approved_request(client: Any, headers: dict[str, str], step: dict[str, Any]) -> int:
    def post(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = client.post(f"/api/v1{path}", json=body or {}, headers=headers)
        assert answer.status_code in (200, 201, 202), answer.get_json()
        return answer.get_json()  # type: ignore[no-any-return]

    tenant = post("/tenants", {"external_ref": str(TENANT), "name": "Busy tenant", "region": "DE"})
    post("/sources", {"kind": "sql", "name": "app-db", "tenant_id": tenant["id"],
                      "config": _source_config(step)})
    request = post("/requests", {"tenant_id": tenant["id"], "requested_by": "cfo@busy.test",
                                 "channel": "email", "churn_reason": "price"})
    for action in ("acknowledge", "approve"):
        post(f"/requests/{request['id']}/{action}")
    return request["id"]  # type: ignore[no-any-return]


def _source_config(step: dict[str, Any]) -> dict[str, Any]:
    return {"url": step["database_url"], "schema": "bench",
            "tables": [{"name": step["table"], "category": "usage", "tenant_column": "tenant_id"}]}


def _spy_on_paths(sql_source: Any) -> Any:
    """Which way the sql source read: "fast" (ADBC) or "generic" (rows through Python)."""
    generic = sql_source.SqlSource._stream
    seen: list[str] = []

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append("generic")
        return generic(self, *args, **kwargs)

    sql_source.SqlSource._stream = spy
    return lambda: "generic" if seen else "fast"


def _rss_mb() -> float:
    found = re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text())
    return int(found.group(1)) / 1024 if found else 0.0


class _AnonPeak:
    """The child's peak anonymous memory (RssAnon), sampled every 10 ms: ru_maxrss also counts
    file-backed pages (the libraries' code, any memory-mapped file)."""

    def __init__(self) -> None:
        self.peak, self.running = 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while self.running:
            status = Path("/proc/self/status").read_text()
            found = re.search(r"RssAnon:\s+(\d+)", status)
            self.peak = max(self.peak, int(found.group(1)) if found else 0)
            time.sleep(0.01)

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return self.peak / 1024


# -- the baseline ------------------------------------------------------------------------------


def time_copy(url: str, table: str, target: Path) -> tuple[float, int]:
    """``psql \\copy`` of the tenant's rows to a CSV file: seconds and bytes."""
    psql = shutil.which("psql")
    if psql is None:
        raise SystemExit("psql is needed for the baseline (apt-get install postgresql-client)")
    libpq_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    command = (f"\\copy (SELECT * FROM bench.{table} WHERE tenant_id={TENANT}) "  # noqa: S608
               f"TO '{target}' CSV HEADER")
    started = time.perf_counter()
    subprocess.run([psql, "-X", "-q", libpq_url, "-c", command], check=True)
    seconds = time.perf_counter() - started
    size = target.stat().st_size
    target.unlink()
    return seconds, size


# -- the run -----------------------------------------------------------------------------------

STEPS = {"pull": "pull only (to staging)", "csv": "pull + CSV", "jsonl": "pull + JSON Lines",
         "parquet": "pull + Parquet", "bundle": "bundle (csv,json,parquet,pdf)"}


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every step ``--repeat`` times at ``--rows``, once at ``--small-rows``."""
    url = os.environ.get("TEST_DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("TEST_REDIS_URL") or DEFAULT_REDIS_URL
    for table, rows in (("events", args.rows), ("events_small", args.small_rows)):
        started = time.perf_counter()
        if ensure_table(url, table, rows):
            print(f"built bench.{table} ({rows:,} rows of tenant {TENANT}) in "
                  f"{time.perf_counter() - started:.1f} s", file=sys.stderr)

    def step(key: str, table: str) -> dict[str, Any]:
        folder = Path(tempfile.mkdtemp(dir=work))
        kind = "bundle" if key == "bundle" else "pull"
        try:
            return run_child({"kind": kind, "format": None if key in ("pull", "bundle") else key,
                              "table": table, "database_url": url, "redis_url": redis_url,
                              "work": str(folder), "generic": args.generic}, work)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    time_copy(url, "events", work / "warm.csv")  # the table in the page cache, for everyone
    copies = [time_copy(url, "events", work / "copy.csv") for _ in range(args.repeat)]
    results: dict[str, Any] = {"copy": {"seconds": [c[0] for c in copies],
                                        "bytes": [c[1] for c in copies]}}
    for key in STEPS:
        results[key] = _collect([step(key, "events") for _ in range(args.repeat)])
    results["small"] = {key: step(key, "events_small") for key in STEPS}
    return results


def _collect(runs: list[dict[str, Any]]) -> dict[str, Any]:
    collected = {key: [run[key] for run in runs] for key in runs[0] if key != "path"}
    collected["path"] = sorted({run["path"] for run in runs})
    return collected


def report(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    """Print the tables; the numbers for the JSON line."""
    median = statistics.median
    rows, copy_s = args.rows, median(results["copy"]["seconds"])
    summary: dict[str, Any] = {"rows": rows, "copy_s": round(copy_s, 3)}
    baseline = "psql \\copy (CSV)"
    print(f"\n{'time, ' + format(rows, ',') + ' rows':<31}{'median s':>9}{'rows/s':>11}"
          f"{'MB/s':>7}{'x copy':>8}{'target':>9}{'cpu s':>8}")
    print(f"{baseline:<31}{copy_s:>9.2f}{rows / copy_s:>11,.0f}"
          f"{median(results['copy']['bytes']) / copy_s / 1e6:>7.0f}{1:>8.2f}")
    for key, name in STEPS.items():
        result = results[key]
        seconds = median(result["seconds"])
        ratio = seconds / copy_s
        target = f"<= {TARGETS[key]}" if key in TARGETS else ""
        cpu = median(result["cpu_s"])
        print(f"{name:<31}{seconds:>9.2f}{rows / seconds:>11,.0f}"
              f"{median(result['bytes']) / seconds / 1e6:>7.0f}{ratio:>8.2f}{target:>9}{cpu:>8.2f}")
        if key in FORMATS:
            print(f"{'  of which pull, write':<31}{median(result['pull_s']):>9.2f}"
                  f"{median(result['write_s']):>11.2f}")
        summary[f"{key}_s"] = round(seconds, 3)
        summary[f"{key}_ratio"] = round(ratio, 3)
        summary[f"{key}_cpu_s"] = round(cpu, 3)
    summary["bundle_mb"] = round(median(results["bundle"]["bytes"]) / 1e6, 1)

    small = results["small"]
    print(f"\n{'peak memory, MB':<31}{'RSS ' + _short(rows):>11}{'RSS ' + _short(args.small_rows):>11}"
          f"{'anon ' + _short(rows):>11}{'anon ' + _short(args.small_rows):>11}{'at start':>10}")
    for key, name in STEPS.items():
        print(f"{name:<31}{max(results[key]['rss_mb']):>11.0f}{small[key]['rss_mb']:>11.0f}"
              f"{max(results[key]['anon_mb']):>11.0f}{small[key]['anon_mb']:>11.0f}"
              f"{max(results[key]['before_mb']):>10.0f}")
        summary[f"{key}_rss_mb"] = round(max(results[key]["rss_mb"]), 1)
        summary[f"{key}_rss_mb_small"] = round(small[key]["rss_mb"], 1)
    for kind in ("rss", "anon"):
        summary[f"peak_{kind}_mb"] = round(max(max(results[key][f"{kind}_mb"]) for key in STEPS), 1)
        summary[f"peak_{kind}_mb_small"] = round(max(small[key][f"{kind}_mb"] for key in STEPS), 1)
    summary.update(small_rows=args.small_rows, repeat=args.repeat,
                   sql_path=sorted({path for key in STEPS for path in results[key]["path"]}))

    met = {f"{key}_met": summary[f"{key}_ratio"] <= TARGETS[key] for key in TARGETS}
    met["rss_met"] = summary["peak_rss_mb"] < RSS_LIMIT_MB
    met["rss_flat"] = summary["peak_rss_mb"] <= summary["peak_rss_mb_small"] * (1 + RSS_FLAT)
    summary.update(met)
    print(f"\nsql source read through the {' and the '.join(summary['sql_path'])} path")
    print("targets: " + ", ".join(f"{key.removesuffix('_met')} {'met' if ok else 'MISSED'}"
                                  for key, ok in met.items()))
    return summary


def _short(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows % 1_000_000 == 0 else f"{rows // 1000}k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="tenant 1's rows")
    parser.add_argument("--repeat", type=int, default=3, help="runs per step (the median counts)")
    parser.add_argument("--small-rows", type=int, default=100_000,
                        help="rows of the second run, which shows memory is flat")
    parser.add_argument("--generic", action="store_true",
                        help="read PostgreSQL through the generic path (rows through Python)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    with tempfile.TemporaryDirectory(prefix="offboard-bench-") as work:
        results = measure(args, Path(work))
    summary = report(args, results)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
