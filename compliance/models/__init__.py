"""Every table of the service; import models from here."""

from compliance.models.audit import (
    AuditCheckpoint,
    AuditEvent,
    AuditLeaf,
    AuditLogHead,
    AuditNode,
    AuditQueue,
    DeletionCertificate,
)
from compliance.models.auth import ROLES, ApiKey, IdempotencyRecord, StaffSession, User
from compliance.models.delivery import DownloadLink, OutboxMessage, TenantKey
from compliance.models.feedback import ExitFeedback, SurveyInvitation, WinbackReminder
from compliance.models.requests import (
    CHANNELS,
    CHURN_REASONS,
    FORMATS,
    LEGAL_REGIMES,
    Export,
    ExportTask,
    OffboardingRequest,
    SaveAttempt,
)
from compliance.models.retention import (
    BackupSnapshot,
    LegalHold,
    PurgeStep,
    RetentionOverride,
    RetentionRun,
    backup_snapshot_tenants,
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
    "AuditCheckpoint",
    "AuditEvent",
    "AuditLeaf",
    "AuditLogHead",
    "AuditNode",
    "AuditQueue",
    "BackupSnapshot",
    "DeletionCertificate",
    "DownloadLink",
    "ExitFeedback",
    "Export",
    "ExportTask",
    "IdempotencyRecord",
    "LegalHold",
    "OffboardingRequest",
    "OutboxMessage",
    "PurgeStep",
    "RetentionOverride",
    "RetentionRun",
    "SaveAttempt",
    "SourceConfig",
    "StaffSession",
    "SurveyInvitation",
    "Tenant",
    "TenantKey",
    "User",
    "WinbackReminder",
    "backup_snapshot_tenants",
]
