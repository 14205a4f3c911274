"""Messages to customers and staff, through an outbox.

``send`` writes the message in the caller's transaction, so it exists exactly when
the change that causes it commits. ``deliver_pending`` (a job) hands it on; until
SMTP arrives, delivery writes an ``.eml`` file under ``instance/mail/``.
"""

from __future__ import annotations

import os
import secrets
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from sqlalchemy import select

import audit
from compliance import clock, config, db
from compliance.models import OutboxMessage

SENDER = "Offboard <no-reply@offboard.invalid>"
BATCH = 100
MAX_ATTEMPTS = 5


def send(kind: str, *, recipient: str, subject: str, body: str, actor: str,
         tenant_id: int | None = None, request_id: int | None = None,
         meta: dict[str, Any] | None = None) -> OutboxMessage:
    """Queue a message; it goes out once the surrounding transaction commits."""
    message = OutboxMessage(kind=kind, recipient=recipient, subject=subject, body=body,
                            tenant_id=tenant_id, request_id=request_id, meta=meta or {})
    db.session.add(message)
    db.session.flush()
    audit.record("message.queued", actor=actor, tenant_id=tenant_id, request_id=request_id,
                 subject=("message", message.id), data={"kind": kind, "recipient": recipient})
    return message


def deliver_pending() -> int:
    """Job: write every pending message out; returns how many went. Safe to run twice."""
    sent = 0
    with db.transaction():
        pending = db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.status == "pending")
            .order_by(OutboxMessage.id).limit(BATCH).with_for_update(skip_locked=True)).all()
        for message in pending:
            message.attempts += 1
            try:
                _write_eml(message)
            except OSError as error:  # this one waits for the next run; the others still go
                message.error = f"{type(error).__name__}: {error}"[:2000]
                if message.attempts >= MAX_ATTEMPTS:
                    message.status = "failed"
                    audit.record("message.failed", actor=audit.SYSTEM, tenant_id=message.tenant_id,
                                 request_id=message.request_id, subject=("message", message.id),
                                 data={"kind": message.kind, "error": message.error})
                continue
            message.status, message.sent_at, message.error = "sent", clock.now(), None
            audit.record("message.sent", actor=audit.SYSTEM, tenant_id=message.tenant_id,
                         request_id=message.request_id, subject=("message", message.id),
                         data={"kind": message.kind, "recipient": message.recipient})
            sent += 1
    return sent


def mail_dir() -> Path:
    return config.current().instance_dir / "mail"


def _write_eml(message: OutboxMessage) -> None:
    email = EmailMessage()
    email["From"], email["To"], email["Subject"] = SENDER, message.recipient, message.subject
    email["Date"] = format_datetime(message.created_at)
    email["Message-ID"] = make_msgid(idstring=f"offboard-{message.id}", domain="offboard.invalid")
    email.set_content(message.body)
    folder = mail_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / f"{message.id:08d}-{message.kind}.eml"
    temporary = folder / f".{target.name}.{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # links inside are secrets
    with os.fdopen(fd, "wb") as handle:
        handle.write(bytes(email))
    os.replace(temporary, target)
