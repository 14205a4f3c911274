"""The tenant pages: every account at a glance, one account's sources (with their check),
requests, retention dates, legal holds and certificates, and the form that edits its facts,
each read and written through the API's own schemas and services."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from werkzeug import Response
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import NotFound

from audit.certificate_pdf import KIND_TITLES
from compliance import accounts, db
from compliance.admin import bp, formatting, forms
from compliance.api import certificates as certificate_api
from compliance.api import retention as retention_api
from compliance.api import sources as source_api
from compliance.api import tenants as tenant_api
from compliance.api.pagination import paginate
from compliance.auth import current_principal, may, requires
from compliance.models import ROLES, VALUE_TIERS, LegalHold, OffboardingRequest, Tenant
from compliance.models.requests import TERMINAL_STATES
from compliance.workflow import legal_regime_for

PAGE_SIZE = 50
KIND_CHOICES = [(kind, KIND_TITLES[kind]) for kind in certificate_api.KINDS]
TIER_CHOICES = [(tier, formatting.label(tier)) for tier in VALUE_TIERS]
REQUIRED = ("name", "region")  # optional in a PATCH, but the edit form always sends them
# The edit form sends every fact: a blank optional field is no value, an unticked box is "may contact".
UNSET = {"annual_value": None, "contact_email": None, "no_contact": False}


@dataclass(frozen=True)
class Posted:
    """A form sent back to its page: which one, what was typed, and a message per field."""

    form: str
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@bp.route("/tenants")
@requires(*ROLES)
def tenants() -> tuple[str, int]:
    known = MultiDict([(name, value) for name, value in request.args.items(multi=True)
                       if name in ("q", "region", "cursor")])
    data, errors = forms.load(tenant_api.TenantFilter(), known)
    if errors:
        return render_template("admin/tenants.html", rows=[], query=data, errors=errors, next_url=None), 400
    page = paginate(tenant_api.search(region=data.get("region"), q=data.get("q")), Tenant.id,
                    limit=PAGE_SIZE, cursor=data.get("cursor"))
    ids = [tenant.id for tenant in page["items"]]
    open_requests = dict(db.session.execute(select(OffboardingRequest.tenant_id, OffboardingRequest.id).where(
        OffboardingRequest.tenant_id.in_(ids), OffboardingRequest.status.not_in(TERMINAL_STATES))).all())
    held = dict(db.session.execute(select(LegalHold.tenant_id, func.count()).where(
        LegalHold.tenant_id.in_(ids), LegalHold.released_at.is_(None)).group_by(LegalHold.tenant_id)).all())
    rows = [{"tenant": tenant, "open_request": open_requests.get(tenant.id), "holds": held.get(tenant.id, 0)}
            for tenant in page["items"]]
    search = {"q": data.get("q"), "region": data.get("region")}
    next_url = url_for("admin.tenants", **search, cursor=page["next_cursor"]) if page["next_cursor"] else None
    first_url = url_for("admin.tenants", **search) if data.get("cursor") else None
    return render_template("admin/tenants.html", rows=rows, query=data, errors={}, next_url=next_url,
                           first_url=first_url), 200


@bp.route("/tenants/<id:tenant_id>")
@requires(*ROLES)
def tenant(tenant_id: int) -> tuple[str, int]:
    return render_tenant(tenant_api.get_or_404(tenant_id))


def render_tenant(tenant: Tenant, posted: Posted | None = None, status: int = 200) -> tuple[str, int]:
    """The tenant page, with a refused form sent back beside its fields when ``posted`` says so."""
    sources = source_api.in_scope(tenant.id)
    checks = source_api.last_checks([source.id for source in sources])
    requests = db.session.scalars(select(OffboardingRequest).where(OffboardingRequest.tenant_id == tenant.id)
                                  .order_by(OffboardingRequest.id.desc())).all()
    all_holds = db.session.scalars(select(LegalHold).where(LegalHold.tenant_id == tenant.id).order_by(
        LegalHold.released_at.is_not(None), LegalHold.placed_at.desc(), LegalHold.id.desc())).all()
    certificates = certificate_api.of_tenant(tenant.id) if may("admin.certificate") else []
    # what GET /api/v1/tenants/<id>/retention answers, from the same function
    retention = retention_api.retention_status(tenant)
    override = retention["override"]
    actors = [actor for hold in all_holds for actor in (hold.placed_by, hold.released_by)]
    actors += [row.issued_by for row in certificates] + [override.set_by if override else None]
    return render_template("admin/tenant.html", tenant=tenant, regime=legal_regime_for(tenant.region),
                           sources=sources, checks=checks, requests=requests, holds=all_holds,
                           certificates=certificates, retention=retention, people=people(actors),
                           posted=posted or Posted(""), kinds=KIND_CHOICES), status


@bp.route("/tenants/<id:tenant_id>/edit", methods=["GET", "POST"])
@requires("admin", "csm")
def edit_tenant(tenant_id: int) -> Response | tuple[str, int]:
    """The account's facts as a form, checked by the API's ``TenantPatch`` and saved as its PATCH saves."""
    tenant = tenant_api.get_or_404(tenant_id)
    if request.method == "GET":
        return _edit_form(tenant, _facts(tenant), {})
    data, errors = forms.load(tenant_api.TenantPatch(), request.form)
    errors.update({name: "Missing data for required field." for name in REQUIRED
                   if not request.form.get(name, "").strip()})
    if errors:
        return _edit_form(tenant, request.form, errors, 400)
    changed = accounts.update(tenant, {**UNSET, **data}, actor=current_principal().actor)
    db.session.commit()
    words = ", ".join(formatting.label(name).lower() for name in changed)
    flash(f"Account saved. Changed: {words}." if changed else "Nothing was changed.", "ok")
    return redirect(url_for("admin.tenant", tenant_id=tenant.id))


def _facts(tenant: Tenant) -> dict[str, str]:
    """The form's values for the account as it is."""
    return {"name": tenant.name, "region": tenant.region, "value_tier": tenant.value_tier,
            "annual_value": "" if tenant.annual_value is None else str(tenant.annual_value),
            "contact_email": tenant.contact_email or "",
            "no_contact": "true" if tenant.no_contact_since else ""}


def _edit_form(tenant: Tenant, values: Any, errors: dict[str, str], status: int = 200) -> tuple[str, int]:
    return render_template("admin/tenant_edit.html", tenant=tenant, values=values, errors=errors,
                           tiers=TIER_CHOICES), status


def people(actors: Iterable[str | None]) -> dict[str, str]:
    """Actor -> how the pages name them (people and API keys by name), as the request timeline does."""
    return formatting.actor_names({actor for actor in actors if actor})


@bp.route("/tenants/<id:tenant_id>/sources/<id:source_id>/check", methods=["POST"])
@requires("admin", "csm")
def check_source(tenant_id: int, source_id: int) -> Response:
    """Run the source's check as ``POST /api/v1/sources/<id>/check`` does, and say what it answered."""
    tenant = tenant_api.get_or_404(tenant_id)
    source = source_api.get_or_404(source_id)
    if source.tenant_id not in (None, tenant.id):
        raise NotFound(f"source {source_id} is not a source of tenant {tenant_id}")
    error = source_api.check(source, actor=current_principal().actor)
    db.session.commit()
    if error is None:
        flash(f"Source {source.name} answered: the check passed.", "ok")
    else:
        flash(f"Source {source.name} failed its check: {error}", "error")
    return redirect(url_for("admin.tenant", tenant_id=tenant.id) + "#sources")
