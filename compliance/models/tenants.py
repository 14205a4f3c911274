"""The customer accounts being offboarded and the systems that hold their data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from compliance import clock
from compliance.config import VALUE_TIERS
from compliance.db import Amount, Base, BigId

__all__ = ["VALUE_TIERS", "SourceConfig", "Tenant"]


class Tenant(Base):
    __tablename__ = "tenants"
    __table_args__ = (
        # The sweeps' queries: closed tenants not yet purged, by closure, however many tenants.
        Index("ix_tenants_primary_purge", "closed_at",
              sqlite_where=text("closed_at IS NOT NULL AND purged_at IS NULL"),
              postgresql_where=text("closed_at IS NOT NULL AND purged_at IS NULL")),
        Index("ix_tenants_backup_purge", "closed_at",
              sqlite_where=text("closed_at IS NOT NULL AND backups_purged_at IS NULL"),
              postgresql_where=text("closed_at IS NOT NULL AND backups_purged_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_ref: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(16))
    value_tier: Mapped[str] = mapped_column(String(16), default="standard")
    annual_value: Mapped[int | None] = mapped_column(Amount)  # yearly contract value (exit feedback)
    contact_email: Mapped[str | None] = mapped_column(String(254))
    no_contact_since: Mapped[datetime | None]  # asked for no further contact: only required messages
    closed_at: Mapped[datetime | None]
    purged_at: Mapped[datetime | None]  # every primary system verified empty
    backups_purged_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)


class SourceConfig(Base):
    """A connected system: shared by every tenant when ``tenant_id`` is null."""

    __tablename__ = "source_configs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        # NULLs are distinct in unique constraints, so shared names need their own index.
        Index(
            "uq_source_configs_shared_name",
            "name",
            unique=True,
            sqlite_where=text("tenant_id IS NULL"),
            postgresql_where=text("tenant_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)
