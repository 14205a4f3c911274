"""Offboarding requests and the exports they start."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from compliance import clock
from compliance.db import Base, BigId
from compliance.models.tenants import SourceConfig, Tenant

CHANNELS = ("email", "in_app", "phone", "support_ticket", "account_manager", "api")
CHURN_REASONS = (
    "price",
    "budget_cuts",
    "missing_features",
    "product_fit",
    "service_quality",
    "switched_to_competitor",
    "company_closed",
    "acquired",
    "bankrupt",
    "no_longer_needed",
    "other",
)
FORMATS = ("csv", "json", "parquet", "pdf")
LEGAL_REGIMES = ("gdpr", "ccpa", "none")
TERMINAL_STATES = ("closed", "feedback_collected", "withdrawn")  # a request in one of these is no longer open
PROCESSING_WINDOW = timedelta(days=14)  # received to closed at the latest; the target is 7 days
OPEN_CONDITION = "status NOT IN ({})".format(", ".join(f"'{state}'" for state in TERMINAL_STATES))


class OffboardingRequest(Base):
    __tablename__ = "offboarding_requests"
    __table_args__ = (
        Index("ix_offboarding_requests_status_received", "status", "received_at"),
        # At most one open request per tenant, even when two arrive at once.
        Index("uq_offboarding_requests_open_tenant", "tenant_id", unique=True,
              sqlite_where=text(OPEN_CONDITION), postgresql_where=text(OPEN_CONDITION)),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    requested_by: Mapped[str] = mapped_column(String(254))
    owner: Mapped[str | None] = mapped_column(String(254))
    channel: Mapped[str] = mapped_column(String(32))
    churn_reason: Mapped[str] = mapped_column(String(32))
    churn_detail: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), default="received")
    formats: Mapped[list[str]]
    legal_regime: Mapped[str] = mapped_column(String(8))
    legal_deadline: Mapped[datetime | None]
    extended_at: Mapped[datetime | None]
    extension_reason: Mapped[str | None] = mapped_column(Text)
    acknowledgement_due: Mapped[datetime]
    export_due: Mapped[datetime]
    failure_reason: Mapped[str | None] = mapped_column(Text)
    withdrawal_reason: Mapped[str | None] = mapped_column(Text)
    # The save-attempt rule's facts: either one rules a save conversation out.
    no_sales_contact: Mapped[bool] = mapped_column(default=False, server_default=false())
    competitor_signed: Mapped[bool] = mapped_column(default=False, server_default=false())
    verified_by: Mapped[str | None] = mapped_column(String(120))
    verification_note: Mapped[str | None] = mapped_column(Text)
    approved_by: Mapped[str | None] = mapped_column(String(120))
    final_invoice_ref: Mapped[str | None] = mapped_column(String(64))
    # One timestamp per step, so every deadline and report reads straight from the row.
    received_at: Mapped[datetime] = mapped_column(default=clock.now)
    acknowledged_at: Mapped[datetime | None]
    verified_at: Mapped[datetime | None]
    approved_at: Mapped[datetime | None]
    export_started_at: Mapped[datetime | None]
    export_ready_at: Mapped[datetime | None]
    access_reduced_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    feedback_collected_at: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)

    tenant: Mapped[Tenant] = relationship(lazy="joined", innerjoin=True)
    save_attempts: Mapped[list[SaveAttempt]] = relationship(order_by="SaveAttempt.id", viewonly=True)

    @property
    def processing_due(self) -> datetime:
        return self.received_at + PROCESSING_WINDOW


class SaveAttempt(Base):
    """One try at keeping the customer, or the record that none was offered."""

    __tablename__ = "save_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("offboarding_requests.id"), index=True)
    offered: Mapped[bool]
    offer: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(16))  # accepted or declined; None when not offered
    recorded_by: Mapped[str] = mapped_column(String(120))
    recorded_at: Mapped[datetime] = mapped_column(default=clock.now)


class Export(Base):
    """One attempt at building a bundle for a request."""

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("offboarding_requests.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # the reconciler's scan
    formats: Mapped[list[str]]
    error: Mapped[str | None] = mapped_column(Text)
    bundle_name: Mapped[str | None] = mapped_column(String(200))
    bundle_sha256: Mapped[str | None] = mapped_column(String(64))
    bundle_bytes: Mapped[int | None] = mapped_column(BigInteger)
    manifest: Mapped[dict[str, Any] | None]
    job_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    request: Mapped[OffboardingRequest] = relationship()
    tasks: Mapped[list[ExportTask]] = relationship(order_by="ExportTask.id", viewonly=True)


class ExportTask(Base):
    """Pulling one dataset of one source into staging; the row is the job's truth."""

    __tablename__ = "export_tasks"
    __table_args__ = (UniqueConstraint("export_id", "source_config_id", "dataset"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    export_id: Mapped[int] = mapped_column(ForeignKey("exports.id"), index=True)
    source_config_id: Mapped[int] = mapped_column(ForeignKey("source_configs.id"))
    dataset: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    requeues: Mapped[int] = mapped_column(default=0)  # by the reconciler, after a lost job
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    total_rows: Mapped[int | None] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    job_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]  # when progress was last written
    finished_at: Mapped[datetime | None]

    source: Mapped[SourceConfig] = relationship()
