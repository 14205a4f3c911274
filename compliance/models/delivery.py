"""Getting a bundle to the customer: tenant data keys, signed download links, the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from compliance import clock
from compliance.db import Base, BigId
from compliance.models.requests import Export


class TenantKey(Base):
    """A tenant's data key, stored only wrapped by a master key; destroying it shreds the data."""

    __tablename__ = "tenant_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    version: Mapped[int]
    master_key_id: Mapped[str | None] = mapped_column(String(32))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary(128))  # None once destroyed
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    rewrapped_at: Mapped[datetime | None]
    destroyed_at: Mapped[datetime | None]
    destroyed_by: Mapped[str | None] = mapped_column(String(120))


class DownloadLink(Base):
    """One customer link to one bundle; the token itself is never stored."""

    __tablename__ = "download_links"
    __table_args__ = (Index("ix_download_links_export", "export_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    export_id: Mapped[int] = mapped_column(ForeignKey("exports.id"))
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(254))
    signing_key_id: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[str] = mapped_column(String(32))  # random part of the token, to tell re-issues apart
    expires_at: Mapped[datetime]
    max_downloads: Mapped[int]
    downloads: Mapped[int] = mapped_column(default=0)
    bytes_served: Mapped[int] = mapped_column(BigInteger, default=0)  # capped: see links.claim_download
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(120))
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("download_links.id"))

    export: Mapped[Export] = relationship()


class OutboxMessage(Base):
    """A message to send, written in the same transaction as the change that causes it.

    ``status``: pending, sent, failed (after the last attempt, or refused for good) or
    suppressed (the tenant asked for no further contact; kept as the record of it).
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_status", "status", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)  # the text/html alternative, when the kind has one
    message_id: Mapped[str] = mapped_column(String(255))  # the same on every attempt: receivers de-duplicate
    tenant_id: Mapped[int | None] = mapped_column(BigInteger)
    request_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]  # not before then; None: as soon as a delivery runs
    error: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    sent_at: Mapped[datetime | None]
