"""What the retention promise needs remembered: holds, per-tenant overrides, each purge step
done, and the report of every retention run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from compliance import clock
from compliance.db import Base, BigId


class LegalHold(Base):
    """A hold suspends every deletion of the tenant's data until it is released; no end date."""

    __tablename__ = "legal_holds"
    __table_args__ = (
        Index("ix_legal_holds_active", "tenant_id", sqlite_where=text("released_at IS NULL"),
              postgresql_where=text("released_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    reason: Mapped[str] = mapped_column(Text)
    matter: Mapped[str] = mapped_column(String(200))
    placed_by: Mapped[str] = mapped_column(String(120))
    placed_at: Mapped[datetime] = mapped_column(default=clock.now)
    released_by: Mapped[str | None] = mapped_column(String(120))
    released_at: Mapped[datetime | None]
    release_reason: Mapped[str | None] = mapped_column(Text)


class RetentionOverride(Base):
    """A contractual exception to the default durations for one tenant, with its reason."""

    __tablename__ = "retention_overrides"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True, autoincrement=False)
    primary_days: Mapped[int | None] = mapped_column(Integer)
    backup_months: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    set_by: Mapped[str] = mapped_column(String(120))
    set_at: Mapped[datetime] = mapped_column(default=clock.now)


class PurgeStep(Base):
    """One system's part of a tenant's purge, done once: re-running a purge skips what is done,
    so every item gets exactly one "purged" event however often the job runs or dies."""

    __tablename__ = "purge_steps"
    __table_args__ = (UniqueConstraint("tenant_id", "kind", "system"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    kind: Mapped[str] = mapped_column(String(16))  # primary | backups
    system: Mapped[str] = mapped_column(String(64))  # source:<id> | bundle_store | staging | links
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class RetentionRun(Base):
    """A sweep, scheduled or asked for (dry run or real), and its report."""

    __tablename__ = "retention_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # primary | backups
    as_of: Mapped[datetime]
    dry_run: Mapped[bool]
    tenant_id: Mapped[int | None] = mapped_column(BigId)
    requested_by: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | done | failed
    report: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime] = mapped_column(default=clock.now)
    finished_at: Mapped[datetime | None]
