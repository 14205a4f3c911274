"""Deletion certificates: legal has one issued once the audit log holds the evidence, fetches it
as its signed envelope (JSON) or as a PDF, and anyone can have an envelope verified."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import Response, request
from flask_smorest import Blueprint, abort
from marshmallow import RAISE, Schema, fields, validate
from sqlalchemy import select

from audit import certificates, keys
from audit.certificate_pdf import render_pdf
from compliance import config, db
from compliance.api.schemas import Strict, one_of
from compliance.auth import current_principal, public, requires
from compliance.models import DeletionCertificate, OffboardingRequest, Tenant

blp = Blueprint("certificates", __name__, url_prefix="/api/v1",
                description="Signed deletion certificates that verify offline")
KINDS = ("primary", "backups")
READERS = ("legal", "admin", "auditor")


class IssueIn(Strict):
    kind = one_of(KINDS, required=True, metadata={
        "description": "primary: the purge 90 days after closure; backups: the 12-month backup purge"})
    request_id = fields.Integer(validate=validate.Range(1, 2**63 - 1))


class CertificateOut(Schema):
    id = fields.String()
    tenant_id = fields.Integer()
    request_id = fields.Integer(allow_none=True)
    kind = fields.String()
    status = fields.String()
    issued_at = fields.DateTime()
    issued_by = fields.String()
    key_id = fields.String()
    envelope = fields.Function(lambda row: json.loads(row.envelope),
                               metadata={"description": "the DSSE envelope, as issued"})


class CertificateList(Schema):
    items = fields.List(fields.Nested(CertificateOut))


class FormatArgs(Schema):
    class Meta:
        unknown = RAISE

    format = fields.String(load_default="json", validate=validate.OneOf(("json", "pdf")))


class VerifiedOut(Schema):
    valid = fields.Boolean()
    certificate_id = fields.String()
    kind = fields.String()
    status = fields.String()
    tenant_id = fields.Integer()
    key_id = fields.String()
    issued_at = fields.String()


@blp.route("/tenants/<id:tenant_id>/certificates", methods=["POST"])
@requires("legal", "admin")
@blp.arguments(IssueIn)
@blp.response(201, CertificateOut)
@blp.alt_response(409, description="the evidence is not (all) in the audit log yet; the answer names what")
def issue_certificate(data: dict[str, Any], tenant_id: int) -> DeletionCertificate:
    try:
        return issue(tenant_id, data["kind"], actor=current_principal().actor,
                     request_id=data.get("request_id"))
    except Refused as refused:
        abort(refused.status, message=str(refused), **({"errors": refused.errors} if refused.errors else {}))


@blp.route("/tenants/<id:tenant_id>/certificates", methods=["GET"])
@requires(*READERS)
@blp.response(200, CertificateList)
def list_certificates(tenant_id: int) -> dict[str, Any]:
    return {"items": of_tenant(tenant_id)}


@blp.route("/certificates/<certificate_id>", methods=["GET"])
@requires(*READERS)
@blp.arguments(FormatArgs, location="query", as_kwargs=True)
@blp.response(200, description="the DSSE envelope (application/json) or the PDF (format=pdf, or "
                               "Accept: application/pdf)")
def get_certificate(certificate_id: str, format: str) -> Response:
    wants_pdf = format == "pdf" or request.accept_mimetypes.best == "application/pdf"
    return attachment(get_or_404(certificate_id), pdf=wants_pdf)


@blp.route("/certificates/verify", methods=["POST"])
@public
@blp.response(200, VerifiedOut)
@blp.alt_response(422, description="the envelope does not verify; the message says why")
def verify_certificate() -> dict[str, Any]:
    """Check a pasted envelope as ``offboard cert verify`` does: with the published keys only."""
    try:
        payload = verify(request.get_data())
    except ValueError as error:  # CertificateError is one
        abort(422, message=f"the certificate does not verify: {error}")
    return {"valid": True, **{name: payload.get(name) for name in VerifiedOut().fields if name != "valid"}}


class Refused(Exception):
    """Why no certificate was issued, as the API answers it: HTTP status, message, errors."""

    def __init__(self, status: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.errors = status, errors


def issue(tenant_id: int, kind: str, *, actor: str, request_id: int | None = None) -> DeletionCertificate:
    """Issue a ``kind`` certificate for the tenant (commits first: issuing runs its own transactions)."""
    if db.session.get(Tenant, tenant_id) is None:
        raise Refused(404, f"tenant {tenant_id} not found")
    if request_id is not None:
        found = db.session.get(OffboardingRequest, request_id)
        if found is None or found.tenant_id != tenant_id:
            raise Refused(422, f"request {request_id} is not a request of tenant {tenant_id}",
                          {"json": {"request_id": ["not a request of this tenant"]}})
    db.session.commit()  # issuing signs a checkpoint first, in transactions of its own
    try:
        return certificates.issue(tenant_id, kind, actor=actor, request_id=request_id)
    except certificates.MissingEvidence as missing:
        raise Refused(409, f"cannot issue a {kind} deletion certificate for tenant {tenant_id} yet: "
                           + "; ".join(missing.missing), {"missing": missing.missing}) from None


def of_tenant(tenant_id: int) -> list[DeletionCertificate]:
    return list(db.session.scalars(select(DeletionCertificate).where(
        DeletionCertificate.tenant_id == tenant_id).order_by(DeletionCertificate.issued_at.desc())))


def attachment(row: DeletionCertificate, *, pdf: bool) -> Response:
    """The certificate as a download: its envelope exactly as issued, or the PDF rendered from it."""
    if pdf:
        body, mimetype, name = render_pdf(row), "application/pdf", f"deletion-certificate-{row.id}.pdf"
    else:
        body, mimetype, name = row.envelope, "application/json", f"deletion-certificate-{row.id}.json"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def verify(envelope: str | bytes) -> dict[str, Any]:
    """The payload of an envelope that verifies with the published keys alone; ValueError
    (CertificateError) naming the first check that failed otherwise."""
    return certificates.verify(envelope, keys.public_keys(config.current()))


def get_or_404(certificate_id: str) -> DeletionCertificate:
    try:
        canonical = str(uuid.UUID(certificate_id))
    except ValueError:
        abort(404, message=f"no certificate has id {certificate_id[:40]!r}")
    row = db.session.get(DeletionCertificate, canonical)
    if row is None:
        abort(404, message=f"certificate {canonical} not found")
    return row
