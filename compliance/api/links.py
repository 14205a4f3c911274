"""Download links: issue one for a ready export (the URL is in this answer only), list, revoke, re-issue."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from compliance import db
from compliance.api.schemas import Strict, WholeNumber
from compliance.api.writes import writes
from compliance.auth import current_principal, requires
from compliance.models import AuditEvent, DownloadLink, Export
from exporters import links

blp = Blueprint("links", __name__, url_prefix="/api/v1", description="Signed download links for customers")
DAY = 24 * 3600


class LinkIn(Strict):
    recipient = fields.Email(required=True, validate=validate.Length(max=254))
    expires_in = WholeNumber(load_default=7 * DAY, validate=validate.Range(min=300, max=30 * DAY),
                             metadata={"description": "seconds; default 7 days, at most 30"})
    max_downloads = WholeNumber(load_default=5, validate=validate.Range(min=1, max=100))


class AttemptOut(Schema):
    at = fields.DateTime(attribute="occurred_at")
    action = fields.String()
    outcome = fields.Function(lambda event: event.data.get("outcome"))
    ip = fields.Function(lambda event: event.data.get("ip"))
    user_agent = fields.Function(lambda event: event.data.get("user_agent"))


class LinkOut(Schema):
    id = fields.Integer()
    export_id = fields.Integer()
    recipient = fields.String()
    bundle_sha256 = fields.String()
    expires_at = fields.DateTime()
    max_downloads = fields.Integer()
    downloads = fields.Integer()
    created_by = fields.String()
    created_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)
    revoked_by = fields.String(allow_none=True)
    replaces_id = fields.Integer(allow_none=True)
    state = fields.Function(links.state, metadata={"description": "active, revoked, expired or used_up"})
    history = fields.Function(lambda link: AttemptOut(many=True).dump(download_history(link.id)))


class NewLinkOut(LinkOut):
    class Meta:
        exclude = ("history", "state")  # a new link has no history and is active

    url = fields.String(metadata={"description": "the customer's link: in this answer and the e-mail only"})


class LinkList(Schema):
    items = fields.List(fields.Nested(LinkOut))


@blp.route("/exports/<id:export_id>/links", methods=["POST"])
@requires("admin", "csm")
@blp.arguments(LinkIn)
@blp.response(201, NewLinkOut)
@blp.alt_response(404, description="no such export")
@blp.alt_response(409, description="the export is not ready")
@writes
def issue_link(data: dict[str, Any], export_id: int) -> dict[str, Any]:
    export = db.session.get(Export, export_id)
    if export is None:
        abort(404, message=f"export {export_id} not found")
    try:
        issued = links.deliver(export, recipient=data["recipient"], actor=current_principal().actor,
                               expires_in=timedelta(seconds=data["expires_in"]),
                               max_downloads=data["max_downloads"])
    except links.LinkError as error:
        abort(409, message=str(error))
    return _answer(issued)


@blp.route("/exports/<id:export_id>/links", methods=["GET"])
@requires("admin", "csm", "legal", "auditor")
@blp.response(200, LinkList)
@blp.alt_response(404, description="no such export")
def list_links(export_id: int) -> dict[str, Any]:
    if db.session.get(Export, export_id) is None:
        abort(404, message=f"export {export_id} not found")
    query = select(DownloadLink).where(DownloadLink.export_id == export_id).order_by(DownloadLink.id)
    return {"items": list(db.session.scalars(query))}


@blp.route("/links/<id:link_id>/revoke", methods=["POST"])
@requires("admin", "csm")
@blp.response(200, LinkOut)
@blp.alt_response(404, description="no such link")
@writes
def revoke_link(link_id: int) -> DownloadLink:
    link = _link_or_404(link_id)
    links.revoke(link, actor=current_principal().actor)
    return link


@blp.route("/links/<id:link_id>/reissue", methods=["POST"])
@requires("admin", "csm")
@blp.response(201, NewLinkOut)
@blp.alt_response(404, description="no such link")
@blp.alt_response(409, description="the export is no longer ready")
@writes
def reissue_link(link_id: int) -> dict[str, Any]:
    """Revoke a link and send a fresh one to the same recipient, with a fresh expiry and quota."""
    try:
        return _answer(links.reissue(_link_or_404(link_id), actor=current_principal().actor))
    except links.LinkError as error:
        abort(409, message=str(error))


def _answer(issued: links.Issued) -> dict[str, Any]:
    link = issued.link
    return {"url": issued.url, **{name: getattr(link, name) for name in NewLinkOut().fields if name != "url"}}


def _link_or_404(link_id: int) -> DownloadLink:
    link = db.session.get(DownloadLink, link_id)
    if link is None:
        abort(404, message=f"link {link_id} not found")
    return link


def download_history(link_id: int) -> list[AuditEvent]:
    """Every attempt to use the link (good or refused), oldest first."""
    return list(db.session.scalars(select(AuditEvent).where(
        AuditEvent.subject_type == "link", AuditEvent.subject_id == str(link_id),
        AuditEvent.action.like("download.%")).order_by(AuditEvent.id)))
