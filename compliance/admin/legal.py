"""The legal page: legal holds placed and released, the purges due soon and what blocks them, and
deletion certificates (view, download, issue, verify an uploaded one), all through the services the
API and the dashboard call (retention.holds, compliance.reports, compliance.api.certificates)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from marshmallow import fields, validate
from sqlalchemy import select
from werkzeug import Response
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import NotFound

from audit import notes
from audit.certificate_pdf import KIND_TITLES, STATUS_TITLES
from compliance import clock, db, reports
from compliance.admin import bp, forms
from compliance.admin.tenant_pages import KIND_CHOICES, Posted, people, render_tenant
from compliance.api import certificates as certificate_api
from compliance.api.retention import HoldIn
from compliance.api.schemas import ReasonIn, WholeNumber
from compliance.auth import current_principal, requires
from compliance.models import DeletionCertificate, LegalHold, Tenant
from retention import holds

READERS = certificate_api.READERS  # legal, admin, auditor: as the certificates API
WRITERS = ("legal", "admin")  # who places and releases holds and issues certificates, as in the API
HORIZON = reports.PURGE_HORIZON  # "upcoming": a purge due within this long (as on the dashboard)
LISTED = 100  # rows of each list on the page; a tenant's page shows all of its own
PICKED = 500  # tenants offered in a picker
MAX_UPLOAD = 512 * 1024  # a certificate cites one event per system: tens of KB, never this
TENANT_ID = WholeNumber(required=True, validate=validate.Range(1, 2**63 - 1),
                        error_messages={"required": "Choose a tenant.", "invalid": "Choose a tenant."})
BACK = fields.String(load_default="legal", validate=validate.OneOf(("legal", "tenant")))


class HoldForm(HoldIn):
    tenant_id = TENANT_ID
    back = BACK


class ReleaseForm(ReasonIn):
    back = BACK


class IssueForm(certificate_api.IssueIn):
    tenant_id = TENANT_ID
    back = BACK


@bp.route("/legal")
@requires(*READERS)
def legal() -> tuple[str, int]:
    return render_legal()


def render_legal(posted: Posted | None = None, status: int = 200,
                 verdict: dict[str, Any] | None = None) -> tuple[str, int]:
    now = clock.now()
    active = db.session.scalars(select(LegalHold).where(LegalHold.released_at.is_(None))
                                .order_by(LegalHold.placed_at.desc()).limit(LISTED)).all()
    certificates = db.session.scalars(select(DeletionCertificate)
                                      .order_by(DeletionCertificate.issued_at.desc()).limit(LISTED)).all()
    due = reports.upcoming_purges(now, HORIZON)
    named = {hold.tenant_id for hold in active} | {row.tenant_id for row in certificates}
    tenants = {tenant.id: tenant for tenant in db.session.scalars(select(Tenant).where(Tenant.id.in_(named)))}
    held_open = db.session.scalars(select(Tenant).where(  # a hold matters while anything is left to delete
        Tenant.closed_at.is_not(None), Tenant.backups_purged_at.is_(None),
    ).order_by(Tenant.name).limit(PICKED))
    purged = db.session.scalars(select(Tenant).where(Tenant.purged_at.is_not(None))
                                .order_by(Tenant.purged_at.desc()).limit(PICKED))
    actors = [hold.placed_by for hold in active] + [row.issued_by for row in certificates]
    return render_template(
        "admin/legal.html", holds=active, certificates=certificates, purges=due[:LISTED],
        more_purges=max(0, len(due) - LISTED), tenants=tenants,
        hold_choices=[(t.id, f"{t.name} ({t.external_ref})") for t in held_open],
        issue_choices=[(t.id, f"{t.name} ({t.external_ref})") for t in purged],
        people=people(actors), posted=posted or Posted(""), verdict=verdict, kinds=KIND_CHOICES,
        moment=_moment, horizon=HORIZON, listed=LISTED, max_upload=MAX_UPLOAD,
    ), status


@bp.route("/holds", methods=["POST"])
@requires(*WRITERS)
def place_hold() -> Response | tuple[str, int]:
    """Place a hold as ``POST /api/v1/tenants/<id>/holds`` does: one active hold per matter."""
    data, errors = forms.load(HoldForm(), request.form)
    tenant = db.session.get(Tenant, data["tenant_id"]) if not errors else None
    if not errors and tenant is None:
        errors = {"tenant_id": "No such tenant."}
    if errors:
        return _send_back(Posted("hold", data, errors), 400)
    try:
        hold = holds.place(tenant.id, reason=data["reason"], matter=data["matter"],
                           actor=current_principal().actor)
    except holds.DuplicateHold as error:
        return _send_back(Posted("hold", data, {"matter": f"Hold {error.hold.id} for this matter is already "
                                                          "active on this tenant."}), 409)
    db.session.commit()
    flash(f"Legal hold {hold.id} ({hold.matter}) placed on {tenant.name}: nothing of it is deleted until "
          "the hold is released.", "ok")
    return _go_back(data["back"], tenant.id, "holds")


@bp.route("/holds/<id:hold_id>/release", methods=["POST"])
@requires(*WRITERS)
def release_hold(hold_id: int) -> Response | tuple[str, int]:
    hold = db.session.get(LegalHold, hold_id)
    if hold is None:
        raise NotFound(f"legal hold {hold_id} not found")
    data, errors = forms.load(ReleaseForm(), request.form)
    if errors:
        return _send_back(Posted(f"release-{hold.id}", data, errors), 400, hold.tenant_id)
    was_active = hold.released_at is None
    holds.release(hold, reason=data["reason"], actor=current_principal().actor)
    db.session.commit()
    if was_active:
        flash(f"Legal hold {hold.id} ({hold.matter}) released.", "ok")
    else:
        flash(f"Legal hold {hold.id} was already released; nothing changed.", "error")
    return _go_back(data["back"], hold.tenant_id, "holds")


@bp.route("/certificates", methods=["POST"])
@requires(*WRITERS)
def issue_certificate() -> Response | tuple[str, int]:
    """Issue a certificate as ``POST /api/v1/tenants/<id>/certificates`` does."""
    data, errors = forms.load(IssueForm(), request.form)
    if errors:
        return _send_back(Posted("issue", data, errors), 400)
    try:
        row = certificate_api.issue(data["tenant_id"], data["kind"], actor=current_principal().actor,
                                    request_id=data.get("request_id"))
    except certificate_api.Refused as refused:
        if refused.status == 404:
            return _send_back(Posted("issue", data, {"tenant_id": "No such tenant."}), 400)
        fields_at_fault = (refused.errors or {}).get("json", {})
        errors = {name: str(refused) for name in fields_at_fault} or {"_form": str(refused)}
        return _send_back(Posted("issue", data, errors), refused.status)
    flash(f"Certificate {row.id} issued ({row.kind}, {row.status.replace('_', ' ')}).", "ok")
    return redirect(url_for("admin.certificate", certificate_id=row.id))


@bp.route("/certificates/<certificate_id>")
@requires(*READERS)
def certificate(certificate_id: str) -> str:
    row = certificate_api.get_or_404(certificate_id)
    try:
        payload, problem = certificate_api.verify(row.envelope), None
    except ValueError as error:
        payload, problem = None, str(error)
    checkpoint, root = None, None
    if payload is not None:
        note = payload["evidence"]["checkpoint"]
        checkpoint = notes.parse_checkpoint(note[:note.index("\n\n") + 1])  # the text the signatures follow
        root = base64.b64encode(checkpoint.root).decode()
    return render_template("admin/certificate.html", row=row, payload=payload, problem=problem,
                           checkpoint=checkpoint, root=root, tenant=db.session.get(Tenant, row.tenant_id),
                           kind_titles=KIND_TITLES, status_titles=STATUS_TITLES, moment=_moment,
                           people=people([row.issued_by]))


@bp.route("/certificates/<certificate_id>/pdf")
@requires(*READERS)
def certificate_pdf(certificate_id: str) -> Response:
    return certificate_api.attachment(certificate_api.get_or_404(certificate_id), pdf=True)


@bp.route("/certificates/<certificate_id>/json")
@requires(*READERS)
def certificate_json(certificate_id: str) -> Response:
    return certificate_api.attachment(certificate_api.get_or_404(certificate_id), pdf=False)


@bp.route("/certificates/verify", methods=["POST"])
@requires(*READERS)
def verify_certificate() -> tuple[str, int]:
    """Verify an uploaded envelope as ``POST /api/v1/certificates/verify`` does: published keys only."""
    content, problem = _upload(request.files.get("certificate"))
    if problem is not None:
        return render_legal(Posted("verify", {}, {"certificate": problem}), 400)
    try:
        payload = certificate_api.verify(content)
    except ValueError as error:
        return render_legal(verdict={"valid": False, "problem": str(error)}, status=422)
    return render_legal(verdict={"valid": True, "payload": payload, "kind_titles": KIND_TITLES})


def _moment(value: str | None) -> datetime | None:
    """A time as the payload states it (ISO 8601), for the ``when`` filter."""
    return datetime.fromisoformat(value) if value else None


def _upload(upload: FileStorage | None) -> tuple[bytes, str | None]:
    """The uploaded file's bytes, or why it cannot be a certificate."""
    if upload is None or not upload.filename:
        return b"", "Choose the certificate's JSON file."
    content = upload.stream.read(MAX_UPLOAD + 1)
    if len(content) > MAX_UPLOAD:
        return b"", f"The file is larger than {MAX_UPLOAD // 1024} KB: it is not a deletion certificate."
    if not content.strip():
        return b"", "The file is empty."
    try:
        json.loads(content)
    except ValueError:
        return b"", ("The file is not JSON. Upload the certificate's .json file (its signed original), "
                     "not the PDF.")
    return content, None


def _send_back(posted: Posted, status: int, tenant_id: int | None = None) -> tuple[str, int]:
    """The page the form came from, with its values and errors."""
    if request.form.get("back") == "tenant":
        found = tenant_id or request.form.get("tenant_id", type=int)
        tenant = db.session.get(Tenant, found) if found else None
        if tenant is not None:
            return render_tenant(tenant, posted, status)
    return render_legal(posted, status)


def _go_back(back: str, tenant_id: int, section: str) -> Response:
    if back == "tenant":
        return redirect(url_for("admin.tenant", tenant_id=tenant_id) + f"#{section}")
    return redirect(url_for("admin.legal") + f"#{section}")
