"""Retention speed: the sweep's query over many tenants, and purging a big tenant from a source.

Run it with the project installed (``pip install -e .``) from the repository root::

    python benchmarks/retention.py [--tenants 100000] [--due 1000] [--rows 1000000] [--repeat 5]

It reads ``TEST_DATABASE_URL`` (default postgresql+psycopg://postgres@127.0.0.1:5432/test)
and works in a private PostgreSQL database next to it, ``offboard_bench_retention``, dropped
and created afresh.

What it does (see docs/performance.md):

1. the app's schema (``compliance.schema.upgrade``), then ``--tenants`` tenants in one
   ``INSERT ... SELECT generate_series``: ``--due`` of them closed more than 90 days before
   ``now``, the others open or closed recently, and a few dozen with a ``RetentionOverride``
   (some making a long-closed tenant not yet due, some making a recently closed one due);
   ``retention.policy.due_for_primary_purge(now)`` is timed ``--repeat`` times from a fresh
   session (median: ``sweep_s``), its answer checked against an independent query, and the
   plain query's ``EXPLAIN (ANALYZE, BUFFERS)`` printed (it should use the partial index
   ``ix_tenants_primary_purge``);
2. ``bench.events``, in the same private database: ``--rows`` rows of tenant 1 among twice as
   many, interleaved (every other row), primary key ``id``, an index on ``(tenant_id, id)``;
3. the baseline: ``DELETE FROM bench.events WHERE tenant_id = 1`` in one transaction, timed,
   then ROLLED BACK so the rows stay (``baseline_delete_rows_per_s``);
4. the purge: the real ``sql`` source's ``erase`` of tenant 1 (``SqlSource``, batches of
   ``ERASE_BATCH`` rows, each its own transaction). Every DELETE transaction is timed from
   the engine's ``begin`` event to the connection's return to the pool (after its COMMIT), so
   ``max_lock_s`` is the longest time any batch held its row locks (the reads between batches,
   which hold none, are reported apart as ``check_s_max``); ``purge_rows_per_s`` is
   the rows removed over the whole ``erase`` call. Then ``count`` must be 0 and tenant 2's
   rows must all be there.

It prints a table, then, as its last line, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

# Run as a script, this folder is first on sys.path, where benchmarks/audit.py would hide the
# ``audit`` package the service imports.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DATABASE = "offboard_bench_retention"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)  # the sweep's "now"
RETENTION_DAYS = 90  # the default policy (OFFBOARD_RETENTION_DAYS)
OVERRIDES = 24  # of each kind: a long-closed tenant kept longer, a recently closed one due sooner
TENANT, OTHER = 1, 2  # the purged tenant of bench.events, and the one that must stay
TARGETS = {"sweep_s": 1.0, "purge_rows_per_s": 50_000, "max_lock_s": 1.0}

# Tenant g: every (tenants / due)-th is due (closed 91..455 days before NOW); of the rest, one
# in three closed 0..89 days before NOW, the others open.
TENANTS = """
INSERT INTO tenants (id, external_ref, name, region, value_tier, contact_email, closed_at,
                     purged_at, backups_purged_at, created_at, updated_at)
SELECT g, 'bench-' || g, 'Tenant ' || g, (ARRAY['DE', 'FR', 'US', 'UK'])[1 + g % 4], 'standard',
       'owner' || g || '@example.com',
       CASE WHEN g % :every = 0 THEN :now - (91 + g % 365) * interval '1 day' - interval '1 hour'
            WHEN g % 3 = 0 THEN :now - (g % 90) * interval '1 day' - interval '1 hour'
            ELSE NULL END,
       NULL, NULL, :now - interval '3 years', :now - interval '1 day'
FROM generate_series(1, :tenants) AS g
"""
# Long-closed tenants kept for ten years by contract: not due. Recently closed ones (30..89
# days ago) whose contract says 7 days: due.
OVERRIDE_ROWS = """
INSERT INTO retention_overrides (tenant_id, primary_days, backup_months, reason, set_by, set_at)
(SELECT id, 3650, NULL::int, 'contract: kept ten years', 'bench', :now FROM tenants
 WHERE closed_at <= :now - interval '91 days' ORDER BY id LIMIT :overrides)
UNION ALL
(SELECT id, 7, NULL::int, 'contract: deleted after a week', 'bench', :now FROM tenants
 WHERE closed_at BETWEEN :now - interval '89 days' AND :now - interval '30 days'
 ORDER BY id LIMIT :overrides)
"""
# What the sweep must find, computed another way: every closed, unpurged tenant whose own
# retention (override or default) has run out.
EXPECTED_DUE = """
SELECT t.id FROM tenants t LEFT JOIN retention_overrides o ON o.tenant_id = t.id
WHERE t.closed_at IS NOT NULL AND t.purged_at IS NULL
  AND t.closed_at + coalesce(o.primary_days, :days) * interval '1 day' <= :now
"""

EVENTS = """
CREATE SCHEMA bench;
CREATE TABLE bench.events (
    id bigint PRIMARY KEY, tenant_id int NOT NULL, user_email text NOT NULL,
    created_at timestamptz NOT NULL, event_type text NOT NULL, amount numeric(12,2),
    payload jsonb, note text);
{rows}
CREATE INDEX ix_events_tenant ON bench.events (tenant_id, id);
"""
# The rows of tenants ``{tenants}``: both at first, tenant 1's again for the second purge.
EVENT_ROWS = """
INSERT INTO bench.events
SELECT g, 1 + g % 2, 'user' || g % 9973 || '@example.com',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1.25 second',
       (ARRAY['login', 'logout', 'purchase', 'view', 'export', 'update'])[1 + g % 6],
       CASE WHEN g % 10 = 0 THEN NULL ELSE round((g % 100000) / 7.0, 2) END,
       jsonb_build_object('session', md5(g::text), 'ip', '10.' || g % 256 || '.' || g % 97 || '.1',
                          'agent', 'Mozilla/5.0', 'ok', g % 3 = 0, 'ref', 'order-' || g),
       'note ' || substr(md5((g * 7)::text) || md5((g * 11)::text), 1, 55)
FROM generate_series(1, {total}) AS g
WHERE 1 + g % 2 IN ({tenants});
"""


def private_database(base_url: str) -> str:
    """A fresh database for the run: the benchmark never touches the tests' data."""
    url = make_url(base_url)
    if url.get_backend_name() != "postgresql":
        raise SystemExit("this benchmark measures PostgreSQL: point TEST_DATABASE_URL at one")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()
    return url.set(database=DATABASE).render_as_string(hide_password=False)


def setup(workdir: Path) -> str:
    """Settings, schema and the shared session on a private database; its URL."""
    from compliance import config, db, schema

    url = private_database(os.environ.get("TEST_DATABASE_URL", DEFAULT_DATABASE_URL))
    schema.upgrade(url)
    config.use(config.load({"OFFBOARD_ENV": "test", "OFFBOARD_INSTANCE_DIR": str(workdir),
                            "DATABASE_URL": url, "LOG_LEVEL": "WARNING",
                            "OFFBOARD_RETENTION_DAYS": str(RETENTION_DAYS)}))
    db.configure(url)
    return url


def vacuum(url: str, table: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"VACUUM (ANALYZE) {table}")  # hint bits and statistics set
    engine.dispose()


# -- 1. the sweep ------------------------------------------------------------------------------


def fill_tenants(url: str, tenants: int, due: int) -> dict[str, Any]:
    from compliance import db

    started = time.perf_counter()
    with db.transaction() as session:
        session.execute(text(TENANTS), {"every": tenants // due, "now": NOW, "tenants": tenants})
        session.execute(text(OVERRIDE_ROWS), {"now": NOW, "overrides": OVERRIDES})
        session.execute(text("SELECT setval(pg_get_serial_sequence('tenants', 'id'), :top)"),
                        {"top": tenants})
    vacuum(url, "tenants")
    vacuum(url, "retention_overrides")
    seconds = time.perf_counter() - started
    with db.transaction() as session:
        closed = session.execute(text("SELECT count(*) FROM tenants WHERE closed_at IS NOT NULL")
                                 ).scalar_one()
        overrides = session.execute(text("SELECT count(*) FROM retention_overrides")).scalar_one()
        expected = sorted(session.scalars(text(EXPECTED_DUE), {"days": RETENTION_DAYS, "now": NOW}))
    return {"tenants": tenants, "tenants_closed": closed, "overrides": overrides,
            "tenants_fill_s": round(seconds, 2), "expected": expected}


def time_sweep(repeat: int, expected: list[int]) -> dict[str, Any]:
    """``due_for_primary_purge(NOW)`` from a fresh session each time (its own transaction, as
    the sweep job runs it); its statements captured for EXPLAIN."""
    from compliance import db
    from retention import policy

    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    times = []
    found: list[int] = []
    for run in range(repeat + 1):  # the first run warms the caches and is not counted
        db.session.remove()
        if run == repeat:
            event.listen(db.engine(), "before_cursor_execute", capture)
        started = time.perf_counter()
        with db.transaction():
            found = policy.due_for_primary_purge(NOW)
        if run:
            times.append(time.perf_counter() - started)
        if run == repeat:
            event.remove(db.engine(), "before_cursor_execute", capture)
    if sorted(found) != expected:
        raise SystemExit(f"the sweep found {len(found)} tenants due, expected {len(expected)}")
    plain = next(item for item in statements if "retention_overrides" in item[0]
                 and "NOT (EXISTS" in item[0])
    with db.engine().connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + plain[0], plain[1])
        plan = [row[0] for row in cursor.fetchall()]
        conn.rollback()
    return {"sweep_s": round(statistics.median(times), 4), "sweep_max_s": round(max(times), 4),
            "sweep_due": len(found), "sweep_statements": len(statements),
            "sweep_uses_partial_index": any("ix_tenants_primary_purge" in line for line in plan),
            "explain": plan}


# -- 2. the purge ------------------------------------------------------------------------------


def build_events(url: str, rows: int) -> float:
    engine = create_engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        # Without parameters, so the driver leaves the SQL's "%" alone.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(EVENTS.format(rows=EVENT_ROWS.format(total=2 * rows, tenants=f"{TENANT}, {OTHER}")))
    engine.dispose()
    vacuum(url, "bench.events")
    return time.perf_counter() - started


def counts(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(text(
            "SELECT count(*) FILTER (WHERE tenant_id = :tenant), count(*) FILTER (WHERE tenant_id = :other)"
            " FROM bench.events"), {"tenant": TENANT, "other": OTHER}).one()
    engine.dispose()
    return found[0], found[1]


def baseline_delete(url: str, rows: int) -> dict[str, Any]:
    """One plain DELETE of the tenant's rows in one transaction, rolled back: the rows stay."""
    engine = create_engine(url)
    with engine.connect() as conn:
        transaction = conn.begin()
        started = time.perf_counter()
        deleted = conn.execute(text("DELETE FROM bench.events WHERE tenant_id = :tenant"),
                               {"tenant": TENANT}).rowcount
        seconds = time.perf_counter() - started
        transaction.rollback()
    engine.dispose()
    if deleted != rows or counts(url) != (rows, rows):
        raise SystemExit(f"the baseline DELETE removed {deleted} rows, or did not roll back")
    vacuum(url, "bench.events")  # the aborted deletion's marks on every row cleaned up
    return {"baseline_delete_s": round(seconds, 2), "baseline_delete_rows_per_s": round(rows / seconds)}


def refill(url: str, rows: int) -> float:
    """Tenant 1's rows again, as they were, for the second purge."""
    engine = create_engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(EVENT_ROWS.format(total=2 * rows, tenants=TENANT))
    engine.dispose()
    vacuum(url, "bench.events")
    if counts(url) != (rows, rows):
        raise SystemExit("bench.events was not refilled")
    return time.perf_counter() - started


def purge(url: str, rows: int, *, by_ctid: bool = True) -> dict[str, Any]:
    """The real ``sql`` source erasing tenant 1, every batch transaction timed: its PostgreSQL
    way (one statement per batch, rows picked by ctid), or ``by_ctid=False`` its generic way
    (the batch's primary keys read, then deleted by key)."""
    from exporters.sources import Scope
    from exporters.sources import sql as sql_source

    sql_source.ERASE_BY_CTID = by_ctid
    source = sql_source.SqlSource(sql_source.SqlSource.validate({
        "url": url, "schema": "bench",
        "tables": [{"name": "events", "category": "usage", "tenant_column": "tenant_id"}]}))
    scope = Scope(str(TENANT))
    if source.count(scope) != {"events": rows}:  # connected and reflected before the timing
        raise SystemExit("bench.events does not hold the tenant's rows")
    engine = source._get_engine()
    transactions: list[float] = []  # the DELETE transactions: what holds row locks
    checks: list[float] = []  # the reads between them, which hold none
    opened: list[float] = []
    deleting: list[bool] = [False]

    def on_begin(_conn: Any) -> None:
        opened.append(time.perf_counter())

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        deleting[0] = deleting[0] or statement.lstrip().upper().startswith("DELETE")

    def on_checkin(_dbapi_connection: Any, _record: Any) -> None:  # after COMMIT, back in the pool
        if opened:
            (transactions if deleting[0] else checks).append(time.perf_counter() - opened.pop())
            deleting[0] = False

    event.listen(engine, "begin", on_begin)
    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine.pool, "checkin", on_checkin)
    try:
        started = time.perf_counter()
        removed = source.erase(scope)
        seconds = time.perf_counter() - started
    finally:
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine.pool, "checkin", on_checkin)
    left = source.count(scope)
    source.close()
    if removed != {"events": rows} or left != {"events": 0}:
        raise SystemExit(f"erase removed {removed}, {left} left in scope")
    if counts(url) != (0, rows):
        raise SystemExit("the other tenant's rows were touched")
    slowest = 1 + transactions.index(max(transactions))
    transactions.sort()
    return {"erase_batch": sql_source.ERASE_BATCH, "purge_s": round(seconds, 2),
            "purge_rows_per_s": round(rows / seconds), "purge_transactions": len(transactions),
            "batch_s_p50": round(statistics.median(transactions), 4),
            "batch_s_p99": round(transactions[max(0, int(len(transactions) * 0.99) - 1)], 4),
            "max_lock_s": round(transactions[-1], 4), "max_lock_batch": slowest,
            "check_s_max": round(max(checks, default=0.0), 4), "other_tenant_rows": rows}


# -- the run -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-generic", action="store_true",
                        help="skip the second purge, through the generic (primary-key) batches")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="offboard-bench-retention-"))
    url = setup(workdir)
    figures: dict[str, Any] = {"database": make_url(url).get_backend_name()}
    filled = fill_tenants(url, args.tenants, args.due)
    expected = filled.pop("expected")
    figures |= filled | {"expected_due": len(expected)}
    swept = time_sweep(args.repeat, expected)
    plan = swept.pop("explain")
    figures |= swept
    figures["events_rows"] = args.rows
    figures["events_build_s"] = round(build_events(url, args.rows), 1)
    figures |= baseline_delete(url, args.rows)
    figures |= purge(url, args.rows)
    figures["purge_vs_baseline"] = round(
        figures["purge_rows_per_s"] / figures["baseline_delete_rows_per_s"], 3)
    if not args.no_generic:  # the way every database is erased, and PostgreSQL was before
        figures["refill_s"] = round(refill(url, args.rows), 1)
        figures |= {f"generic_{name}": value for name, value in purge(url, args.rows, by_ctid=False).items()
                    if name not in ("erase_batch", "other_tenant_rows")}

    met = {name: (figures[name] >= limit if name.endswith("per_s") else figures[name] < limit)
           for name, limit in TARGETS.items()}
    met["sweep_uses_partial_index"] = figures["sweep_uses_partial_index"]
    print(f"retention, {figures['database']}")
    print(f"  sweep: due_for_primary_purge        {figures['sweep_s']:>9} s median of {args.repeat} "
          f"(max {figures['sweep_max_s']} s; {args.tenants:,} tenants, {figures['tenants_closed']:,} "
          f"closed, {figures['overrides']} overrides; {figures['sweep_due']:,} due, as expected; "
          "target < 1 s)")
    print("  EXPLAIN (ANALYZE, BUFFERS) of its plain query:")
    for line in plan:
        print(f"    {line}")
    print(f"  baseline: one DELETE, rolled back    {figures['baseline_delete_rows_per_s']:>9,} rows/s "
          f"({args.rows:,} rows in {figures['baseline_delete_s']} s, one transaction)")
    print(f"  SqlSource.erase                      {figures['purge_rows_per_s']:>9,} rows/s "
          f"({args.rows:,} rows in {figures['purge_s']} s, {figures['purge_transactions']} transactions "
          f"of {figures['erase_batch']:,} rows; {figures['purge_vs_baseline']} x baseline; "
          "target >= 50,000)")
    print(f"  batch transaction                    p50 {figures['batch_s_p50']} s, "
          f"p99 {figures['batch_s_p99']} s, max {figures['max_lock_s']} s "
          f"(transaction {figures['max_lock_batch']}; target < 1 s)")
    print(f"  reads between batches (no row lock)  max {figures['check_s_max']} s")
    if not args.no_generic:
        print(f"  the same, generic batches of keys    {figures['generic_purge_rows_per_s']:>9,} rows/s "
              f"({figures['generic_purge_s']} s; batch transaction p50 {figures['generic_batch_s_p50']} s, "
              f"max {figures['generic_max_lock_s']} s; before ctid batches on PostgreSQL)")
    print(f"  after each: 0 rows of tenant {TENANT} in scope, tenant {OTHER}'s {args.rows:,} rows untouched")
    print("targets: " + ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in met.items()))
    figures |= {f"{name}_met": ok for name, ok in met.items()}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
