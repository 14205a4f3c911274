"""API keys (admin only): the plain key is in the create answer once, never again."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint, abort
from marshmallow import RAISE, Schema, fields
from sqlalchemy import select

from compliance import db
from compliance.api.pagination import paginate
from compliance.api.schemas import Page, PageArgs, Strict, one_of, text
from compliance.api.writes import writes
from compliance.auth import create_api_key, current_principal, requires, revoke_api_key
from compliance.models import ROLES, ApiKey

blp = Blueprint("keys", __name__, url_prefix="/api/v1/keys", description="API keys and roles")


class KeyIn(Strict):
    name = text(100, required=True)
    role = one_of(ROLES, required=True)


class KeyOut(Schema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String()
    prefix = fields.String(metadata={"description": "public part, to recognise the key"})
    created_by = fields.String()
    created_at = fields.DateTime()
    last_used_at = fields.DateTime(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)


class NewKeyOut(KeyOut):
    key = fields.String(metadata={"description": "the secret key; shown only in this answer"})


class KeyPage(Page):
    items = fields.List(fields.Nested(KeyOut))


@blp.route("", methods=["GET"])
@requires("admin")
@blp.arguments(PageArgs, location="query", as_kwargs=True, unknown=RAISE)
@blp.response(200, KeyPage)
def list_keys(limit: int, cursor: str | None = None) -> dict[str, Any]:
    return paginate(select(ApiKey), ApiKey.id, limit=limit, cursor=cursor)


@blp.route("", methods=["POST"])
@requires("admin")
@blp.arguments(KeyIn)
@blp.response(201, NewKeyOut)
@writes  # not idempotent: a replay would have to store the plain key, which is shown once only
def create_key(data: dict[str, Any]) -> dict[str, Any]:
    key, plain = create_api_key(name=data["name"], role=data["role"],
                                created_by=current_principal().actor)
    return {"key": plain, **{name: getattr(key, name) for name in KeyOut().fields}}


@blp.route("/<id:key_id>", methods=["DELETE"])
@requires("admin")
@blp.response(200, KeyOut)
@blp.alt_response(404, description="no such key")
@writes
def revoke_key(key_id: int) -> ApiKey:
    key = db.session.get(ApiKey, key_id)
    if key is None:
        abort(404, message=f"API key {key_id} not found")
    revoke_api_key(key, actor=current_principal().actor)
    return key
