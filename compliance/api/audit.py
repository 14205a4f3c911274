"""The audit log for auditors, legal and admins: events, signed checkpoints, and the proofs that
let anyone check an event is in the log and that the log only grew. Proofs are computed from
the stored subtree hashes: O(log n) lookups, whatever the log's size."""

from __future__ import annotations

import base64
from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint, abort
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from audit import checkpoints, keys, log, proofs, search
from compliance import config, db
from compliance.api.pagination import paginate
from compliance.api.schemas import Moment, Page, PageArgs, text
from compliance.auth import public, requires
from compliance.models import AuditCheckpoint, AuditEvent, AuditLeaf

blp = Blueprint("audit", __name__, url_prefix="/api/v1/audit",
                description="The tamper-evident audit log: events, checkpoints, proofs")
READERS = ("auditor", "legal", "admin")
MAX_INDEX = 2**62


class Base64(fields.Field):
    def _serialize(self, value: bytes | None, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else base64.b64encode(value).decode()


class EventArgs(PageArgs):
    tenant_id = fields.Integer(validate=validate.Range(1, MAX_INDEX))
    request_id = fields.Integer(validate=validate.Range(1, MAX_INDEX))
    action = text(64, metadata={"description": "exact, or ending in '.' for every action under it "
                                               "(purge. finds purge.completed)"})
    actor = text(120, metadata={"description": "exact, e.g. user:3, system, customer"})
    since = Moment(metadata={"description": "occurred at or after (ISO 8601 with offset)"})
    until = Moment(metadata={"description": "occurred before"})


class EventOut(Schema):
    id = fields.Integer()
    log_index = fields.Function(lambda event: event.leaf.log_index if event.leaf else None,
                                metadata={"description": "null while the event waits for the sequencer"})
    occurred_at = fields.DateTime()
    actor = fields.String()
    action = fields.String()
    tenant_id = fields.Integer(allow_none=True)
    request_id = fields.Integer(allow_none=True)
    subject_type = fields.String(allow_none=True)
    subject_id = fields.String(allow_none=True)
    data = fields.Dict()
    canonical = fields.String(metadata={"description": "the RFC 8785 JSON that is the Merkle leaf"})


class EventPage(Page):
    items = fields.List(fields.Nested(EventOut))


class CheckpointOut(Schema):
    id = fields.Integer()
    origin = fields.String()
    size = fields.Integer()
    root_hash = Base64()
    signed_at = fields.DateTime()
    key_id = fields.String()
    note = fields.String(metadata={"description": "the C2SP signed note, verbatim"})


class InclusionArgs(Schema):
    class Meta:
        unknown = RAISE

    index = fields.Integer(required=True, validate=validate.Range(0, MAX_INDEX))
    size = fields.Integer(validate=validate.Range(1, MAX_INDEX),
                          metadata={"description": "tree size; default: the latest checkpoint's"})


class ConsistencyArgs(Schema):
    class Meta:
        unknown = RAISE

    old = fields.Integer(data_key="from", required=True, validate=validate.Range(1, MAX_INDEX))
    new = fields.Integer(data_key="to", required=True, validate=validate.Range(1, MAX_INDEX))

    @validates_schema
    def _ordered(self, data: dict[str, Any], **_: Any) -> None:
        if data["old"] > data["new"]:
            raise ValidationError("must not be larger than 'to'", "from")


class ProofOut(Schema):
    size = fields.Integer()
    root_hash = Base64()
    proof = fields.List(Base64())
    checkpoint = fields.Nested(CheckpointOut, allow_none=True,
                               metadata={"description": "the signed checkpoint of this size, if any"})


class InclusionOut(ProofOut):
    index = fields.Integer()
    leaf_hash = Base64()
    event = fields.Nested(EventOut)


class ConsistencyOut(ProofOut):
    old_size = fields.Integer(data_key="from")
    old_root_hash = Base64(data_key="from_root_hash")


@blp.route("/events", methods=["GET"])
@requires(*READERS)
@blp.arguments(EventArgs, location="query", as_kwargs=True, unknown=RAISE)
@blp.response(200, EventPage)
def list_events(limit: int, cursor: str | None = None, **filters: Any) -> dict[str, Any]:
    """Events newest first, narrowed by every filter given."""
    return paginate(search.events(**filters), AuditEvent.id, limit=limit, cursor=cursor)


@blp.route("/checkpoints/latest", methods=["GET"])
@requires(*READERS)
@blp.response(200, CheckpointOut)
@blp.alt_response(404, description="no checkpoint has been signed yet")
def latest_checkpoint() -> AuditCheckpoint:
    row = checkpoints.latest()
    if row is None:
        abort(404, message="no checkpoint has been signed yet")
    return row


@blp.route("/checkpoints", methods=["POST"])
@requires("auditor", "admin")
@blp.response(201, CheckpointOut)
@blp.alt_response(200, schema=CheckpointOut, description="the log did not grow: the latest checkpoint")
def sign_checkpoint() -> tuple[AuditCheckpoint, int]:
    """Sequence what is queued and sign the log now (the scheduler does it every minute)."""
    db.session.commit()  # the checkpoint runs its own transactions
    row = checkpoints.checkpoint()
    if row is not None:
        return row, 201
    latest = checkpoints.latest()
    if latest is None:
        abort(409, message="the audit log is empty: there is nothing to sign")
    return latest, 200


@blp.route("/proof/inclusion", methods=["GET"])
@requires(*READERS)
@blp.arguments(InclusionArgs, location="query", as_kwargs=True)
@blp.response(200, InclusionOut)
def inclusion(index: int, size: int | None = None) -> dict[str, Any]:
    size = _tree_size(size)
    if index >= size:
        abort(422, message=f"index {index} is not in a tree of {size} events",
              errors={"query": {"index": [f"must be below the tree size {size}"]}})
    event = db.session.scalar(select(AuditEvent).join(AuditEvent.leaf).where(AuditLeaf.log_index == index)
                              .options(selectinload(AuditEvent.leaf)))
    return {"index": index, "size": size, "leaf_hash": event.leaf.leaf_hash, "event": event,
            "root_hash": log.root(size), "proof": proofs.inclusion_proof(index, size, log.fetch),
            "checkpoint": _checkpoint_of(size)}


@blp.route("/proof/consistency", methods=["GET"])
@requires(*READERS)
@blp.arguments(ConsistencyArgs, location="query", as_kwargs=True)
@blp.response(200, ConsistencyOut)
def consistency(old: int, new: int) -> dict[str, Any]:
    new = _tree_size(new)
    return {"old_size": old, "old_root_hash": log.root(old), "size": new, "root_hash": log.root(new),
            "proof": proofs.consistency_proof(old, new, log.fetch), "checkpoint": _checkpoint_of(new)}


def _tree_size(size: int | None) -> int:
    """The size asked for, or the latest checkpoint's; never beyond what is sequenced."""
    if size is None:
        latest = checkpoints.latest()
        if latest is None:
            abort(409, message="no checkpoint has been signed yet: give a size")
        return latest.size
    available = log.size()
    if size > available:
        abort(422, message=f"the log holds {available} sequenced events, not {size}",
              errors={"query": {"size": [f"must be at most {available}"]}})
    return size


def _checkpoint_of(size: int) -> AuditCheckpoint | None:
    return db.session.scalars(select(AuditCheckpoint).where(
        AuditCheckpoint.size == size, AuditCheckpoint.status == "ok").order_by(AuditCheckpoint.id)).first()


@public
def published_keys() -> ResponseReturnValue:
    """The audit signing keys (JWKS, OKP/Ed25519), every one ever used, the active one first."""
    response = jsonify(keys.jwks(config.current()))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
