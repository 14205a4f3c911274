"""The messages pages: the outbox (what was queued, sent, failed or suppressed, and why), and a
preview of any kind of message for a request before anyone sends it.

A preview renders through ``messages.compose`` exactly as ``notify.send`` does, personalised
from the request (customer, account, contact, dates, plan, its win-back reminder if it has one). What
only the sender knows (a link's token, a survey link, the invoice reference) is a sample, and the page
says which values are.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import abort, g, render_template, request, url_for
from marshmallow import validate
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from compliance import clock, config, db, messages, notify, winback, workflow
from compliance.admin import bp, forms
from compliance.admin.formatting import label
from compliance.api.pagination import paginate
from compliance.api.schemas import PageArgs, Strict, WholeNumber, one_of
from compliance.auth import requires
from compliance.models import DeletionCertificate, Export, OffboardingRequest, OutboxMessage, WinbackReminder

READERS = ("admin", "csm", "legal", "auditor")
PREVIEWERS = ("admin", "csm", "legal")
SAMPLE_TENANT = {"tenant_id": 0, "customer": "Example Customer Ltd", "account": "example-account",
                 "requested_by": "cfo@customer.example", "legal_regime": "gdpr"}


class OutboxFilter(PageArgs):
    status = one_of(notify.STATUSES)
    request_id = WholeNumber(validate=validate.Range(min=1, max=2**63 - 1))


class PreviewArgs(Strict):
    kind = one_of(tuple(messages.CATALOGUE), required=True)
    request_id = WholeNumber(validate=validate.Range(min=1, max=2**63 - 1))


@bp.route("/messages", endpoint="messages")
@requires(*READERS)
def outbox_page() -> tuple[str, int]:
    data, errors = forms.load(OutboxFilter(), request.args)
    page: dict[str, Any] = {"items": [], "next_cursor": None}
    if not errors:
        page = paginate(notify.outbox(status=data.get("status"), request_id=data.get("request_id")),
                        OutboxMessage.id, limit=data["limit"], cursor=data.get("cursor"))
    asked = _asked("status", "request_id")
    cursor = page["next_cursor"]
    return render_template(
        "admin/messages.html", rows=page["items"], asked=asked, errors=errors,
        statuses=[(status, label(status)) for status in notify.STATUSES],
        next_url=url_for("admin.messages", **asked, cursor=cursor) if cursor else None,
        first_url=url_for("admin.messages", **asked) if request.args.get("cursor") else None,
    ), 400 if errors else 200


@bp.route("/messages/preview")
@requires(*PREVIEWERS)
def message_preview() -> tuple[str, int]:
    asked = _asked("kind", "request_id")
    data, errors = forms.load(PreviewArgs(), MultiDict(asked)) if asked else ({}, {})
    composed, samples, offboarding = None, [], None
    if data and not errors:
        if "request_id" in data:
            offboarding = db.session.get(OffboardingRequest, data["request_id"])
            if offboarding is None:
                abort(404, f"there is no request {data['request_id']}")
        context, samples = preview_context(data["kind"], offboarding)
        composed = messages.compose(data["kind"], **context)
    kinds = [(kind, label(kind)) for kind in messages.CATALOGUE]
    return render_template("admin/message_preview.html", composed=composed, samples=samples, asked=asked,
                           errors=errors, kinds=kinds, catalogue=messages.CATALOGUE,
                           offboarding=offboarding), 400 if errors else 200


def preview_context(kind: str, offboarding: OffboardingRequest | None) -> tuple[dict[str, Any], list[str]]:
    """The context ``notify.send`` would build for this request (a sample one without a request),
    plus what the sender of ``kind`` passes; and the names of the values that are samples."""
    now = clock.now()
    if offboarding is None:
        context = {**messages.about(None, None), **SAMPLE_TENANT, "request_id": 0, "received_at": now,
                   "export_due": now + workflow.EXPORT_WINDOW,
                   "legal_deadline": workflow.legal_deadline("gdpr", now),
                   "contact": {"name": g.staff.user.name, "email": g.staff.user.email}}
        samples = ["customer", "account", "request", "contact"]
    else:
        context, samples = messages.about(offboarding.tenant, offboarding), []
    needs = messages.CATALOGUE[kind].needs
    real = {name: value for name, value in _from_database(context, kind).items() if name in needs}
    made_up = {name: value for name, value in _samples().items() if name in needs and name not in real}
    if kind == "closure" and context["closed_at"] is None:
        made_up["closed_at"] = now  # not closed yet: as if it closed now
    return {**context, **real, **made_up}, samples + list(made_up)


def _from_database(context: dict[str, Any], kind: str) -> dict[str, Any]:
    """The values a sender passes that the database already holds for this request."""
    found: dict[str, Any] = {"phases": workflow.plan(context["received_at"], clock.now().date())}
    sha256 = db.session.scalar(select(Export.bundle_sha256).where(
        Export.request_id == context["request_id"], Export.bundle_sha256.is_not(None))
        .order_by(Export.id.desc()).limit(1))
    if sha256:
        found["sha256"] = sha256
    certificate = db.session.scalars(select(DeletionCertificate).where(
        DeletionCertificate.tenant_id == context["tenant_id"],
        DeletionCertificate.kind == ("backups" if kind == "backups_purged" else "primary"))
        .order_by(DeletionCertificate.issued_at.desc()).limit(1)).first()
    if certificate is not None:
        found["certificate"] = {"id": certificate.id, "status": certificate.status}
    reminder = db.session.scalar(select(WinbackReminder).where(
        WinbackReminder.request_id == context["request_id"]).order_by(WinbackReminder.id.desc()).limit(1))
    if reminder is not None:
        found.update(winback.context(reminder))
    return found


def _asked(*names: str) -> dict[str, str]:
    return {name: value for name, value in request.args.items() if name in names and value.strip()}


def _samples() -> dict[str, Any]:
    public_url = config.current().public_url
    return {"url": f"{public_url}/d/SAMPLE-TOKEN", "expires_at": clock.now() + timedelta(days=7),
            "max_downloads": 5, "sha256": "0" * 64, "survey_url": f"{public_url}/survey/SAMPLE-TOKEN",
            "invoice_ref": "INV-SAMPLE", "status": "purged", "snapshots": 1, "keys": 1,
            "systems": {"sample source": {"status": "erased", "error": None}},
            "certificate": {"id": "SAMPLE-CERTIFICATE", "status": "erased"},
            "deadline": "acknowledgement", "due": clock.now() + timedelta(hours=6), "left": "6 h 00 min",
            "previous_deadline": workflow.legal_deadline("gdpr", clock.now()),
            "reason": "SAMPLE REASON: the export of a large account takes longer",
            "left_on": clock.now() - timedelta(days=270), "flagged_on": clock.now() - timedelta(days=260),
            "churn_reason": "price", "survey_reason": "too_expensive", "would_return": "maybe",
            "note": "SAMPLE NOTE: offer the new team plan", "no_contact_since": None, "purged_on": None}
