"""The audit trail's single entry point: every state change calls ``record``.

The event is added to the caller's session, so it commits or rolls back with
the change it describes: no change without its event, no event without its change.
"""

from __future__ import annotations

from typing import Any

import rfc8785

from compliance import clock, db
from compliance.models import AuditEvent

SYSTEM = "system"


def record(
    action: str,
    *,
    actor: str,
    tenant_id: int | None = None,
    request_id: int | None = None,
    subject: tuple[str, str | int] | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event for ``action`` (e.g. ``request.acknowledged``) done by ``actor``."""
    occurred_at = clock.now()
    subject_type, subject_id = (subject[0], str(subject[1])) if subject else (None, None)
    payload = data or {}
    canonical = rfc8785.dumps(
        {
            "action": action,
            "actor": actor,
            "data": payload,
            "occurred_at": occurred_at.isoformat(),
            "request_id": request_id,
            "subject": [subject_type, subject_id] if subject_type else None,
            "tenant_id": tenant_id,
        }
    ).decode()
    event = AuditEvent(
        occurred_at=occurred_at,
        actor=actor,
        action=action,
        tenant_id=tenant_id,
        request_id=request_id,
        subject_type=subject_type,
        subject_id=subject_id,
        data=payload,
        canonical=canonical,
    )
    db.session.add(event)
    return event
