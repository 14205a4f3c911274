"""Tenants: the customer accounts being offboarded."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint, abort
from marshmallow import RAISE, Schema, fields, validate
from sqlalchemy import Select, select

from compliance import accounts, db, workflow
from compliance.api.pagination import paginate
from compliance.api.schemas import Page, PageArgs, Strict, WholeNumber, one_of, text
from compliance.api.writes import IDEMPOTENCY_HEADER, idempotent, writes
from compliance.auth import current_principal, requires
from compliance.models import VALUE_TIERS, Tenant
from compliance.workflow import legal_regime_for

blp = Blueprint("tenants", __name__, url_prefix="/api/v1/tenants",
                description="Customer accounts and their offboarding facts")

REGION = validate.Regexp(r"^([A-Z]{2}(-[A-Z0-9]{1,3})?|EU|EEA)$",
                         error="region must be an ISO 3166 code such as DE, UK, US-CA, or EU")
READERS = ("admin", "csm", "legal", "auditor")
# A quadrillion: beyond any contract in any currency, and far below 2^63: the dashboard's
# revenue by reason (a 64-bit SUM on SQLite) would need 9,000 such accounts to overflow.
MAX_ANNUAL_VALUE = 10**15


def annual_value_field() -> WholeNumber:
    """The yearly contract value, counted in the exit feedback's revenue by reason."""
    message = f"annual_value must be a whole number of currency units from 0 to {MAX_ANNUAL_VALUE}"
    return WholeNumber(allow_none=True, validate=validate.Range(0, MAX_ANNUAL_VALUE, error=message),
                       error_messages={"invalid": message},
                       metadata={"description": "yearly contract value in whole currency units, or null"})


class TenantIn(Strict):
    external_ref = text(128, required=True, metadata={"description": "the account id in billing/CRM"})
    name = text(200, required=True)
    region = fields.String(required=True, validate=REGION)
    value_tier = one_of(VALUE_TIERS, load_default="standard")
    annual_value = annual_value_field()
    contact_email = fields.Email(validate=validate.Length(max=254), allow_none=True)


class TenantPatch(Strict):
    name = text(200)
    region = fields.String(validate=REGION)
    value_tier = one_of(VALUE_TIERS)
    annual_value = annual_value_field()
    contact_email = fields.Email(validate=validate.Length(max=254), allow_none=True)
    no_contact = fields.Boolean(metadata={"description": "the customer asked for no further contact: "
                                                         "only the messages the law requires are sent"})


class TenantOut(Schema):
    id = fields.Integer()
    external_ref = fields.String()
    name = fields.String()
    region = fields.String()
    legal_regime = fields.Function(lambda tenant: legal_regime_for(tenant.region))
    value_tier = fields.String()
    annual_value = fields.Integer(allow_none=True)
    contact_email = fields.String(allow_none=True)
    no_contact_since = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class TenantPage(Page):
    items = fields.List(fields.Nested(TenantOut))


class TenantFilter(PageArgs):
    region = fields.String(validate=REGION)
    q = fields.String(validate=validate.Length(min=1, max=200),
                      metadata={"description": "part of the name or external ref"})


@blp.route("", methods=["GET"])
@requires(*READERS)
@blp.arguments(TenantFilter, location="query", as_kwargs=True, unknown=RAISE)
@blp.response(200, TenantPage)
def list_tenants(limit: int, cursor: str | None = None, region: str | None = None,
                 q: str | None = None) -> dict[str, Any]:
    return paginate(search(region=region, q=q), Tenant.id, limit=limit, cursor=cursor)


@blp.route("", methods=["POST"])
@requires("admin", "csm")
@idempotent
@blp.arguments(TenantIn)
@blp.response(201, TenantOut)
@blp.alt_response(409, description="a tenant with this external_ref exists")
@blp.doc(parameters=[IDEMPOTENCY_HEADER])
def create_tenant(data: dict[str, Any]) -> Tenant:
    return workflow.register_tenant(actor=current_principal().actor, **data)


@blp.route("/<id:tenant_id>", methods=["GET"])
@requires(*READERS)
@blp.response(200, TenantOut)
@blp.alt_response(404, description="no such tenant")
def get_tenant(tenant_id: int) -> Tenant:
    return get_or_404(tenant_id)


@blp.route("/<id:tenant_id>", methods=["PATCH"])
@requires("admin", "csm")
@blp.arguments(TenantPatch)
@blp.response(200, TenantOut)
@blp.alt_response(404, description="no such tenant")
@writes
def update_tenant(data: dict[str, Any], tenant_id: int) -> Tenant:
    tenant = get_or_404(tenant_id)
    accounts.update(tenant, data, actor=current_principal().actor)
    return tenant


def search(*, region: str | None = None, q: str | None = None) -> Select[tuple[Tenant]]:
    """Tenants in a region and/or whose name or external ref contains ``q`` (wildcards taken literally)."""
    query = select(Tenant)
    if region:
        query = query.where(Tenant.region == region)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(Tenant.name.ilike(pattern, escape="\\")
                            | Tenant.external_ref.ilike(pattern, escape="\\"))
    return query


def get_or_404(tenant_id: int) -> Tenant:
    tenant = db.session.get(Tenant, tenant_id)
    if tenant is None:
        abort(404, message=f"tenant {tenant_id} not found")
    return tenant
