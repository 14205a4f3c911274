"""Exports: start one for a request, follow its per-dataset progress, retry what failed."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint, abort
from marshmallow import RAISE, Schema, fields, validate
from sqlalchemy import select

from compliance import db
from compliance.api.pagination import paginate
from compliance.api.schemas import Page, PageArgs, Strict, WholeNumber, one_of
from compliance.auth import current_principal, requires
from compliance.models import FORMATS, Export, OffboardingRequest
from exporters import jobs

blp = Blueprint("exports", __name__, url_prefix="/api/v1", description="Export bundles and their progress")
READERS = ("admin", "csm", "legal", "auditor")


class ExportIn(Strict):
    formats = fields.List(one_of(FORMATS), validate=validate.Length(min=1, max=len(FORMATS)),
                          metadata={"description": "default: the formats the request asked for"})


class TaskOut(Schema):
    id = fields.Integer()
    source_id = fields.Integer(attribute="source_config_id")
    source = fields.Function(lambda task: task.source.name)
    dataset = fields.String()
    category = fields.String()
    status = fields.String(metadata={"description": "queued, running, done or failed"})
    rows = fields.Integer()
    total_rows = fields.Integer(allow_none=True)
    percent = fields.Function(lambda t: min(100.0, round(100 * t.rows / t.total_rows, 1))
                              if t.total_rows else (100.0 if t.status == "done" else None))
    bytes = fields.Integer()
    attempts = fields.Integer()
    requeues = fields.Integer()
    error = fields.String(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    heartbeat_at = fields.DateTime(allow_none=True, metadata={"description": "last progress written"})
    finished_at = fields.DateTime(allow_none=True)


class ExportOut(Schema):
    id = fields.Integer()
    request_id = fields.Integer()
    status = fields.String(metadata={"description": "pending, running, assembling, ready or failed"})
    formats = fields.List(fields.String())
    error = fields.String(allow_none=True)
    bundle_sha256 = fields.String(allow_none=True)
    bundle_bytes = fields.Integer(allow_none=True)
    manifest = fields.Dict(allow_none=True)
    created_by = fields.String()
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    tasks = fields.List(fields.Nested(TaskOut))


class ExportSummaryOut(ExportOut):
    class Meta:
        exclude = ("manifest",)  # a list stays small; GET /exports/{id} has the manifest


class ExportPage(Page):
    items = fields.List(fields.Nested(ExportSummaryOut))


class ExportFilter(PageArgs):
    request_id = WholeNumber(validate=validate.Range(min=1, max=2**63 - 1))
    status = one_of(("pending", "running", "assembling", "ready", "failed"))


@blp.route("/requests/<id:request_id>/exports", methods=["POST"])
@requires("admin", "csm")
@blp.arguments(ExportIn)
@blp.response(202, ExportOut)
@blp.alt_response(404, description="no such request")
@blp.alt_response(409, description="the request is not approved (or failed) yet")
def start_export(data: dict[str, Any], request_id: int) -> Export:
    """Start an export; the request moves to exporting and the jobs are queued."""
    if db.session.get(OffboardingRequest, request_id) is None:
        abort(404, message=f"request {request_id} not found")
    return jobs.launch(request_id, data.get("formats"), actor=current_principal().actor)


@blp.route("/exports", methods=["GET"])
@requires(*READERS)
@blp.arguments(ExportFilter, location="query", as_kwargs=True, unknown=RAISE)
@blp.response(200, ExportPage)
def list_exports(limit: int, cursor: str | None = None, request_id: int | None = None,
                 status: str | None = None) -> dict[str, Any]:
    query = select(Export)
    if request_id is not None:
        query = query.where(Export.request_id == request_id)
    if status:
        query = query.where(Export.status == status)
    return paginate(query, Export.id, limit=limit, cursor=cursor)


@blp.route("/exports/<id:export_id>", methods=["GET"])
@requires(*READERS)
@blp.response(200, ExportOut)
@blp.alt_response(404, description="no such export")
def get_export(export_id: int) -> Export:
    export = db.session.get(Export, export_id)
    if export is None:
        abort(404, message=f"export {export_id} not found")
    return export


@blp.route("/exports/<id:export_id>/retry", methods=["POST"])
@requires("admin", "csm")
@blp.response(202, ExportOut)
@blp.alt_response(404, description="no such export")
@blp.alt_response(409, description="the export has not failed")
def retry_export(export_id: int) -> Export:
    """Rerun only the failed datasets."""
    if db.session.get(Export, export_id) is None:
        abort(404, message=f"export {export_id} not found")
    return jobs.rerun_failed(export_id, actor=current_principal().actor)
