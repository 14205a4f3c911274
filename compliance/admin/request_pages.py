"""The requests list and the new-request form: the API's filter, schemas and services, as pages."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from compliance import clock, db, workflow
from compliance.admin import bp
from compliance.admin.forms import load
from compliance.api.pagination import paginate
from compliance.api.requests import RequestFilter, RequestIn
from compliance.api.tenants import TenantIn
from compliance.auth import current_principal, requires
from compliance.models import (
    CHANNELS,
    CHURN_REASONS,
    FORMATS,
    LEGAL_REGIMES,
    ROLES,
    VALUE_TIERS,
    OffboardingRequest,
    Tenant,
)
from compliance.request_filters import find_requests

NEW = "new_"  # the new-account fields of the form are new_name, new_region, ...
WORDS = {"api": "API", "in_app": "In the app", "csv": "CSV", "json": "JSON", "parquet": "Parquet",
         "pdf": "PDF report", "gdpr": "GDPR (EU, EEA, UK)", "ccpa": "CCPA (California)", "none": "None"}


def words(name: str) -> str:
    """How a form shows a stored choice: ``switched_to_competitor`` -> ``Switched to competitor``."""
    return WORDS.get(name) or name.replace("_", " ").capitalize()


def choices(names: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(name, words(name)) for name in names]


@bp.route("/requests")
@requires(*ROLES)
def requests() -> str | tuple[str, int]:
    data, errors = load(RequestFilter(), request.args)
    page: dict[str, Any] = {"items": [], "next_cursor": None}
    if not errors:
        limit, cursor = data.pop("limit"), data.pop("cursor", None)
        page = paginate(find_requests(now=clock.now(), **data), OffboardingRequest.id, limit=limit,
                        cursor=cursor)
    kept = {name: value for name, value in request.args.items() if name != "cursor" and value.strip()}
    next_url = url_for("admin.requests", **kept, cursor=page["next_cursor"]) if page["next_cursor"] else None
    first_url = url_for("admin.requests", **kept) if request.args.get("cursor") else None
    html = render_template("admin/requests.html", page=page, values=request.args, errors=errors,
                           filtered=bool(kept), next_url=next_url, first_url=first_url,
                           statuses=choices(workflow.STATES), mine=g.staff.user.email)
    return (html, 400) if errors else html


@bp.route("/requests/new", methods=["GET", "POST"])
@requires("admin", "csm")
def new_request() -> Response | str | tuple[str, int]:
    if request.method == "GET":
        defaults = MultiDict([("owner", g.staff.user.email), ("tenant_id", request.args.get("tenant_id", "")),
                              *(("formats", name) for name in FORMATS)])
        return _form(defaults, {})
    form = request.form
    creating = not form.get("tenant_id", "").strip()
    asked = MultiDict([(name, value) for name, value in form.items(multi=True) if not name.startswith(NEW)])
    asked.setdefault("formats", "")  # no box ticked is an empty choice, not "the default formats"
    data, errors = load(RequestIn(partial=("tenant_id",)) if creating else RequestIn(), asked,
                        lists=("formats",))
    if "formats" in errors:
        errors["formats"] = "Choose at least one format."
    if creating:
        account = MultiDict([(name[len(NEW):], value) for name, value in form.items(multi=True)
                             if name.startswith(NEW)])
        tenant_data, refused = load(TenantIn(), account)
        errors.update({NEW + name: message for name, message in refused.items()})
    elif "tenant_id" not in errors and db.session.get(Tenant, data["tenant_id"]) is None:
        errors["tenant_id"] = "There is no such account: pick one from the list."
    if errors:
        return _form(form, errors, 400)
    actor = current_principal().actor
    try:
        tenant = workflow.register_tenant(actor=actor, **tenant_data) if creating \
            else db.session.get(Tenant, data["tenant_id"])
        data.pop("tenant_id", None)
        opened = workflow.open_request(tenant, actor=actor, **data)
    except workflow.WorkflowError as error:
        db.session.rollback()
        return _form(form, {_field_of(error): _sentence(error)}, 409)
    db.session.commit()
    flash(f"Request #{opened.id} for {tenant.name} is received. Acknowledge it within 24 hours.", "ok")
    return redirect(url_for("admin.request", request_id=opened.id))


def _form(values: MultiDict[str, str], errors: dict[str, str], code: int = 200) -> str | tuple[str, int]:
    rows = db.session.execute(select(Tenant.id, Tenant.name, Tenant.external_ref, Tenant.region)
                              .order_by(Tenant.name, Tenant.id)).all()
    open_requests = {tenant_id: request_id for tenant_id, request_id in db.session.execute(
        select(OffboardingRequest.tenant_id, OffboardingRequest.id)
        .where(OffboardingRequest.status.not_in(workflow.TERMINAL_STATES)))}
    tenants = [(row.id, f"{row.name} · {row.external_ref} · {row.region}"
                + (f" (open request #{open_requests[row.id]})" if row.id in open_requests else ""))
               for row in rows]
    html = render_template(
        "admin/request_new.html", values=values, errors=errors, tenants=tenants,
        channels=choices(CHANNELS), reasons=choices(CHURN_REASONS), formats=choices(FORMATS),
        regimes=choices(LEGAL_REGIMES), tiers=choices(VALUE_TIERS))
    return (html, code) if code != 200 else html


def _field_of(error: workflow.WorkflowError) -> str:
    """The form field a refusal from the workflow belongs beside."""
    if isinstance(error, workflow.TenantExists):
        return NEW + "external_ref"
    if isinstance(error, workflow.OpenRequestExists):
        return "tenant_id"
    return "legal_regime"


def _sentence(error: Exception) -> str:
    if isinstance(error, workflow.OpenRequestExists):
        return (f"This account already has an open request (#{error.request_id}); an account has one open "
                "request at a time." if error.request_id else "This account already has an open request.")
    text = str(error)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
