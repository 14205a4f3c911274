"""Every table of the service; import models from here."""

from compliance.models.audit import AuditEvent
from compliance.models.auth import ROLES, ApiKey, IdempotencyRecord, User
from compliance.models.delivery import DownloadLink, OutboxMessage, TenantKey
from compliance.models.requests import (
    CHANNELS,
    CHURN_REASONS,
    FORMATS,
    LEGAL_REGIMES,
    Export,
    ExportTask,
    OffboardingRequest,
)
from compliance.models.tenants import VALUE_TIERS, SourceConfig, Tenant

__all__ = [
    "CHANNELS",
    "CHURN_REASONS",
    "FORMATS",
    "LEGAL_REGIMES",
    "ROLES",
    "VALUE_TIERS",
    "ApiKey",
    "AuditEvent",
    "DownloadLink",
    "Export",
    "ExportTask",
    "IdempotencyRecord",
    "OffboardingRequest",
    "OutboxMessage",
    "SourceConfig",
    "Tenant",
    "TenantKey",
    "User",
]
