"""Messages to customers and staff, through an outbox.

``send`` composes a message of the catalogue (``compliance.messages``) and writes it in the
caller's transaction, so it exists exactly when the change that causes it commits. A customer
who asked for no further contact gets only what the law requires: anything else is written
as ``suppressed`` and audited, never silently dropped.

``deliver_pending`` sends due messages one at a time, over SMTP when ``SMTP_URL`` is set,
else as ``.eml`` files under ``instance/mail/`` (development). The outbox row, not Redis,
holds the retry state: a failed attempt waits ``RETRY_DELAYS`` (1 min, 5 min, 30 min, 2 h),
then the message is ``failed``; a permanent refusal (an SMTP 5xx answer) fails at once. It
runs as a cron job every minute, and is also queued the moment a transaction that wrote a
message commits (one job at a time, ``KICK_JOB``), so a customer hears within seconds; the
cron run is the safety net when Redis or the worker was away.

Delivery is at least once. A message is claimed in its own transaction (attempt counted,
``next_attempt_at`` pushed ``LEASE`` ahead, under ``FOR UPDATE SKIP LOCKED``), sent with no
database lock held, then marked ``sent`` in another. Two workers never claim the same message,
and a message marked ``sent`` is never sent again. If the process dies after the server
accepted the message but before ``sent`` commits, the claim lapses after ``LEASE`` and the
message goes again, with the same Message-ID, so receivers can drop the duplicate.
"""

from __future__ import annotations

import os
import secrets
import smtplib
import ssl
from dataclasses import dataclass
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any

import structlog
from redis.exceptions import RedisError
from rq.exceptions import DuplicateJobError
from sqlalchemy import Select, event, or_, select
from sqlalchemy.orm import Session

import audit
from compliance import clock, config, db, messages, queues
from compliance.models import OffboardingRequest, OutboxMessage, Tenant

STATUSES = ("pending", "sent", "failed", "suppressed")
BATCH = 100  # messages per run at most, so a run ends; the cron job runs every minute
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2))
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
LEASE = timedelta(minutes=10)  # a claimed message is left alone this long: far above any SMTP timeout
LONGEST_ERROR = 500
KICK_JOB = "deliver-outbox-now"
KICK_FLAG = "offboard.outbox_written"  # in Session.info: this transaction wrote a pending message

log = structlog.get_logger("offboard.notify")


@dataclass(frozen=True)
class Failure:
    error: str
    permanent: bool  # the server refused for good: no retry would help


def send(kind: str, context: dict[str, Any], *, recipient: str, actor: str, tenant_id: int | None = None,
         request_id: int | None = None, meta: dict[str, Any] | None = None) -> OutboxMessage:
    """Compose ``kind`` for the tenant and request (their personalisation, then ``context``) and
    queue it; it goes out once the surrounding transaction commits."""
    entry = messages.kind_of(kind)
    tenant = db.session.get(Tenant, tenant_id) if tenant_id is not None else None
    request = db.session.get(OffboardingRequest, request_id) if request_id is not None else None
    composed = messages.compose(kind, **{**messages.about(tenant, request), **context})
    optional = entry.audience == "customer" and not entry.required
    since = tenant.no_contact_since if optional and tenant is not None else None  # asked for no contact
    message = OutboxMessage(kind=kind, recipient=recipient, subject=composed.subject, body=composed.text,
                            html=composed.html, message_id=make_msgid("offboard", domain=_domain()),
                            status="pending" if since is None else "suppressed",
                            tenant_id=tenant_id, request_id=request_id, meta=meta or {})
    db.session.add(message)
    db.session.flush()
    facts = {"kind": kind, "recipient": recipient}
    if since is None:
        db.session.info[KICK_FLAG] = True
    else:
        facts["no_contact_since"] = since.isoformat()
    audit.record("message.queued" if since is None else "message.suppressed", actor=actor,
                 tenant_id=tenant_id, request_id=request_id, subject=("message", message.id), data=facts)
    return message


def deliver_pending() -> int:
    """Job: send the due messages, one at a time; returns how many went. Safe to run twice."""
    sent = 0
    for _ in range(BATCH):
        message = _claim()
        if message is None:
            break
        try:
            answer = _transmit(message)
        except Exception as error:  # recorded on the message; the others still go
            _failed(message.id, _failure(error))
            continue
        sent += _sent(message.id, answer)
    return sent


def kick() -> None:
    """Queue a delivery run now, unless one is already waiting. Best effort: with Redis away the
    message still goes at the next cron run, so a failure here never undoes the commit."""
    try:
        queues.queue("default").enqueue(deliver_pending, job_id=KICK_JOB, unique=True, result_ttl=0,
                                        failure_ttl=60, ttl=600)
    except DuplicateJobError:
        pass  # a queued run will take this message too
    except (RedisError, RuntimeError) as error:  # RuntimeError: Redis not configured in this process
        log.warning("outbox.kick_failed", error=f"{type(error).__name__}: {error}")


@event.listens_for(Session, "after_commit")
def _kick_after_commit(session: Session) -> None:
    if session.info.pop(KICK_FLAG, False):
        kick()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(KICK_FLAG, None)


def email_of(message: OutboxMessage) -> EmailMessage:
    """The message as sent: text, and HTML as its alternative when it has one."""
    email = EmailMessage()
    email["From"], email["To"] = config.current().mail_from, message.recipient
    email["Subject"] = message.subject
    email["Date"] = format_datetime(message.created_at)
    email["Message-ID"] = message.message_id
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
    email.set_content(message.body, cte="quoted-printable")
    if message.html:
        email.add_alternative(message.html, subtype="html", cte="quoted-printable")
    return email


def outbox(*, status: str | None = None, request_id: int | None = None) -> Select[tuple[OutboxMessage]]:
    """The outbox, by status and/or request, for people to read."""
    query = select(OutboxMessage)
    if status:
        query = query.where(OutboxMessage.status == status)
    if request_id is not None:
        query = query.where(OutboxMessage.request_id == request_id)
    return query


def mail_dir() -> Path:
    return config.current().instance_dir / "mail"


def _claim() -> OutboxMessage | None:
    """The next due message, its attempt counted and leased to this worker, or None."""
    with db.transaction():
        now = clock.now()
        message = db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.status == "pending",
                                        or_(OutboxMessage.next_attempt_at.is_(None),
                                            OutboxMessage.next_attempt_at <= now))
            .order_by(OutboxMessage.id).limit(1).with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)).first()
        if message is not None:
            message.attempts += 1
            message.next_attempt_at = now + LEASE
    return message


def _transmit(message: OutboxMessage) -> str:
    """Hand the message on; returns the receiving side's answer."""
    smtp = config.current().smtp
    email = email_of(message)
    if smtp is None:
        return f"written to {_write_eml(email, message).name}"
    _name, sender = parseaddr(config.current().mail_from)
    client = (smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout,
                               context=ssl.create_default_context())
              if smtp.security == "ssl" else smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout))
    with client:
        client.ehlo()
        if smtp.security == "starttls":
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if smtp.username:
            client.login(smtp.username, smtp.password or "")
        code, reply = client.mail(sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        code, reply = client.rcpt(message.recipient)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({message.recipient: (code, reply)})
        code, reply = client.data(email.as_bytes(policy=policy.SMTP))  # CRLF line ends, as SMTP wants
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
    return f"{code} {reply.decode(errors='replace')}"


def _sent(message_id: int, answer: str) -> int:
    with db.transaction():
        message = _locked(message_id)
        if message.status != "pending":  # a lapsed claim that another worker finished meanwhile
            return 0
        message.status, message.sent_at, message.error = "sent", clock.now(), None
        message.next_attempt_at = None
        audit.record("message.sent", actor=audit.SYSTEM, tenant_id=message.tenant_id,
                     request_id=message.request_id, subject=("message", message.id),
                     data={"kind": message.kind, "recipient": message.recipient, "attempt": message.attempts,
                           "message_id": message.message_id, "answer": answer[:LONGEST_ERROR]})
    return 1


def _failed(message_id: int, failure: Failure) -> None:
    with db.transaction():
        message = _locked(message_id)
        if message.status != "pending":
            return
        message.error = failure.error
        facts = {"kind": message.kind, "recipient": message.recipient, "attempt": message.attempts,
                 "error": failure.error}
        if failure.permanent or message.attempts >= MAX_ATTEMPTS:
            message.status, message.next_attempt_at = "failed", None
            action = "message.failed"
        else:
            message.next_attempt_at = clock.now() + RETRY_DELAYS[message.attempts - 1]
            facts["next_attempt_at"] = message.next_attempt_at.isoformat()
            action = "message.deferred"
        audit.record(action, actor=audit.SYSTEM, tenant_id=message.tenant_id, request_id=message.request_id,
                     subject=("message", message.id), data=facts)


def _locked(message_id: int) -> OutboxMessage:
    return db.session.get_one(OutboxMessage, message_id, with_for_update=True, populate_existing=True)


def _failure(error: Exception) -> Failure:
    """What went wrong, in words with no message content. Only a 5xx answer to this recipient or
    this content is permanent; a refused login or sender is the server's setup, which an
    operator can fix while the retries wait."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()))
        return Failure(f"recipient refused: {code} {reply.decode(errors='replace')}"[:LONGEST_ERROR],
                       permanent=code >= 500)
    if isinstance(error, smtplib.SMTPResponseException):
        reply = error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) \
            else str(error.smtp_error)
        return Failure(f"{type(error).__name__}: {error.smtp_code} {reply}"[:LONGEST_ERROR],
                       isinstance(error, smtplib.SMTPDataError) and error.smtp_code >= 500)
    return Failure(f"{type(error).__name__}: {error}"[:LONGEST_ERROR], permanent=False)


def _domain() -> str:
    return parseaddr(config.current().mail_from)[1].rpartition("@")[2]


def _write_eml(email: EmailMessage, message: OutboxMessage) -> Path:
    folder = mail_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / f"{message.id:08d}-{message.kind}.eml"
    temporary = folder / f".{target.name}.{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # links inside are secrets
    with os.fdopen(fd, "wb") as handle:
        handle.write(bytes(email))
    os.replace(temporary, target)
    return target
