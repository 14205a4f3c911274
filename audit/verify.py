"""``offboard audit verify``: recompute the whole tree from the stored events and hold it
against every signed checkpoint.

The walk streams the events by log index once, so memory stays flat and 1,000,000 events take
seconds. It stops at the first problem and names the first bad index:

- an index missing from the sequence (a deleted event) or a row out of place;
- an event whose columns no longer say what its canonical JSON (the leaf) says;
- a leaf whose stored hash is not the hash of its canonical JSON;
- a stored subtree hash the events no longer produce (events swapped or rewritten together
  with their leaf hashes) — named by the first index of that subtree;
- a checkpoint whose signature fails or whose note disagrees with its row — named as index 0,
  since nothing it signs can be relied on;
- a checkpoint whose root the recomputed tree does not reach at its size — named by the
  first index after the last checkpoint that still matched;
- a checkpoint larger than the log (a truncated log) — named by the first missing index.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Text, and_, cast, func, or_, select

from audit import keys, log, notes, proofs
from compliance import db
from compliance.models import AuditCheckpoint, AuditEvent, AuditLeaf, AuditNode, AuditQueue

BATCH = 10_000


@dataclass
class Report:
    """What ``verify`` found: ``ok``, or the first bad index and the problem in words."""

    size: int = 0
    checkpoints: int = 0
    queued: int = 0
    first_bad_index: int | None = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


class _Bad(Exception):
    def __init__(self, index: int | None, problem: str) -> None:
        super().__init__(problem)
        self.index, self.problem = index, problem


def verify() -> Report:
    """Check the whole log; never raises for a bad log, the report says what is wrong."""
    report = Report()
    try:
        _verify(report)
    except _Bad as bad:
        report.first_bad_index, report.problem = bad.index, bad.problem
    return report


def _verify(report: Report) -> None:
    pending = _signed_checkpoints(report)
    report.checkpoints = len(pending)
    frontier, last_good = proofs.Frontier(), 0
    for batch, stored in _batches():
        for row in batch:
            index = frontier.size
            if row[0] != index:
                raise _Bad(index, f"index {index} is missing: the next stored event has index {row[0]}")
            _check_event(row)
            for level, node_index, value in frontier.append(row[1])[1:]:
                if stored.get((level, node_index)) != value:
                    first = node_index << level
                    raise _Bad(first, f"the subtree of {1 << level} events from index {first} no longer "
                                      "has its stored hash: events in it were changed, swapped or replaced")
            while pending and pending[0][1].size == frontier.size:
                row_id, head = pending.pop(0)
                if frontier.root() != head.root:
                    raise _Bad(last_good, f"checkpoint {row_id} ({head.size} events) signs a root the "
                                          "stored events no longer give")
                last_good = head.size
    report.size = frontier.size
    if pending:
        row_id, head = pending[0]
        raise _Bad(frontier.size, f"checkpoint {row_id} signs {head.size} events but the log holds "
                                  f"{frontier.size}: the log was truncated")
    _check_counts(report)


def _check_counts(report: Report) -> None:
    """The head, the leaves and the events agree with the walk: nothing beside the tree."""
    head_size = log.size()
    leaves = db.session.scalar(select(func.count()).select_from(AuditLeaf)) or 0
    events = db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    report.queued = db.session.scalar(select(func.count()).select_from(AuditQueue)) or 0
    if head_size != report.size or leaves != report.size:
        raise _Bad(report.size, f"the log's head says {head_size} events and {leaves} leaves are stored, "
                                f"but {report.size} follow each other from index 0")
    if events != leaves + report.queued:
        raise _Bad(None, f"{events} events are stored but {leaves} are in the tree and {report.queued} "
                         "queued: an event was written without audit.record")


def _stored_nodes(connection: Connection, start: int, end: int) -> dict[tuple[int, int], bytes]:
    """The stored subtree hashes completed by leaves ``start .. end - 1``, in one query."""
    ranges = []
    for level in range(1, end.bit_length() + 1):
        low, high = ((start + (1 << level)) >> level) - 1, (end >> level) - 1
        if low <= high:
            ranges.append(and_(AuditNode.level == level, AuditNode.index.between(low, high)))
    if not ranges:
        return {}
    return {(level, index): value for level, index, value in connection.execute(
        select(AuditNode.level, AuditNode.index, AuditNode.hash).where(or_(*ranges)))}


def _signed_checkpoints(report: Report) -> list[tuple[int, notes.Checkpoint]]:
    """Every good checkpoint, its signature checked and its note matching its row, by size."""
    heads = []
    rows = db.session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size, AuditCheckpoint.id))
    verifiers_for: dict[str, dict[bytes, tuple[str, bytes]]] = {}
    published = keys.public_keys()
    for row in rows:
        if row.status != "ok":
            report.notes.append(f"checkpoint {row.id} ({row.size} events) is kept as evidence of a "
                                f"conflict: {row.status}")
            continue
        verifiers = verifiers_for.setdefault(row.origin, keys.note_verifiers(row.origin, published))
        try:
            head = notes.parse_checkpoint(notes.verify_note(row.note, verifiers))
        except notes.NoteError as error:
            raise _Bad(0, f"checkpoint {row.id}: {error}") from error
        if (head.origin, head.size, head.root) != (row.origin, row.size, row.root_hash):
            raise _Bad(0, f"checkpoint {row.id}: its row no longer says what its signed note says")
        if heads and head.size == heads[-1][1].size and head.root != heads[-1][1].root:
            raise _Bad(0, f"checkpoints {heads[-1][0]} and {row.id} sign different roots for "
                          f"{head.size} events")
        heads.append((row.id, head))
    return heads


def _batches() -> Iterator[tuple[list[Any], dict[tuple[int, int], bytes]]]:
    """Every sequenced event with its leaf, by index, ``BATCH`` at a time, with the stored
    subtree hashes that batch completes: memory holds two batches whatever the log's size.

    A thread reads the next batch while this one is checked (the driver waits for the
    database without the GIL). Core rows, ``data`` as its stored text: the walk is the cost
    of verifying, so nothing is built that the checks do not use.
    """
    connection = db.session.connection()
    columns = [AuditLeaf.log_index, AuditLeaf.leaf_hash, AuditEvent.canonical, AuditEvent.action,
               AuditEvent.actor, AuditEvent.occurred_at, AuditEvent.request_id, AuditEvent.subject_type,
               AuditEvent.subject_id, AuditEvent.tenant_id, cast(AuditEvent.data, Text)]

    def read(after: int) -> tuple[list[Any], dict[tuple[int, int], bytes]]:
        rows = connection.execute(select(*columns).join(AuditEvent, AuditEvent.id == AuditLeaf.event_id)
                                  .where(AuditLeaf.log_index > after)
                                  .order_by(AuditLeaf.log_index).limit(BATCH)).all()
        return rows, _stored_nodes(connection, after + 1, after + 1 + len(rows))

    with ThreadPoolExecutor(1) as reader:
        coming = reader.submit(read, -1)
        while True:
            rows, stored = coming.result()
            if not rows:
                return
            coming = reader.submit(read, rows[-1][0])
            yield rows, stored


def _check_event(row: Any) -> None:
    (index, leaf_hash, text, action, actor, occurred_at, request_id, subject_type, subject_id,
     tenant_id, data) = row
    leaf = text.encode()
    if proofs.leaf_hash(leaf) != leaf_hash:
        raise _Bad(index, f"event {index}: its stored leaf hash is not the hash of its canonical JSON")
    try:
        said, stored_data = _loads(leaf), _loads(data)
    except ValueError as error:
        raise _Bad(index, f"event {index}: its canonical JSON or its data does not parse") from error
    stored = {"action": action, "actor": actor, "data": stored_data, "occurred_at": occurred_at.isoformat(),
              "request_id": request_id, "subject": [subject_type, subject_id] if subject_type else None,
              "tenant_id": tenant_id}
    if said != stored:
        changed = sorted(name for name in stored if said.get(name) != stored[name])
        raise _Bad(index, f"event {index}: its columns ({', '.join(changed)}) no longer say what its "
                          "canonical JSON says")


def _loads(text: str | bytes) -> Any:
    """orjson, three times faster; the standard parser for what it refuses (integers past 64 bits)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
