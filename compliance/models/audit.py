"""The event rows behind the audit trail; written only through ``audit.record``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from compliance.db import Base, BigId


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_tenant_time", "tenant_id", "occurred_at"),
        Index("ix_audit_events_request", "request_id"),
        Index("ix_audit_events_action_time", "action", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurred_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(64))
    # Plain ids, not foreign keys: the trail must outlive the rows it talks about.
    tenant_id: Mapped[int | None] = mapped_column(BigInteger)
    request_id: Mapped[int | None] = mapped_column(BigInteger)
    subject_type: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    canonical: Mapped[str] = mapped_column(Text)
    leaf: Mapped[AuditLeaf | None] = relationship(viewonly=True)  # None while queued


class AuditQueue(Base):
    """Events recorded but not yet in the tree: the sequencer's queue, as Trillian's unsequenced leaves.

    ``audit.record`` adds the row with its event, in the caller's transaction; the one sequencer
    gives queued events their log index in the order it finds them committed, then removes the row.
    """

    __tablename__ = "audit_queue"

    event_id: Mapped[int] = mapped_column(BigId, ForeignKey("audit_events.id"), primary_key=True,
                                          autoincrement=False)
    event: Mapped[AuditEvent] = relationship()


class AuditLeaf(Base):
    """An event's place in the Merkle tree: its log index and leaf hash (RFC 9162 §2.1.1)."""

    __tablename__ = "audit_leaves"

    log_index: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    event_id: Mapped[int] = mapped_column(BigId, ForeignKey("audit_events.id"), unique=True)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditNode(Base):
    """The hash of a complete subtree above the leaves: ``2**level`` leaves from ``index * 2**level``.

    Kept so a root or a proof costs O(log n) lookups, never a walk over the events.
    """

    __tablename__ = "audit_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column("idx", BigId, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditLogHead(Base):
    """The tree's size; its one row is what the sequencer locks, so there is exactly one at a time."""

    __tablename__ = "audit_log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)


class AuditCheckpoint(Base):
    """A signed tree head, kept as the exact signed note; ``conflict`` marks evidence of a fork."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (Index("ix_audit_checkpoints_size", "size"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    origin: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    signed_at: Mapped[datetime]
    key_id: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="ok")


class DeletionCertificate(Base):
    """A signed deletion certificate: the DSSE envelope exactly as issued, and what it is about."""

    __tablename__ = "deletion_certificates"
    __table_args__ = (Index("ix_deletion_certificates_tenant", "tenant_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # a UUID, printed on the PDF
    tenant_id: Mapped[int] = mapped_column(BigInteger)
    request_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32))
    issued_at: Mapped[datetime]
    issued_by: Mapped[str] = mapped_column(String(120))
    key_id: Mapped[str] = mapped_column(String(64))
    envelope: Mapped[str] = mapped_column(Text)
