"""Finding events in the log: the one query behind the audit API and the audit page."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import selectinload

from compliance.models import AuditEvent

NAMESPACE = "."  # an action ending here names every action under it: "purge." finds "purge.completed"


def events(*, tenant_id: int | None = None, request_id: int | None = None, actor: str | None = None,
           action: str | None = None, since: datetime | None = None,
           until: datetime | None = None) -> Select[tuple[AuditEvent]]:
    """Events matching every filter given (``since`` inclusive, ``until`` exclusive), with their
    leaves; the caller orders and pages (newest first by id)."""
    query = select(AuditEvent).options(selectinload(AuditEvent.leaf))
    if tenant_id is not None:
        query = query.where(AuditEvent.tenant_id == tenant_id)
    if request_id is not None:
        query = query.where(AuditEvent.request_id == request_id)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if action is not None:
        query = query.where(AuditEvent.action.startswith(action, autoescape=True)
                            if action.endswith(NAMESPACE) else AuditEvent.action == action)
    if since is not None:
        query = query.where(AuditEvent.occurred_at >= since)
    if until is not None:
        query = query.where(AuditEvent.occurred_at < until)
    return query
