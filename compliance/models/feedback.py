"""Exit feedback: the survey invitations, the answers, and win-back reminders for owners."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from compliance import clock
from compliance.db import Amount, Base, BigId

SURVEY_REASONS = ("technical_issues", "too_expensive", "switched_product", "unclear_how_to_use",
                  "missing_features", "other")
WOULD_RETURN = ("yes", "maybe", "no")


class SurveyInvitation(Base):
    """One per request: the link's secret is kept only as a SHA-256, so the table opens nothing."""

    __tablename__ = "survey_invitations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("offboarding_requests.id"), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class ExitFeedback(Base):
    """A customer's answers. ``month``, ``value_tier``, ``region`` and ``annual_value`` are copied
    at submission so the analysis survives anonymisation, which empties the free text and the
    request and tenant ids (``compliance.feedback.anonymise``)."""

    __tablename__ = "exit_feedback"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("offboarding_requests.id"), unique=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    reason: Mapped[str | None] = mapped_column(String(32))
    reason_other: Mapped[str | None] = mapped_column(Text)
    could_improve: Mapped[str | None] = mapped_column(Text)
    rating: Mapped[int | None]  # 1-10
    would_return: Mapped[str | None] = mapped_column(String(8))
    recommend: Mapped[int | None]  # 0-10
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM of submission
    value_tier: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(16))
    annual_value: Mapped[int | None] = mapped_column(Amount)  # the tenant's, at submission
    submitted_at: Mapped[datetime] = mapped_column(default=clock.now)
    anonymised_at: Mapped[datetime | None]


class WinbackReminder(Base):
    """A follow-up for the account's owner, months after a departure on good terms; the customer
    is never written to by the service."""

    __tablename__ = "winback_reminders"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("offboarding_requests.id"), index=True)
    owner: Mapped[str] = mapped_column(String(254))
    months: Mapped[int]
    due_on: Mapped[date] = mapped_column(index=True)
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    notified_at: Mapped[datetime | None]
