"""How long one tenant's data is kept once it closes: the settings' defaults or its contractual
override. Here, below the messages, so the closure e-mail promises the dates the purge keeps;
``retention.policy`` builds its schedules and due lists on the same terms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from compliance import clock, config, db
from compliance.models import RetentionOverride


@dataclass(frozen=True)
class Terms:
    primary_days: int  # primary data is deleted this many days after the tenant closed
    backup_months: int  # backups holding it are purged within this many calendar months
    override_reason: str | None  # None: the defaults apply

    def primary_due(self, closed: datetime) -> datetime:
        return closed + timedelta(days=self.primary_days)

    def backup_due(self, closed: datetime) -> datetime:
        return clock.add_months(closed, self.backup_months)


def terms_of(tenant_id: int | None) -> Terms:
    """A tenant's terms; the defaults for None (a message preview names no real tenant)."""
    settings = config.current()
    override = db.session.get(RetentionOverride, tenant_id) if tenant_id is not None else None
    if override is None:
        return Terms(settings.retention_days, settings.backup_retention_months, None)
    return Terms(override.primary_days or settings.retention_days,
                 override.backup_months or settings.backup_retention_months, override.reason)
