"""The audit trail: ``record`` is the only way in; ``sequence`` puts events into the Merkle tree.

``record`` adds the event, and its place in the sequencer's queue, to the caller's session: they
are written in the caller's transaction (before its next query, flush, savepoint or commit), so
they commit or roll back with the change they describe: no change without its event, no event
without its change. The transaction's connection keeps them in a list and writes them together
(on PostgreSQL: the ids in one query, the events by COPY, the queue rows as one array), so a
transaction that records many pays for a few statements, not for each event. Events are never
updated or deleted.

``sequence`` is the one sequencer (as Trillian integrates queued leaves): holding the lock on
the log's head row, it takes the lowest committed queued ids first, gives them the next log
indices, stores their leaf hashes and every subtree they complete, and empties the queue. A
transaction that commits late is simply sequenced in a later batch, so indices follow the
order in which events became visible, with no gap and no repeat however many processes write.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import rfc8785
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, Engine, delete, event, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from audit import proofs
from compliance import clock, db
from compliance.models import AuditEvent, AuditLeaf, AuditLogHead, AuditNode, AuditQueue

SYSTEM = "system"
SEQUENCE_BATCH = 5_000  # events per sequencer transaction
VACUUM_AFTER = 20_000  # events sequenced in one call after which the queue is vacuumed
_HEAD = 1  # the head row's id
_PENDING = "offboard_audit_pending"  # connection.info: the events recorded, not yet written
_SAFE_INTEGER = 2**53 - 1  # RFC 8785 numbers are IEEE doubles: exact up to here
_PG_NEXT_IDS = text("SELECT nextval(pg_get_serial_sequence('audit_events', 'id')) "
                    "FROM generate_series(1, :count)")
_PG_COPY_EVENTS = ("COPY audit_events (id, occurred_at, actor, action, tenant_id, request_id, subject_type, "
                   "subject_id, data, canonical) FROM STDIN")
# Arrays travel as one comma-separated text each (hashes in hex): psycopg builds a list
# parameter element by element, PostgreSQL splits one string in C.
_PG_QUEUE = text("INSERT INTO audit_queue (event_id) "
                 "SELECT unnest(CAST(string_to_array(:ids, ',') AS bigint[]))")
_PG_LEAVES = text(
    "INSERT INTO audit_leaves (log_index, event_id, leaf_hash) SELECT a, b, decode(c, 'hex') FROM unnest("
    "CAST(string_to_array(:indices, ',') AS bigint[]), CAST(string_to_array(:events, ',') AS bigint[]), "
    "string_to_array(:hashes, ',')) AS t(a, b, c)")
_PG_NODES = text(
    "INSERT INTO audit_nodes (level, idx, hash) SELECT a, b, decode(c, 'hex') FROM unnest("
    "CAST(string_to_array(:levels, ',') AS smallint[]), CAST(string_to_array(:indices, ',') AS bigint[]), "
    "string_to_array(:hashes, ',')) AS t(a, b, c)")
_PG_UNQUEUE = text("DELETE FROM audit_queue "
                   "WHERE event_id = ANY(CAST(string_to_array(:ids, ',') AS bigint[]))")
_SURROGATE = re.compile("[\ud800-\udfff]")


def record(
    action: str,
    *,
    actor: str,
    tenant_id: int | None = None,
    request_id: int | None = None,
    subject: tuple[str, str | int] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Append an event for ``action`` (e.g. ``request.acknowledged``) done by ``actor``."""
    occurred_at = clock.now()
    subject_type, subject_id = (subject[0], str(subject[1])) if subject else (None, None)
    payload = data or {}
    text = canonical(action=action, actor=actor, data=payload, occurred_at=occurred_at.isoformat(),
                     request_id=request_id, subject=[subject_type, subject_id] if subject_type else None,
                     tenant_id=tenant_id)
    db.session.connection().info.setdefault(_PENDING, []).append({
        "occurred_at": occurred_at, "actor": actor, "action": action, "tenant_id": tenant_id,
        "request_id": request_id, "subject_type": subject_type, "subject_id": subject_id,
        "data": payload, "canonical": text})


def canonical(**fields: Any) -> str:
    """The event as its leaf: RFC 8785 canonical JSON of exactly these fields.

    For the values events hold (text, integers JavaScript represents exactly, booleans, null,
    ASCII keys) ``json.dumps`` with sorted keys writes the same bytes as RFC 8785, ten times
    faster; anything else (floats, huge integers, other keys) goes through ``rfc8785``.
    """
    if _plain(fields):
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return rfc8785.dumps(fields).decode()


def _plain(value: Any) -> bool:
    if isinstance(value, str):
        return not _SURROGATE.search(value)
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -_SAFE_INTEGER <= value <= _SAFE_INTEGER
    if isinstance(value, dict):
        return all(isinstance(key, str) and key.isascii() and _plain(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return all(_plain(item) for item in value)
    return False


def write_pending(connection: Connection) -> None:
    """Write the events recorded on this connection's transaction since the last write."""
    rows = connection.info.pop(_PENDING, None)
    if not rows:
        return
    if connection.dialect.driver == "psycopg" and len(rows) > 1:
        # Ids drawn first, then the events by COPY and the queue as one array: a multi-row
        # INSERT ... RETURNING costs more to build and parse than to run.
        ids = connection.execute(_PG_NEXT_IDS, {"count": len(rows)}).scalars().all()
        cursor = connection.connection.driver_connection.cursor()  # this transaction's, raw
        with cursor.copy(_PG_COPY_EVENTS) as copy:
            for id_, row in zip(ids, rows, strict=True):
                copy.write_row((id_, row["occurred_at"], row["actor"], row["action"], row["tenant_id"],
                                row["request_id"], row["subject_type"], row["subject_id"],
                                Jsonb(row["data"]), row["canonical"]))
        connection.execute(_PG_QUEUE, {"ids": _joined(ids)})
        return
    events, queue = AuditEvent.__table__, AuditQueue.__table__
    if connection.dialect.name == "postgresql":  # one event: one round trip for both rows
        added = events.insert().values(**rows[0]).returning(events.c.id).cte("added")
        connection.execute(queue.insert().from_select(["event_id"], select(added.c.id)))
        return
    ids = connection.execute(events.insert().returning(events.c.id, sort_by_parameter_order=True),
                             rows).scalars().all()
    connection.execute(queue.insert(), [{"event_id": event_id} for event_id in ids])


def _write_session(session: Session) -> None:
    if session.in_transaction():
        write_pending(session.connection())


# Written before the session's next flush, query or commit, and before a savepoint starts (so
# a savepoint rolled back keeps what was recorded before it); forgotten when rolled back.
event.listen(Session, "before_commit", _write_session)
event.listen(Session, "before_flush", lambda session, *_: _write_session(session))
event.listen(Session, "do_orm_execute", lambda state: state.is_select and _write_session(state.session))
event.listen(Engine, "savepoint", lambda connection, _name: write_pending(connection))
event.listen(Engine, "rollback_savepoint", lambda connection, *_: connection.info.pop(_PENDING, None))
event.listen(Engine, "rollback", lambda connection: connection.info.pop(_PENDING, None))


def sequence() -> int:
    """Integrate every committed queued event into the tree; how many were sequenced.

    Each batch takes the lowest queued ids visible, so one writer's events keep the order of
    its commits. Each batch is its own transaction, so a sequencer killed at any line leaves
    either the batch integrated whole or the queue as it was.
    """
    done = 0
    while taken := _sequence_batch():
        done += taken
    if done >= VACUUM_AFTER and db.engine().dialect.name == "postgresql":
        _vacuum_queue()
    return done


def _vacuum_queue() -> None:
    """Clear the queue's dead rows now: until vacuumed, every scan of the queue's index walks
    the entries of the rows already taken (a million of them make an empty queue cost 30 ms)."""
    with db.engine().connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM audit_queue"))


def _sequence_batch() -> int:
    with db.transaction() as session:
        head = lock_head()
        queued = session.execute(
            select(AuditQueue.event_id, AuditEvent.canonical).join(AuditEvent)
            .order_by(AuditQueue.event_id).limit(SEQUENCE_BATCH)).all()
        if not queued:
            return 0
        frontier = proofs.Frontier(head.size, [fetch(proofs.root_nodes(head.size))[node]
                                               for node in proofs.root_nodes(head.size)])
        leaves: list[tuple[int, int, bytes]] = []
        nodes: list[tuple[int, int, bytes]] = []
        for event_id, text in queued:
            completed = frontier.append(proofs.leaf_hash(text.encode()))
            leaves.append((frontier.size - 1, event_id, completed[0][2]))
            nodes += completed[1:]
        _store(session.connection(), leaves, nodes)
        head.size = frontier.size
        return len(queued)


def _store(connection: Connection, leaves: list[tuple[int, int, bytes]],
           nodes: list[tuple[int, int, bytes]]) -> None:
    """Insert the batch's leaves and subtrees and take its events off the queue."""
    event_ids = [event_id for _, event_id, _ in leaves]
    if connection.dialect.name == "postgresql":  # three statements, whatever the batch's size
        indices, events, hashes = zip(*leaves, strict=True)
        connection.execute(_PG_LEAVES, {"indices": _joined(indices), "events": _joined(events),
                                        "hashes": _joined(hashes)})
        if nodes:
            levels, indices, hashes = zip(*nodes, strict=True)
            connection.execute(_PG_NODES, {"levels": _joined(levels), "indices": _joined(indices),
                                           "hashes": _joined(hashes)})
        connection.execute(_PG_UNQUEUE, {"ids": _joined(event_ids)})
        return
    connection.execute(AuditLeaf.__table__.insert(), [
        {"log_index": index, "event_id": event_id, "leaf_hash": leaf} for index, event_id, leaf in leaves])
    if nodes:
        connection.execute(AuditNode.__table__.insert(), [
            {"level": level, "idx": index, "hash": value} for level, index, value in nodes])
    connection.execute(delete(AuditQueue).where(AuditQueue.event_id.in_(event_ids)))


def _joined(values: Iterable[int] | Iterable[bytes]) -> str:
    return ",".join(value.hex() if isinstance(value, bytes) else str(value) for value in values)


def lock_head() -> AuditLogHead:
    """The head row, locked until the transaction ends (made on first use, by whoever is first)."""
    session = db.session
    dialect = session.get_bind().dialect.name
    make = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    session.execute(make(AuditLogHead).values(id=_HEAD, size=0).on_conflict_do_nothing())
    return session.execute(select(AuditLogHead).where(AuditLogHead.id == _HEAD)
                           .with_for_update()).scalar_one()


def size() -> int:
    """How many events the tree holds (sequenced; queued ones are not counted yet)."""
    return db.session.scalar(select(AuditLogHead.size).where(AuditLogHead.id == _HEAD)) or 0


def fetch(nodes: Collection[proofs.NodeId]) -> Mapping[proofs.NodeId, bytes]:
    """Stored complete-subtree hashes: leaves from ``audit_leaves``, the rest from ``audit_nodes``."""
    found: dict[proofs.NodeId, bytes] = {}
    leaves = [index for level, index in nodes if level == 0]
    inner = [(level, index) for level, index in nodes if level > 0]
    if leaves:
        found |= {(0, index): value for index, value in db.session.execute(
            select(AuditLeaf.log_index, AuditLeaf.leaf_hash).where(AuditLeaf.log_index.in_(leaves)))}
    if inner:
        found |= {(level, index): value for level, index, value in db.session.execute(
            select(AuditNode.level, AuditNode.index, AuditNode.hash)
            .where(tuple_(AuditNode.level, AuditNode.index).in_(inner)))}
    return found


def root(tree_size: int) -> bytes:
    """The root hash of the tree's first ``tree_size`` events."""
    return proofs.root(tree_size, fetch)
