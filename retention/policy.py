"""How long a closed tenant's data is kept: the durations, per-tenant overrides, due dates.

Primary data is deleted ``retention_days`` after the tenant's ``closed_at`` (default 90 days),
backups holding it are purged within ``backup_retention_months`` calendar months (default
12). A contractual override changes either for one tenant, with its reason. Due dates are
computed, never stored: changing the policy or an override moves them at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, select

from compliance import clock, config, db, retention_terms
from compliance.models import RetentionOverride, Tenant


@dataclass(frozen=True)
class Schedule:
    """A tenant's retention dates; None while the tenant is open."""

    closed_at: datetime | None
    primary_days: int
    backup_months: int
    override_reason: str | None
    primary_due: datetime | None
    backup_due: datetime | None


def schedule_of(tenant: Tenant) -> Schedule:
    terms, closed = retention_terms.terms_of(tenant.id), tenant.closed_at
    return Schedule(closed, terms.primary_days, terms.backup_months, terms.override_reason,
                    terms.primary_due(closed) if closed else None,
                    terms.backup_due(closed) if closed else None)


def due_for_primary_purge(now: datetime) -> list[int]:
    """Ids of closed tenants whose primary purge is due at ``now`` and not done.

    Tenants on the default policy come from the partial index on ``closed_at`` (the cost grows
    with the number due, not the number of tenants); the few with an override are checked one
    by one.
    """
    cutoff = now - timedelta(days=config.current().retention_days)
    plain = db.session.scalars(select(Tenant.id).where(
        Tenant.closed_at.is_not(None), Tenant.purged_at.is_(None), Tenant.closed_at <= cutoff,
        ~exists().where(RetentionOverride.tenant_id == Tenant.id)).order_by(Tenant.closed_at)).all()
    return [*plain, *_overridden(now, primary=True)]


def due_for_backup_purge(now: datetime) -> list[int]:
    """Ids of closed tenants whose backups are due for purging at ``now`` and not purged."""
    cutoff = clock.add_months(now, -config.current().backup_retention_months)
    plain = db.session.scalars(select(Tenant.id).where(
        Tenant.closed_at.is_not(None), Tenant.backups_purged_at.is_(None), Tenant.closed_at <= cutoff,
        ~exists().where(RetentionOverride.tenant_id == Tenant.id)).order_by(Tenant.closed_at)).all()
    return [*plain, *_overridden(now, primary=False)]


def _overridden(now: datetime, *, primary: bool) -> list[int]:
    done = Tenant.purged_at if primary else Tenant.backups_purged_at
    tenants = db.session.scalars(
        select(Tenant).join(RetentionOverride, RetentionOverride.tenant_id == Tenant.id)
        .where(Tenant.closed_at.is_not(None), done.is_(None))).all()
    due = []
    for tenant in tenants:
        schedule = schedule_of(tenant)
        moment = schedule.primary_due if primary else schedule.backup_due
        if moment is not None and moment <= now:
            due.append(tenant.id)
    return due
