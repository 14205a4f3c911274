"""Source configs: the systems that hold a tenant's data, validated by their connector."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint, abort
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

import audit
from compliance import db
from compliance.api.pagination import paginate
from compliance.api.schemas import Page, PageArgs, Strict, WholeNumber, text
from compliance.api.tenants import get_or_404 as tenant_or_404
from compliance.api.writes import IDEMPOTENCY_HEADER, idempotent, writes
from compliance.auth import current_principal, requires
from compliance.models import AuditEvent, SourceConfig
from exporters.sources import registry
from exporters.sources.base import SourceError, redact

blp = Blueprint("sources", __name__, url_prefix="/api/v1/sources",
                description="Connected systems and their validated configuration")
CHECKED = "source.checked"
NAME = validate.Regexp(r"^[a-z0-9][a-z0-9_.-]{0,99}$",
                       error="name must be lower-case letters, digits, '_', '.', '-'")


class SourceIn(Strict):
    kind = fields.String(required=True, validate=validate.Length(min=1, max=32),
                         metadata={"description": "installed connector kind, e.g. sql, demo"})
    name = fields.String(required=True, validate=NAME)
    tenant_id = WholeNumber(allow_none=True, validate=validate.Range(min=1, max=2**63 - 1),
                            metadata={"description": "null: shared by every tenant"})
    config = fields.Dict(required=True)


class SourceOut(Schema):
    id = fields.Integer()
    kind = fields.String()
    name = fields.String()
    tenant_id = fields.Integer(allow_none=True)
    config = fields.Method("shown_config", metadata={"description": "inline secrets hidden"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()

    def shown_config(self, source: SourceConfig) -> dict[str, Any]:
        try:
            schema = registry.get(source.kind).config_schema
        except registry.UnknownSource:
            # The connector was uninstalled: without its schema, no value is known to be safe.
            return {name: "********" for name in source.config}
        return redact(schema, source.config)


class SourcePage(Page):
    items = fields.List(fields.Nested(SourceOut))


class SourceFilter(PageArgs):
    tenant_id = WholeNumber(validate=validate.Range(min=1, max=2**63 - 1))
    kind = text(32)


@blp.route("", methods=["GET"])
@requires("admin", "csm", "legal", "auditor")
@blp.arguments(SourceFilter, location="query", as_kwargs=True, unknown=RAISE)
@blp.response(200, SourcePage)
def list_sources(limit: int, cursor: str | None = None, tenant_id: int | None = None,
                 kind: str | None = None) -> dict[str, Any]:
    query = select(SourceConfig)
    if tenant_id is not None:
        query = query.where(SourceConfig.tenant_id == tenant_id)
    if kind:
        query = query.where(SourceConfig.kind == kind)
    return paginate(query, SourceConfig.id, limit=limit, cursor=cursor)


@blp.route("", methods=["POST"])
@requires("admin", "csm")
@idempotent
@blp.arguments(SourceIn)
@blp.response(201, SourceOut)
@blp.alt_response(409, description="the name is taken for this tenant")
@blp.doc(parameters=[IDEMPOTENCY_HEADER])
def create_source(data: dict[str, Any]) -> SourceConfig:
    try:
        kind = registry.get(data["kind"])
    except registry.UnknownSource as error:
        abort(422, message=str(error), errors={"json": {"kind": [str(error)]}})
    try:
        config = kind.validate(data["config"])
    except ValidationError as error:
        abort(422, message="the config does not match the connector's schema",
              errors={"json": {"config": error.messages}})
    if data.get("tenant_id") is not None:
        tenant_or_404(data["tenant_id"])
    source = SourceConfig(kind=data["kind"], name=data["name"], tenant_id=data.get("tenant_id"),
                          config=config)
    db.session.add(source)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        abort(409, message=f"a source named {data['name']!r} already exists in this scope")
    audit.record("source.created", actor=current_principal().actor, tenant_id=source.tenant_id,
                 subject=("source", source.id), data={"kind": source.kind, "name": source.name})
    return source


@blp.route("/<id:source_id>", methods=["GET"])
@requires("admin", "csm", "legal", "auditor")
@blp.response(200, SourceOut)
@blp.alt_response(404, description="no such source")
def get_source(source_id: int) -> SourceConfig:
    return get_or_404(source_id)


@blp.route("/<id:source_id>", methods=["DELETE"])
@requires("admin")
@blp.response(204)
@blp.alt_response(404, description="no such source")
@blp.alt_response(409, description="exports still refer to it")
@writes
def delete_source(source_id: int) -> None:
    source = get_or_404(source_id)
    db.session.delete(source)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        abort(409, message=f"source {source_id} is referenced by exports and cannot be deleted")
    audit.record("source.deleted", actor=current_principal().actor, tenant_id=source.tenant_id,
                 subject=("source", source_id), data={"kind": source.kind, "name": source.name})


class CheckOut(Schema):
    ok = fields.Boolean()
    error = fields.String(allow_none=True, metadata={"description": "what failed, in words"})


@blp.route("/<id:source_id>/check", methods=["POST"])
@requires("admin", "csm")
@blp.response(200, CheckOut)
@blp.alt_response(404, description="no such source")
@writes
def check_source(source_id: int) -> dict[str, Any]:
    """Ask the connector whether the system is reachable and the credentials work."""
    error = check(get_or_404(source_id), actor=current_principal().actor)
    return {"ok": error is None, "error": error}


def check(source_config: SourceConfig, *, actor: str) -> str | None:
    """Run the connector's check and put its outcome on the audit trail; None when it answers."""
    error = run_check(source_config)
    audit.record(CHECKED, actor=actor, tenant_id=source_config.tenant_id,
                 subject=("source", source_config.id), data={"ok": error is None, "error": error})
    return error


def last_checks(source_ids: list[int]) -> dict[int, AuditEvent]:
    """Source id -> the event of its latest check (sources never checked are left out)."""
    latest = select(func.max(AuditEvent.id)).where(
        AuditEvent.action == CHECKED, AuditEvent.subject_type == "source",
        AuditEvent.subject_id.in_([str(source_id) for source_id in source_ids]),
    ).group_by(AuditEvent.subject_id)
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.id.in_(latest)))
    return {int(event.subject_id): event for event in events if event.subject_id}


def in_scope(tenant_id: int) -> list[SourceConfig]:
    """The tenant's own sources and every shared one: what an export reads and a purge erases."""
    return list(db.session.scalars(select(SourceConfig).where(
        (SourceConfig.tenant_id == tenant_id) | SourceConfig.tenant_id.is_(None)).order_by(SourceConfig.id)))


def run_check(source_config: SourceConfig) -> str | None:
    """None when the source answers; otherwise the reason, never a secret."""
    try:
        source = registry.get(source_config.kind)(source_config.config)
    except registry.UnknownSource as unknown:
        return str(unknown)
    try:
        with source:
            source.check()
    except SourceError as failure:
        return str(failure)
    except Exception as failure:  # a connector bug must not leak its message (secrets)
        return f"the {source_config.kind} connector failed unexpectedly ({type(failure).__name__})"
    return None


def get_or_404(source_id: int) -> SourceConfig:
    source = db.session.get(SourceConfig, source_id)
    if source is None:
        abort(404, message=f"source {source_id} not found")
    return source
