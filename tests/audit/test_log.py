"""The audit log on the service's database: sequencing, the stored tree, checkpoints, and
``audit verify`` naming the first bad index for every kind of tampering."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, text, update

import audit
from audit import checkpoints, log, notes, proofs
from audit.verify import verify
from compliance import db
from compliance.models import AuditCheckpoint, AuditEvent, AuditLeaf, AuditLogHead, AuditNode, AuditQueue

pytestmark = pytest.mark.usefixtures("session")


def record(count: int, tenant_id: int = 7, start: int = 0) -> None:
    for number in range(start, start + count):
        audit.record("test.event", actor="tester", tenant_id=tenant_id, subject=("thing", number),
                     data={"n": number, "text": "é ✓"})
    db.session.commit()


def reference_root(size: int) -> bytes:
    leaves = db.session.scalars(select(AuditEvent.canonical)
                                .join(AuditLeaf, AuditLeaf.event_id == AuditEvent.id)
                                .order_by(AuditLeaf.log_index).limit(size)).all()
    frontier = proofs.Frontier()
    for leaf in leaves:
        frontier.append(proofs.leaf_hash(leaf.encode()))
    return frontier.root()


def test_record_queues_and_the_sequencer_gives_indices_in_order() -> None:
    record(37)
    assert db.session.scalar(select(func.count()).select_from(AuditQueue)) == 37
    assert log.sequence() == 37
    assert log.sequence() == 0
    assert db.session.scalar(select(func.count()).select_from(AuditQueue)) == 0
    rows = db.session.execute(select(AuditLeaf.log_index, AuditLeaf.event_id)
                              .order_by(AuditLeaf.log_index)).all()
    assert [index for index, _ in rows] == list(range(37))
    assert [event_id for _, event_id in rows] == sorted(event_id for _, event_id in rows)
    assert log.size() == 37
    assert log.root(37) == reference_root(37)
    # Every complete subtree above the leaves is stored: 18 + 9 + 4 + 2 + 1 for 37 leaves.
    assert db.session.scalar(select(func.count()).select_from(AuditNode)) == 34


def test_a_rolled_back_change_leaves_no_event_and_no_gap() -> None:
    record(3)
    audit.record("test.event", actor="tester", data={"n": "rolled back"})
    db.session.rollback()
    record(2, start=3)
    assert log.sequence() == 5
    assert verify().ok


def test_batches_continue_the_same_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log, "SEQUENCE_BATCH", 7)
    record(20)
    assert log.sequence() == 20
    record(13, start=20)
    assert log.sequence() == 13
    assert log.root(33) == reference_root(33)
    assert log.root(20) == reference_root(20)
    report = verify()
    assert report.ok, report.problem
    assert report.size == 33


def test_checkpoints_sign_only_growth_and_extend_each_other() -> None:
    record(5)
    first = checkpoints.checkpoint()
    assert first is not None and first.size == 5
    assert checkpoints.checkpoint() is None  # nothing new
    record(4, start=5)
    second = checkpoints.checkpoint()
    assert second is not None and second.size == 9
    head = checkpoints.parse(second)
    assert (head.size, head.root, head.origin) == (9, log.root(9), second.origin)
    proof = proofs.consistency_proof(5, 9, log.fetch)
    proofs.verify_consistency(5, 9, first.root_hash, second.root_hash, proof)
    lines = second.note.split("\n")
    assert lines[:3] == [second.origin, "9", base64.b64encode(log.root(9)).decode()]
    assert lines[3].startswith("time ") and lines[4] == "" and lines[5].startswith("\u2014 ")
    assert verify().checkpoints == 2


def test_a_checkpoint_is_refused_when_the_tree_no_longer_extends_the_last() -> None:
    record(8)
    signed = checkpoints.checkpoint()
    assert signed is not None
    db.session.execute(update(AuditNode).where(AuditNode.level == 3, AuditNode.index == 0)
                       .values(hash=b"\x00" * 32))
    db.session.commit()
    with pytest.raises(checkpoints.CheckpointRefused, match="no longer has the root of checkpoint"):
        checkpoints.checkpoint(force=True)
    conflict = db.session.scalars(select(AuditCheckpoint).where(AuditCheckpoint.status == "conflict")).one()
    assert conflict.size == 8 and conflict.root_hash != signed.root_hash  # kept as evidence, unsigned
    assert "\u2014" not in conflict.note
    record(3, start=8)
    with pytest.raises(checkpoints.CheckpointRefused, match="does not extend checkpoint"):
        checkpoints.checkpoint()
    alarms = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "alarm.audit_log")).all()
    assert len(alarms) == 2
    assert checkpoints.latest().id == signed.id


# -- audit verify: every kind of tampering names the first bad index ------------------------

SIZE = 40


@pytest.fixture
def signed_log() -> None:
    record(20)
    checkpoints.checkpoint()
    record(SIZE - 20, start=20)
    checkpoints.checkpoint()
    assert verify().ok


def event_id(index: int) -> int:
    return db.session.scalar(select(AuditLeaf.event_id).where(AuditLeaf.log_index == index))


def flip_canonical(index: int) -> None:
    row = db.session.get(AuditEvent, event_id(index))
    canonical = bytearray(row.canonical.encode())
    canonical[len(canonical) // 2] ^= 0x01
    db.session.execute(update(AuditEvent).where(AuditEvent.id == row.id)
                       .values(canonical=canonical.decode(errors="replace")))


def rewrite_with_hash(index: int) -> None:
    """Change an event and its stored leaf hash together, as a careful attacker would."""
    row = db.session.get(AuditEvent, event_id(index))
    forged = row.canonical.replace('"tester"', '"someone"')
    db.session.execute(update(AuditEvent).where(AuditEvent.id == row.id)
                       .values(canonical=forged, actor="someone"))
    db.session.execute(update(AuditLeaf).where(AuditLeaf.log_index == index)
                       .values(leaf_hash=proofs.leaf_hash(forged.encode())))


def swap(first: int, second: int) -> None:
    a, b = event_id(first), event_id(second)
    hashes = {index: db.session.scalar(select(AuditLeaf.leaf_hash).where(AuditLeaf.log_index == index))
              for index in (first, second)}
    db.session.execute(delete(AuditLeaf).where(AuditLeaf.log_index.in_((first, second))))
    db.session.add_all([AuditLeaf(log_index=first, event_id=b, leaf_hash=hashes[second]),
                        AuditLeaf(log_index=second, event_id=a, leaf_hash=hashes[first])])


def delete_event(index: int) -> None:
    identifier = event_id(index)
    db.session.execute(delete(AuditLeaf).where(AuditLeaf.log_index == index))
    db.session.execute(delete(AuditEvent).where(AuditEvent.id == identifier))


def truncate(keep: int) -> None:
    doomed = db.session.scalars(select(AuditLeaf.event_id).where(AuditLeaf.log_index >= keep)).all()
    db.session.execute(delete(AuditLeaf).where(AuditLeaf.log_index >= keep))
    db.session.execute(delete(AuditEvent).where(AuditEvent.id.in_(doomed)))
    db.session.execute(update(AuditLogHead).values(size=keep))


def insert_unqueued() -> None:
    template = db.session.get(AuditEvent, event_id(0))
    db.session.add(AuditEvent(occurred_at=template.occurred_at, actor="intruder", action="test.event",
                              data={}, canonical="{}"))


def edit_checkpoint(change: Callable[[str], str]) -> Callable[[], None]:
    def apply() -> None:
        row = db.session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size)).first()
        db.session.execute(update(AuditCheckpoint).where(AuditCheckpoint.id == row.id)
                           .values(note=change(row.note)))
    return apply


@pytest.mark.parametrize(("tamper", "first_bad", "says"), [
    (lambda: flip_canonical(13), 13, "leaf hash"),
    (lambda: db.session.execute(update(AuditEvent).where(AuditEvent.id == event_id(21))
                                .values(action="test.other")), 21, "columns (action)"),
    (lambda: db.session.execute(update(AuditEvent).where(AuditEvent.id == event_id(3))
                                .values(data={"n": 999})), 3, "columns (data)"),
    (lambda: rewrite_with_hash(11), 10, "subtree of 2 events from index 10"),
    (lambda: swap(4, 5), 4, "subtree of 2 events from index 4"),
    (lambda: swap(2, 30), 2, "from index 2"),
    (lambda: delete_event(17), 17, "index 17 is missing"),
    (lambda: truncate(33), 33, "the log was truncated"),
    (insert_unqueued, None, "written without audit.record"),
    (edit_checkpoint(lambda note: note.replace("\n20\n", "\n21\n", 1)), 0, "checkpoint"),
    (edit_checkpoint(lambda note: note.split("\n", 1)[0] + "x\n" + note.split("\n", 1)[1]), 0, "checkpoint"),
    (edit_checkpoint(lambda note: note.replace("\n\n", "\nextra line\n\n", 1)), 0, "checkpoint"),
])
def test_verify_names_the_first_bad_index(signed_log: None, tamper: Callable[[], None],
                                          first_bad: int | None, says: str) -> None:
    tamper()
    db.session.flush()
    report = verify()
    assert not report.ok
    assert report.first_bad_index == first_bad, report.problem
    assert says in report.problem


def test_verify_catches_a_rewrite_of_every_hash_by_the_checkpoint(signed_log: None) -> None:
    """An attacker who rewrites an event, its leaf hash and every stored node above it is
    still caught: the signed checkpoint's root is not reached."""
    rewrite_with_hash(25)
    db.session.flush()
    frontier = proofs.Frontier()
    leaves = db.session.scalars(select(AuditLeaf.leaf_hash).order_by(AuditLeaf.log_index)).all()
    for leaf in leaves:
        for level, index, value in frontier.append(leaf)[1:]:
            db.session.execute(update(AuditNode).where(AuditNode.level == level, AuditNode.index == index)
                               .values(hash=value))
    report = verify()
    assert not report.ok and report.first_bad_index == 20
    assert "signs a root the stored events no longer give" in report.problem


def test_a_checkpoint_note_signed_by_an_unknown_key_fails(signed_log: None) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    row = checkpoints.latest()
    forged = notes.sign_note(row.note.split("\n\n")[0] + "\n", row.origin, Ed25519PrivateKey.generate())
    db.session.execute(update(AuditCheckpoint).where(AuditCheckpoint.id == row.id).values(note=forged))
    report = verify()
    assert not report.ok and f"checkpoint {row.id}" in report.problem


def test_events_recorded_before_the_tree_are_queued_by_the_migration() -> None:
    """0004 queues the events of older versions: the sequencer takes them in first."""
    sql = text("INSERT INTO audit_queue (event_id) SELECT id FROM audit_events ORDER BY id")
    record(4)
    db.session.execute(delete(AuditQueue))
    db.session.execute(sql)
    assert log.sequence() == 4 and verify().ok


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(st.text(max_size=6), children, max_size=4)),
    max_leaves=12)


@given(JSON_VALUES)
@settings(max_examples=400, deadline=None)
def test_canonical_is_rfc8785_byte_for_byte(value: object) -> None:
    """The fast path (json.dumps) and rfc8785 agree wherever the fast path is taken."""
    try:
        expected = rfc8785.dumps({"data": value}).decode()
    except (rfc8785.CanonicalizationError, UnicodeEncodeError, ValueError):
        return  # values RFC 8785 cannot represent; record would refuse them too
    assert log.canonical(data=value) == expected


@pytest.mark.parametrize("value", ["\u2028\u007f\x00\x1f\"\\/é😀", 2**53 - 1, -(2**53 - 1), True, None,
                                   {"b": 1, "a": [1, "x"], "é": 2, "😀": 3, "\ue000": 4}])
def test_canonical_edges(value: object) -> None:
    assert log.canonical(data=value) == rfc8785.dumps({"data": value}).decode()
