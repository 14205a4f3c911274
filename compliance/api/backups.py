"""The backup catalogue: snapshots registered with where they live and which tenants they hold.
The sweep that deletes them and crypto-shreds their tenants is ``retention.backups``."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint, abort
from marshmallow import RAISE, Schema, fields, validate
from sqlalchemy import select

from compliance.api.pagination import paginate
from compliance.api.schemas import Moment, Page, PageArgs, Strict, WholeNumber, one_of, text
from compliance.api.writes import writes
from compliance.auth import current_principal, requires
from compliance.models import BackupSnapshot, backup_snapshot_tenants
from retention import backups

blp = Blueprint("backups", __name__, url_prefix="/api/v1", description="The backup snapshot catalogue")
READERS = ("admin", "legal", "auditor")
MAX_ID = 2**63 - 1


class SnapshotIn(Strict):
    taken_at = Moment(required=True, metadata={"description": "ISO 8601 with offset"})
    location = text(1000, required=True, metadata={
        "description": "where the snapshot lives: a directory path or s3://bucket/prefix"})
    object = text(1000, required=True, metadata={"description": "the snapshot's object name or prefix there"})
    tenant_ids = fields.List(WholeNumber(validate=validate.Range(1, MAX_ID)), required=True,
                             validate=validate.Length(min=1, max=10000))
    method = one_of(backups.METHODS, load_default="delete", metadata={
        "description": "delete: removed at expiry; crypto_shred: a copy we cannot delete, made unreadable "
                       "by destroying its tenants' keys"})


class SnapshotArgs(PageArgs):
    tenant_id = WholeNumber(validate=validate.Range(1, MAX_ID), metadata={
        "description": "only the snapshots holding this tenant"})


class SnapshotOut(Schema):
    id = fields.Integer()
    taken_at = fields.DateTime()
    location = fields.String()
    object = fields.String()
    method = fields.String()
    tenant_ids = fields.Function(lambda snapshot: [tenant.id for tenant in snapshot.tenants])
    expires_at = fields.Function(lambda snapshot: backups.expires_at(snapshot).isoformat())
    registered_by = fields.String()
    registered_at = fields.DateTime()
    purged_at = fields.DateTime(allow_none=True)
    purge_error = fields.String(allow_none=True)


class SnapshotPage(Page):
    items = fields.List(fields.Nested(SnapshotOut))


@blp.route("/backups", methods=["POST"])
@requires("admin")
@blp.arguments(SnapshotIn)
@blp.response(201, SnapshotOut)
@blp.alt_response(422, description="an invalid location or object name, a future time, an unknown tenant")
@writes
def register_snapshot(data: dict[str, Any]) -> BackupSnapshot:
    try:
        return backups.register(taken_at=data["taken_at"], location=data["location"],
                                object_name=data["object"], tenant_ids=data["tenant_ids"],
                                method=data["method"], actor=current_principal().actor)
    except backups.InvalidSnapshot as error:
        abort(422, message=str(error), errors={"json": {error.field: [str(error)]}})


@blp.route("/backups", methods=["GET"])
@requires(*READERS)
@blp.arguments(SnapshotArgs, location="query", as_kwargs=True, unknown=RAISE)
@blp.response(200, SnapshotPage)
def list_snapshots(limit: int, cursor: str | None = None, tenant_id: int | None = None) -> dict[str, Any]:
    query = select(BackupSnapshot)
    if tenant_id is not None:
        query = query.join(backup_snapshot_tenants).where(backup_snapshot_tenants.c.tenant_id == tenant_id)
    return paginate(query, BackupSnapshot.id, limit=limit, cursor=cursor)
