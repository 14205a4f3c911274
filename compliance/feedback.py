"""Exit feedback: the survey invitation, its single-use link, the answers, the CSV for product
teams, and the anonymisation the primary purge performs.

A survey token is signed with the service's secret key (itsdangerous, salt ``SALT``, so no
other signed value of the service opens a survey) over the invitation id and a random nonce.
The database keeps only the token's SHA-256, compared in constant time: the table alone opens
nothing, and a token is spent by one conditional update, so two submissions never both count.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select, update

import audit
from compliance import clock, config, db, notify, workflow
from compliance.models import ExitFeedback, OffboardingRequest, SurveyInvitation, Tenant

SALT = "offboard.exit-survey"
LIFETIME = timedelta(days=30)
INVITE_WINDOW = timedelta(days=30)  # closures older than this are not surveyed (e.g. at launch)
ACTOR = "customer:survey"
COLUMNS = ("id", "month", "submitted_at", "reason", "reason_other", "could_improve", "rating",
           "would_return", "recommend", "value_tier", "region", "annual_value", "request_id", "tenant_id",
           "anonymised")
CSV_BATCH = 500
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run these as formulas


class SurveyError(Exception):
    """Why a token opens no survey; ``gone`` (HTTP 410) or not (HTTP 404)."""

    def __init__(self, outcome: str, *, gone: bool, invitation: SurveyInvitation | None = None) -> None:
        super().__init__(outcome)
        self.outcome, self.gone, self.invitation = outcome, gone, invitation


@dataclass(frozen=True)
class Invited:
    invitation: SurveyInvitation
    token: str

    @property
    def url(self) -> str:
        return f"{config.current().public_url}/survey/{self.token}"


def invite(request_id: int, *, actor: str) -> Invited | None:
    """Create the request's one survey link and queue the invitation e-mail; None when the
    request was already invited or has no one to write to. ``notify.send`` suppresses it for
    tenants who asked for no further contact (the survey is not required by law)."""
    if db.session.scalar(select(SurveyInvitation.id).where(SurveyInvitation.request_id == request_id)):
        return None
    request = db.session.get(OffboardingRequest, request_id)
    if request is None:
        raise workflow.UnknownRequest(f"no request {request_id}")
    recipient = workflow.customer_address(request)
    if recipient is None:
        return None
    invitation = SurveyInvitation(request_id=request_id, token_sha256="", created_by=actor,
                                  expires_at=clock.now() + LIFETIME)
    db.session.add(invitation)
    db.session.flush()
    token = _serializer().dumps([invitation.id, secrets.token_hex(16)])
    invitation.token_sha256 = _digest(token)
    invited = Invited(invitation, token)
    notify.send("survey_invitation", {"survey_url": invited.url}, recipient=recipient, actor=actor,
                tenant_id=request.tenant_id, request_id=request_id, meta={"invitation_id": invitation.id})
    audit.record("feedback.invited", actor=actor, tenant_id=request.tenant_id, request_id=request_id,
                 subject=("survey", invitation.id), data={"expires_at": invitation.expires_at.isoformat()})
    return invited


def invite_now(request_id: int, *, actor: str) -> Invited:
    """A person's "send the survey now", instead of waiting for the cron job's delay
    (WorkflowError with the reason when it may not go)."""
    request = workflow.locked(request_id)  # two clicks at once: the second waits, then is refused
    refused = refusal(request)
    if refused is not None:
        raise workflow.WorkflowError(refused)
    invited = invite(request_id, actor=actor)
    assert invited is not None  # refusal() covers every case in which invite() declines
    return invited


def refusal(request: OffboardingRequest) -> str | None:
    """Why the request's customer cannot be sent the exit survey now, or None when they can."""
    invitation = invitation_of(request.id)
    if invitation is not None:
        return f"the customer was invited on {invitation.created_at:%-d %B %Y}; the survey is asked once only"
    if request.status != "closed":
        return f"the survey follows the closure; this request is {request.status.replace('_', ' ')}"
    if request.tenant.purged_at is not None:
        return "the account's data is purged"
    if request.tenant.no_contact_since is not None:
        return "the customer asked for no further contact"
    if workflow.customer_address(request) is None:
        return "the account has no contact e-mail and the requester gave no address"
    return None


def invitation_of(request_id: int) -> SurveyInvitation | None:
    return db.session.scalar(select(SurveyInvitation).where(SurveyInvitation.request_id == request_id))


def invite_due() -> int:
    """The cron job: invite every request closed at least ``survey_delay_hours`` ago (and within
    ``INVITE_WINDOW``) whose tenant is not purged and which has no invitation yet."""
    now = clock.now()
    delay = timedelta(hours=config.current().survey_delay_hours)
    invited = select(SurveyInvitation.request_id)
    ids = db.session.scalars(
        select(OffboardingRequest.id).join(Tenant, Tenant.id == OffboardingRequest.tenant_id)
        .where(OffboardingRequest.status == "closed", OffboardingRequest.closed_at <= now - delay,
               OffboardingRequest.closed_at >= now - delay - INVITE_WINDOW, Tenant.purged_at.is_(None),
               OffboardingRequest.id.not_in(invited))
        .order_by(OffboardingRequest.id)).all()
    db.session.rollback()
    sent = 0
    for request_id in ids:
        with db.transaction():
            sent += invite(request_id, actor=audit.SYSTEM) is not None
    return sent


def resolve(token: str) -> SurveyInvitation:
    """The invitation a token names, if its signature and hash hold and it is still open."""
    try:
        invitation_id, _nonce = _serializer().loads(token)
    except (BadSignature, ValueError, TypeError):
        raise SurveyError("unknown", gone=False) from None
    invitation = db.session.get(SurveyInvitation, invitation_id, populate_existing=True) \
        if isinstance(invitation_id, int) else None
    if invitation is None or not hmac.compare_digest(invitation.token_sha256, _digest(token)):
        raise SurveyError("unknown", gone=False)
    if invitation.used_at is not None:
        raise SurveyError("answered", gone=True, invitation=invitation)
    if invitation.expires_at <= clock.now():
        raise SurveyError("expired", gone=True, invitation=invitation)
    return invitation


def submit(token: str, answers: dict[str, Any]) -> ExitFeedback:
    """Record the answers once: the token is spent by a conditional update (a second submission,
    even a concurrent one, gets SurveyError "answered"), the request moves to feedback_collected
    and the audit event names what was answered, never the free text."""
    invitation = resolve(token)
    now = clock.now()
    spent = db.session.execute(
        update(SurveyInvitation)
        .where(SurveyInvitation.id == invitation.id, SurveyInvitation.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False))
    if spent.rowcount != 1:
        raise SurveyError("answered", gone=True, invitation=invitation)
    request = workflow.apply(invitation.request_id, "collect_feedback", actor=ACTOR)
    tenant = request.tenant
    feedback = ExitFeedback(request_id=request.id, tenant_id=tenant.id, month=now.strftime("%Y-%m"),
                            value_tier=tenant.value_tier, region=tenant.region,
                            annual_value=tenant.annual_value, submitted_at=now, **answers)
    db.session.add(feedback)
    db.session.flush()
    audit.record("feedback.submitted", actor=ACTOR, tenant_id=tenant.id, request_id=request.id,
                 subject=("feedback", feedback.id),
                 data={"reason": feedback.reason, "rating": feedback.rating,
                       "would_return": feedback.would_return, "recommend": feedback.recommend,
                       "free_text": sorted(name for name in ("reason_other", "could_improve")
                                           if answers.get(name))})
    return feedback


def anonymise(tenant_id: int) -> int:
    """After the tenant's primary purge: drop the free-text answers (they may name a person, and
    no rule finds every name) and unlink the rows from the request and tenant; the reason,
    ratings, month, value tier, region and annual value stay for analysis. Idempotent: a second
    call finds nothing left to change. Returns the rows anonymised."""
    changed = db.session.execute(
        update(ExitFeedback).where(ExitFeedback.tenant_id == tenant_id)
        .values(reason_other=None, could_improve=None, request_id=None, tenant_id=None,
                anonymised_at=clock.now())
        .execution_options(synchronize_session=False)).rowcount
    if changed:
        audit.record("feedback.anonymised", actor=audit.SYSTEM, tenant_id=tenant_id, data={"rows": changed})
    return changed


def csv_lines() -> Iterator[str]:
    """The feedback as CSV, a header row then ``CSV_BATCH`` rows at a time, oldest first; cells a
    spreadsheet would take for a formula are quoted with a leading apostrophe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(COLUMNS)
    yield flush()
    query = select(ExitFeedback).order_by(ExitFeedback.id).execution_options(yield_per=CSV_BATCH)
    for count, row in enumerate(db.session.scalars(query), start=1):
        writer.writerow([_cell(value) for value in _values(row)])
        if count % CSV_BATCH == 0:
            yield flush()
    yield flush()


def _values(row: ExitFeedback) -> list[Any]:
    return [row.id, row.month, row.submitted_at.isoformat(), row.reason, row.reason_other, row.could_improve,
            row.rating, row.would_return, row.recommend, row.value_tier, row.region, row.annual_value,
            row.request_id, row.tenant_id, "yes" if row.anonymised_at else "no"]


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(config.current().secret_key, salt=SALT)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
