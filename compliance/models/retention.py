"""What the retention promise needs remembered: holds, per-tenant overrides, each purge step
done, the report of every retention run, and the catalogue of backup snapshots."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from compliance import clock
from compliance.db import Base, BigId
from compliance.models.tenants import Tenant


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


backup_snapshot_tenants = Table(
    "backup_snapshot_tenants", Base.metadata,
    Column("snapshot_id", ForeignKey("backup_snapshots.id"), primary_key=True),
    Column("tenant_id", ForeignKey("tenants.id"), primary_key=True),
    Index("ix_backup_snapshot_tenants_tenant", "tenant_id"),
)


class BackupSnapshot(Base):
    """A backup we control: where it is (a storage URL and the object or prefix in it), which
    tenants it holds, and how it goes away (deleted, or left to the crypto-shredding of its
    tenants' keys). Purged once, when it is older than the backup retention."""

    __tablename__ = "backup_snapshots"
    __table_args__ = (
        Index("ix_backup_snapshots_live", "taken_at", sqlite_where=text("purged_at IS NULL"),
              postgresql_where=text("purged_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    taken_at: Mapped[datetime]
    location: Mapped[str] = mapped_column(String(1000))  # a directory path or s3://bucket/prefix
    object: Mapped[str] = mapped_column(String(1000))  # the snapshot's object name or prefix in it
    method: Mapped[str] = mapped_column(String(16), default="delete")  # delete | crypto_shred
    registered_by: Mapped[str] = mapped_column(String(120))
    registered_at: Mapped[datetime] = mapped_column(default=clock.now)
    purged_at: Mapped[datetime | None]
    purge_error: Mapped[str | None] = mapped_column(Text)
    tenants: Mapped[list[Tenant]] = relationship(secondary=backup_snapshot_tenants, order_by="Tenant.id")
