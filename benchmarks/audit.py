"""Audit log speed: recording, sequencing and checkpointing; proofs; ``audit verify``.

Run it with the project installed (``pip install -e .``) from the repository root::

    python benchmarks/audit.py [--events 1000000] [--single 5000] [--proofs 1000]

It reads ``TEST_DATABASE_URL`` (default postgresql+psycopg://postgres@127.0.0.1:5432/test)
and works in a private database next to it, ``offboard_bench_audit``, dropped and created
afresh (on SQLite: a file in a temporary directory).

What it does (see docs/performance.md):

1. baseline: ``--single`` plain INSERTs of a comparable row, one per transaction, from 8
   processes at once (a commit waits for its WAL flush, about 1 ms here, so one writer alone
   can never pass about 1,000 commits/s; concurrent commits share flushes);
2. ``--single`` calls of ``audit.record``, one per transaction, from 8 processes, then the
   sequencer and a signed checkpoint: ``record_per_s`` counts all of it; and a tenth as many
   from one thread alone (``record_one_writer_per_s``);
3. the log filled to ``--events`` with ``audit.record`` in transactions of 1,000 events,
   sequenced and checkpointed every 100,000: ``record_batched_per_s``;
4. ``--proofs`` inclusion proofs for random indices against the 1M checkpoint, each with its
   one database lookup, checked with ``verify_inclusion``: ``proof_ms_p50`` / ``proof_ms_p99``;
5. ``audit verify`` of the whole log: ``verify_1m_s``.

It prints a table, then, as its last line, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

# Run as a script, this folder is first on sys.path, where this file would hide the ``audit``
# package it measures.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DATABASE = "offboard_bench_audit"
BATCH, CHECKPOINT_EVERY = 1_000, 100_000
WRITERS = 8  # processes writing one event per transaction at once
TARGETS = {"record_per_s": 1_000, "record_batched_per_s": 10_000, "proof_ms_p99": 50, "verify_1m_s": 20}


def private_database(base_url: str, workdir: Path) -> str:
    """A fresh database for the run: the benchmark never touches the tests' data."""
    url = make_url(base_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{workdir / 'audit.db'}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()
    return url.set(database=DATABASE).render_as_string(hide_password=False)


def event(number: int) -> dict[str, Any]:
    """An event shaped like the service's: an action on a request, with a little data."""
    return {"action": "download.bundle", "actor": "customer", "tenant_id": 1 + number % 500,
            "request_id": 1 + number % 2_000, "subject": ("download_link", number % 10_000),
            "data": {"outcome": "ok", "ip": "203.0.113.7", "user_agent": "curl/7.88.1", "n": number}}


def timed(work: Any) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def setup(workdir: Path) -> str:
    """Settings, schema and engine on a private database; its URL."""
    from compliance import db, schema

    url = private_database(os.environ.get("TEST_DATABASE_URL", DEFAULT_DATABASE_URL), workdir)
    schema.upgrade(url)
    _connect(url, str(workdir))
    with db.engine().begin() as connection:
        connection.execute(text("CREATE TABLE plain_rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
    return url


def _connect(url: str, workdir: str) -> None:
    """A writer process's set-up, as a service process does at start."""
    from compliance import config, db

    config.use(config.load({"OFFBOARD_ENV": "test", "OFFBOARD_INSTANCE_DIR": workdir, "DATABASE_URL": url,
                            "LOG_LEVEL": "WARNING"}))
    db.configure(url)


def _write(kind: str, numbers: range) -> None:
    """One writer: a transaction per row, a plain INSERT or an ``audit.record``."""
    import audit
    from compliance import db

    for number in numbers:
        with db.transaction() as session:
            if kind == "plain":
                session.execute(text("INSERT INTO plain_rows (id, body) VALUES (:id, :body)"),
                                {"id": number, "body": json.dumps(event(number))})
            else:
                audit.record(**event(number))


def one_per_transaction(count: int, url: str, workdir: Path) -> dict[str, Any]:
    """Plain INSERTs, then ``audit.record`` calls, one per transaction, from ``WRITERS``
    processes at once (as a service's web and worker processes write); the events sequenced
    and checkpointed inside the timing. And a tenth as many from this one process alone."""
    from audit import checkpoints

    share = count // WRITERS
    with ProcessPoolExecutor(WRITERS, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_connect, initargs=(url, str(workdir))) as pool:
        list(pool.map(_write, ["plain"] * WRITERS, [range(0)] * WRITERS))  # every process started

        def run(kind: str, offset: int) -> None:
            list(pool.map(_write, [kind] * WRITERS,
                          [range(offset + n * share, offset + (n + 1) * share) for n in range(WRITERS)]))

        plain_rate = share * WRITERS / timed(lambda: run("plain", 0))
        record_rate = share * WRITERS / timed(lambda: (run("record", 0), checkpoints.checkpoint()))
    single = count // 10
    alone = single / timed(lambda: (_write("record", range(single)), checkpoints.checkpoint()))
    return {"baseline_insert_per_s": round(plain_rate), "record_per_s": round(record_rate),
            "record_vs_baseline": round(record_rate / plain_rate, 3), "record_one_writer_per_s": round(alone)}


def fill(start: int, events: int) -> dict[str, Any]:
    """The log up to ``events`` in transactions of ``BATCH``, sequenced and checkpointed as it goes."""
    import audit
    from audit import checkpoints, log
    from compliance import db

    stages = {"record": 0.0, "sequence": 0.0, "checkpoint": 0.0}
    done, started = start, time.perf_counter()
    while done < events:
        size = min(BATCH, events - done)
        stages["record"] -= time.perf_counter()
        with db.transaction():
            for number in range(done, done + size):
                audit.record(**event(number))
        stages["record"] += time.perf_counter()
        done += size
        if done % CHECKPOINT_EVERY == 0 or done == events:
            stages["sequence"] += timed(log.sequence)
            stages["checkpoint"] += timed(checkpoints.checkpoint)
    rate = (events - start) / (time.perf_counter() - started)
    return {"record_batched_per_s": round(rate)} | {
        f"batched_{name}_s": round(seconds, 2) for name, seconds in stages.items()}


def proof_times(count: int) -> dict[str, Any]:
    """Inclusion proofs for random indices against the latest checkpoint, each from a fresh
    session (its one database lookup included), each checked."""
    from audit import checkpoints, log, proofs
    from compliance import db
    from compliance.models import AuditLeaf

    head = checkpoints.parse(checkpoints.latest())
    times = []
    for index in (random.Random(1).randrange(head.size) for _ in range(count)):  # noqa: S311
        db.session.remove()
        started = time.perf_counter()
        proof = proofs.inclusion_proof(index, head.size, log.fetch)
        times.append((time.perf_counter() - started) * 1000)
        leaf = db.session.get(AuditLeaf, index).leaf_hash
        proofs.verify_inclusion(leaf, index, head.size, proof, head.root)
    times.sort()
    return {"proof_ms_p50": round(statistics.median(times), 2),
            "proof_ms_p99": round(times[max(0, int(len(times) * 0.99) - 1)], 2)}


def verify_time(events: int) -> dict[str, Any]:
    from audit import verify
    from compliance import db

    db.session.remove()
    started = time.perf_counter()
    with db.transaction():
        report = verify.verify()
    seconds = time.perf_counter() - started
    if not report.ok or report.size != events:
        raise SystemExit(f"audit verify failed: {report.problem}")
    return {"verify_1m_s": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--single", type=int, default=5_000)
    parser.add_argument("--proofs", type=int, default=1_000)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="offboard-bench-audit-"))
    url = setup(workdir)
    figures: dict[str, Any] = {"database": make_url(url).get_backend_name(), "events": args.events}
    figures |= one_per_transaction(args.single, url, workdir)
    from audit import log

    figures |= fill(log.size(), args.events)
    figures |= proof_times(args.proofs)
    figures |= verify_time(args.events)
    met = {name: (figures[name] >= limit if name.endswith("per_s") else figures[name] <= limit)
           for name, limit in TARGETS.items()}
    print(f"audit log, {figures['database']}, {args.events:,} events")
    print(f"  plain INSERT, one per transaction     {figures['baseline_insert_per_s']:>9,} rows/s "
          f"({WRITERS} processes)")
    print(f"  audit.record, one per transaction     {figures['record_per_s']:>9,} events/s "
          f"({WRITERS} processes, {figures['record_vs_baseline']} x plain; sequenced and checkpointed; "
          "target >= 1,000)")
    print(f"  the same, one writer alone            {figures['record_one_writer_per_s']:>9,} events/s")
    print(f"  audit.record, {BATCH:,} per transaction   {figures['record_batched_per_s']:>9,} events/s "
          f"(record {figures['batched_record_s']} s, sequence {figures['batched_sequence_s']} s, "
          f"checkpoint {figures['batched_checkpoint_s']} s; target >= 10,000)")
    print(f"  inclusion proof                       p50 {figures['proof_ms_p50']} ms, "
          f"p99 {figures['proof_ms_p99']} ms (target < 50)")
    print(f"  audit verify, whole log               {figures['verify_1m_s']} s (target < 20)")
    print("targets: " + ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in met.items()))
    figures |= {f"{name}_met": ok for name, ok in met.items()}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
