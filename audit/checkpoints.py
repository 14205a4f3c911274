"""Signed tree heads: the log's size and root, signed with Ed25519 as a C2SP signed note.

A checkpoint is what makes the log tamper-evident: once one is signed (and handed out, in a
certificate or to an auditor), no stored event before its size can change without the tree
no longer matching it. A new checkpoint must extend the previous one: never smaller, and a
consistency proof from the previous one must verify. A tree whose root no longer agrees with
the last checkpoint is refused and raises an alarm; at the same size with another root, the
unsigned head is kept as evidence (``conflict``).
"""

from __future__ import annotations

import structlog
from sqlalchemy import select

from audit import keys, log, notes, proofs
from compliance import clock, config, db
from compliance.models import AuditCheckpoint

logger = structlog.get_logger("offboard.audit")


class CheckpointRefused(RuntimeError):
    """The tree does not extend the last checkpoint: the stored log was changed."""

    def __init__(self, problem: str, evidence: notes.Checkpoint | None = None) -> None:
        super().__init__(problem)
        self.evidence = evidence  # the disagreeing head at the same size, kept unsigned


def latest() -> AuditCheckpoint | None:
    """The newest good checkpoint (the largest tree signed)."""
    return db.session.scalars(select(AuditCheckpoint).where(AuditCheckpoint.status == "ok")
                              .order_by(AuditCheckpoint.size.desc(), AuditCheckpoint.id.desc())
                              .limit(1)).first()


def at_least(size: int) -> AuditCheckpoint | None:
    """The first good checkpoint covering ``size`` events, if one has been signed."""
    return db.session.scalars(select(AuditCheckpoint).where(AuditCheckpoint.status == "ok",
                                                            AuditCheckpoint.size >= size)
                              .order_by(AuditCheckpoint.size, AuditCheckpoint.id).limit(1)).first()


def checkpoint(*, force: bool = False) -> AuditCheckpoint | None:
    """Sequence the queue, then sign the whole tree if it grew since the last checkpoint (or
    if ``force``, even when it did not). None when there was nothing new to sign."""
    log.sequence()
    settings = config.current()
    try:
        with db.transaction() as session:
            size = log.lock_head().size  # held to the end: the tree cannot move while we sign
            previous = latest()
            if previous is not None and previous.size == size and not force:
                return None
            if size == 0 and not force:
                return None
            root = log.root(size)
            if previous is not None:
                _check_extends(previous, size, root, settings.audit_origin)
            signed_at = clock.now().replace(microsecond=0)
            head = notes.Checkpoint(settings.audit_origin, size, root, signed_at)
            key = keys.active_key(settings)
            row = AuditCheckpoint(origin=head.origin, size=size, root_hash=root, signed_at=signed_at,
                                  key_id=key.key_id, status="ok",
                                  note=notes.sign_note(notes.checkpoint_text(head), head.origin, key.private))
            session.add(row)
            session.flush()
            return row
    except CheckpointRefused as refused:
        logger.error("audit_checkpoint_refused", problem=str(refused))
        with db.transaction() as session:
            if refused.evidence is not None:
                evidence = refused.evidence
                session.add(AuditCheckpoint(origin=evidence.origin, size=evidence.size,
                                            root_hash=evidence.root, signed_at=evidence.timestamp,
                                            key_id="", status="conflict",
                                            note=notes.checkpoint_text(evidence)))
            log.record("alarm.audit_log", actor=log.SYSTEM, data={"problem": str(refused)})
        raise


def scheduled() -> int | None:
    """The scheduler's job, every minute: sign when the log grew; the size signed, if any."""
    row = checkpoint()
    return row.size if row is not None else None


def _check_extends(previous: AuditCheckpoint, size: int, root: bytes, origin: str) -> None:
    if size < previous.size:
        raise CheckpointRefused(f"the log holds {size} events, fewer than the {previous.size} of "
                                f"checkpoint {previous.id}: events were removed")
    if size == previous.size:
        if root != previous.root_hash:
            raise CheckpointRefused(
                f"the tree of {size} events no longer has the root of checkpoint {previous.id}: "
                "stored events or hashes were changed",
                notes.Checkpoint(origin, size, root, clock.now().replace(microsecond=0)))
        return
    try:
        proof = proofs.consistency_proof(previous.size, size, log.fetch)
        proofs.verify_consistency(previous.size, size, previous.root_hash, root, proof)
    except (proofs.ProofError, KeyError) as error:
        raise CheckpointRefused(f"the tree of {size} events does not extend checkpoint {previous.id} "
                                f"({previous.size} events): {error}") from error


def parse(row: AuditCheckpoint) -> notes.Checkpoint:
    """The checkpoint a stored note signs, checked against every key ever published."""
    settings = config.current()
    text = notes.verify_note(row.note, keys.note_verifiers(row.origin, keys.public_keys(settings)))
    return notes.parse_checkpoint(text)
