"""The message catalogue: what each kind of message says, to whom, and whether the law requires it.

``compose`` renders a kind from its context into a subject, a plain text and an HTML part
(templates under ``compliance/templates/mail/``, HTML autoescaped). Every variable a template
uses must be given (``StrictUndefined``): a caller that forgets one fails at once, in its own
transaction, instead of mailing a blank. ``about`` gives what every message is personalised
with: the customer, the account, the request's dates and a named contact.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import select

from compliance import config, db, retention_terms
from compliance.models import OffboardingRequest, Tenant, User
from compliance.models.requests import PROCESSING_WINDOW


class UnknownKind(ValueError):
    """No message of this kind is in the catalogue."""


@dataclass(frozen=True)
class Kind:
    template: str  # templates/mail/<template>.txt and .html
    subject: str  # a Jinja template, rendered with the message's context
    audience: str  # "customer" or "staff"
    required: bool  # by law: a customer who asked for no further contact still gets it
    needs: tuple[str, ...] = ()  # what the sender passes, beyond the tenant's and request's (``about``)
    derive: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # values computed from the context


@dataclass(frozen=True)
class Composed:
    subject: str
    text: str
    html: str


def deletion_timeline(context: dict[str, Any]) -> dict[str, Any]:
    """When the closed account's data goes: on the tenant's retention terms, its contractual
    override included, so the e-mail promises the dates the purge keeps."""
    closed: datetime = context["closed_at"]
    terms = retention_terms.terms_of(context["tenant_id"])
    return {"deletion_on": terms.primary_due(closed), "backups_by": terms.backup_due(closed)}


# What meets each deadline the deadline sweep warns of (``workflow._near``).
MET_WHEN = {
    "acknowledgement": "the request is acknowledged",
    "export": "the export is ready for the customer",
    "legal": "the export is ready for the customer: it answers the request the law entitles them to",
    "processing": f"the request is closed, at most {PROCESSING_WINDOW.days} days after it was received",
}


def deadline_meaning(context: dict[str, Any]) -> dict[str, Any]:
    """A deadline's name alone does not say what meets it (the legal one is met by the export)."""
    return {"met_when": MET_WHEN[context["deadline"]]}


CATALOGUE: dict[str, Kind] = {
    "acknowledgement": Kind("acknowledgement", "We have received your request to close {{ customer }}",
                            "customer", required=False),
    "save_invitation": Kind("save_invitation", "Before {{ customer }} leaves: can we talk?",
                            "customer", required=False),
    "plan": Kind("plan", "Your offboarding plan for {{ customer }}, with dates", "customer", required=False,
                 needs=("phases",)),  # workflow.plan(request.received_at, today)
    "export_ready": Kind("export_ready", "Your {{ customer }} data export is ready", "customer",
                         required=True, needs=("url", "expires_at", "max_downloads", "sha256")),
    "survey_invitation": Kind("survey_invitation", "Would you tell us why {{ customer }} left?",
                              "customer", required=False, needs=("survey_url",)),
    "closure": Kind("closure", "{{ customer }}: your account is closed", "customer", required=True,
                    needs=("invoice_ref",), derive=deletion_timeline),  # closed_at: the tenant's
    # Art. 12(3) GDPR / CCPA: the customer must be told of the extension and why.
    "deadline_extended": Kind("deadline_extended", "{{ customer }}: we need more time for your request",
                              "customer", required=True, needs=("previous_deadline", "reason")),
    "deadline_warning": Kind("deadline_warning",
                             "Request {{ request_id }} ({{ customer }}): {{ deadline }} due in {{ left }}",
                             "staff", required=True, needs=("deadline", "due", "left"),
                             derive=deadline_meaning),
    # To the account's owner only: the service never writes to the customer about a win-back.
    "winback_due": Kind("winback_due", "Win-back reminder: {{ customer }} left on {{ left_on|day }}", "staff",
                        required=False, needs=("left_on", "flagged_on", "churn_reason", "survey_reason",
                                               "would_return", "note", "no_contact_since", "purged_on")),
    "purge_completed": Kind("deletion_certificate",
                            "Primary purge of tenant {{ tenant_id }} ({{ customer }}): {{ status }}",
                            "staff", required=True, needs=("status", "systems", "certificate")),
    "backups_purged": Kind("deletion_certificate",
                           "Backups of tenant {{ tenant_id }} ({{ customer }}) purged", "staff",
                           required=True, needs=("snapshots", "keys", "certificate")),
}


def kind_of(kind: str) -> Kind:
    try:
        return CATALOGUE[kind]
    except KeyError:
        raise UnknownKind(f"no message kind {kind!r}; known: {', '.join(CATALOGUE)}") from None


def compose(kind: str, **context: Any) -> Composed:
    """The message ``kind`` for this context (ValueError, or jinja2.UndefinedError, names what
    is missing)."""
    entry = kind_of(kind)
    missing = [name for name in entry.needs if name not in context]
    if missing:
        raise ValueError(f"a {kind} message needs {', '.join(missing)}")
    values = {**context, **(entry.derive(context) if entry.derive else {})}
    env = _environment()
    subject = " ".join(env.from_string(entry.subject).render(values).split())
    values.update(kind=kind, subject=subject)
    return Composed(subject=subject, text=env.get_template(f"{entry.template}.txt").render(values),
                    html=env.get_template(f"{entry.template}.html").render(values))


def about(tenant: Tenant | None, request: OffboardingRequest | None) -> dict[str, Any]:
    """The personalisation every message shares; None where the tenant or request is unknown."""
    context: dict[str, Any] = {
        "public_url": config.current().public_url, "contact": contact(request),
        "tenant_id": None, "customer": None, "account": None, "closed_at": None,
        "request_id": None, "requested_by": None, "received_at": None, "export_due": None,
        "legal_regime": None, "legal_deadline": None,
    }
    if tenant is not None:
        context.update(tenant_id=tenant.id, customer=tenant.name, account=tenant.external_ref,
                       closed_at=tenant.closed_at)
    if request is not None:
        context.update(request_id=request.id, requested_by=request.requested_by,
                       received_at=request.received_at, export_due=request.export_due,
                       legal_regime=request.legal_regime, legal_deadline=request.legal_deadline)
    return context


def contact(request: OffboardingRequest | None) -> dict[str, str | None]:
    """The person the customer can reach: the request's owner, by name when a staff user."""
    if request is None or not request.owner:
        return {"name": "your account team", "email": None}
    name = db.session.scalar(select(User.name).where(User.email == request.owner.lower()))
    return {"name": name or request.owner, "email": request.owner}


def day(value: date | datetime | None) -> str:
    return f"{value.day} {value:%B %Y}" if value is not None else ""


def when(value: datetime | None) -> str:
    return f"{day(value)}, {value:%H:%M} UTC" if value is not None else ""


@functools.cache
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("compliance", "templates/mail"),
                      autoescape=select_autoescape(["html"], default_for_string=False),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters.update(day=day, when=when)
    return env
