"""The request page's forms: transitions, save attempts, the deadline extension, the export and its links.

Each route has the roles of its API route and calls the same service. A refused form answers
the request's page with the message beside the field; an issued link answers the page with
its URL, shown this once and never put in the session or a redirect.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Response, abort, flash, redirect, request, url_for
from werkzeug.datastructures import MultiDict

from compliance import db, saves, workflow
from compliance.admin import bp
from compliance.admin.forms import load
from compliance.admin.request_detail import page, request_or_404
from compliance.api.links import LinkIn
from compliance.api.requests import CloseIn, SaveAttemptIn, VerifyIn
from compliance.api.schemas import OptionalReasonIn, ReasonIn
from compliance.auth import current_principal, requires
from compliance.models import DownloadLink, Export
from exporters import jobs, links

DAY = 24 * 3600
DONE = {
    "acknowledge": "acknowledged",
    "approve": "approved",
    "reduce_access": "access reduced",
    "collect_feedback": "feedback collected",
    "withdraw": "withdrawn",
    "fail": "marked as failed",
}


def _transition(action: str, roles: tuple[str, ...]) -> None:
    """Register ``POST /admin/requests/<id>/<action>`` as endpoint ``admin.request_<action>``."""
    needs_reason = workflow.TRANSITIONS[action].needs_reason

    def view(request_id: int) -> Any:
        data, errors = _reason(ReasonIn() if needs_reason else OptionalReasonIn(), f"{action}_reason")
        if errors:
            return page(request_or_404(request_id), code=400, errors=errors)
        principal = current_principal()
        workflow.apply(request_id, action, actor=principal.actor, reason=data.get("reason"),
                       role=principal.role)
        db.session.commit()
        flash(f"Request #{request_id} is {DONE[action]}.", "ok")
        return redirect(url_for("admin.request", request_id=request_id))

    view.__name__ = view.__qualname__ = f"request_{action}"
    view.__doc__ = f"{action.capitalize()} the request (as POST /api/v1/requests/<id>/{action})."
    path = f"/requests/<id:request_id>/{action.replace('_', '-')}"
    bp.route(path, methods=["POST"])(requires(*roles)(view))


_transition("acknowledge", ("admin", "csm"))
_transition("approve", ("admin", "csm"))  # the approval rule of compliance.workflow applies
_transition("reduce_access", ("admin", "csm"))
_transition("collect_feedback", ("admin", "csm"))
_transition("withdraw", ("admin", "csm"))
_transition("fail", ("admin",))


@bp.route("/requests/<id:request_id>/verify", methods=["POST"])
@requires("admin", "csm")
def request_verify(request_id: int) -> Any:
    """Verify with a note and the save rule's two facts (as POST /api/v1/requests/<id>/verify)."""
    form = request.form
    data, errors = _renamed(VerifyIn(), {"note": "verify_note"}, MultiDict([
        ("note", form.get("verify_note", "")),
        ("no_sales_contact", str("no_sales_contact" in form)),
        ("competitor_signed", str("competitor_signed" in form))]))
    if errors:
        return page(request_or_404(request_id), code=400, errors=errors)
    workflow.verify(request_id, actor=current_principal().actor, **data)
    return _done(request_id, f"Request #{request_id} is verified; the offboarding plan is on its way "
                             "to the customer.")


@bp.route("/requests/<id:request_id>/close", methods=["POST"])
@requires("admin", "csm")
def request_close(request_id: int) -> Any:
    """Close with the final invoice reference (as POST /api/v1/requests/<id>/close)."""
    data, errors = _renamed(CloseIn(), {"final_invoice_ref": "invoice_ref"},
                            MultiDict([("final_invoice_ref", request.form.get("invoice_ref", ""))]))
    if errors:
        return page(request_or_404(request_id), code=400, errors=errors)
    workflow.apply(request_id, "close", actor=current_principal().actor,
                   invoice_ref=data["final_invoice_ref"])
    return _done(request_id, f"Request #{request_id} is closed; the retention clock has started.")


@bp.route("/requests/<id:request_id>/save-attempts", methods=["POST"])
@requires("admin", "csm")
def request_save_attempt(request_id: int) -> Any:
    """Record a save attempt (as POST /api/v1/requests/<id>/save-attempts)."""
    form = request.form
    fields = MultiDict([("offered", str(form.get("offered") == "yes")), ("offer", form.get("offer", "")),
                        ("outcome", form.get("outcome", ""))])
    data, errors = _renamed(SaveAttemptIn(), {}, fields)
    if errors:
        return page(request_or_404(request_id), code=400, errors=errors)
    attempt = saves.record(request_id, actor=current_principal().actor, **data)
    done = ("the customer accepted: the request is withdrawn" if attempt.outcome == "accepted"
            else "save attempt recorded")
    return _done(request_id, f"Request #{request_id}: {done}.")


def _done(request_id: int, message: str) -> Response:
    """Commit, say what happened, and show the request again (Post/Redirect/Get)."""
    db.session.commit()
    flash(message, "ok")
    return redirect(url_for("admin.request", request_id=request_id))


@bp.route("/requests/<id:request_id>/extend-deadline", methods=["POST"])
@requires("admin", "csm", "legal")
def request_extend(request_id: int) -> Any:
    data, errors = _reason(ReasonIn(), "extend_reason")
    if errors:
        return page(request_or_404(request_id), code=400, errors=errors)
    extended = workflow.extend_deadline(request_id, actor=current_principal().actor, reason=data["reason"])
    db.session.commit()
    flash(f"The legal deadline is now {extended.legal_deadline:%d %b %Y, %H:%M} UTC.", "ok")
    return redirect(url_for("admin.request", request_id=request_id))


@bp.route("/requests/<id:request_id>/export", methods=["POST"])
@requires("admin", "csm")
def request_export(request_id: int) -> Response:
    """Start an export in the request's formats (as POST /api/v1/requests/<id>/exports)."""
    request_or_404(request_id)
    export = jobs.launch(request_id, None, actor=current_principal().actor)
    flash(f"Export #{export.id} started: its progress shows below.", "ok")
    return redirect(url_for("admin.request", request_id=request_id, _anchor="export"))


@bp.route("/exports/<id:export_id>/retry", methods=["POST"])
@requires("admin", "csm")
def export_retry(export_id: int) -> Response:
    """Rerun only the failed parts (as POST /api/v1/exports/<id>/retry)."""
    export = _export_or_404(export_id)
    jobs.rerun_failed(export_id, actor=current_principal().actor)
    flash(f"The failed parts of export #{export_id} are queued again.", "ok")
    return redirect(url_for("admin.request", request_id=export.request_id, _anchor="export"))


@bp.route("/exports/<id:export_id>/links", methods=["POST"])
@requires("admin", "csm")
def link_issue(export_id: int) -> Any:
    export = _export_or_404(export_id)
    data, errors = _link_form(request.form)
    if errors:
        return page(export.request, code=400, errors=errors)
    issued = _delivered(lambda actor: links.deliver(
        export, recipient=data["recipient"], expires_in=timedelta(seconds=data["expires_in"]),
        max_downloads=data["max_downloads"], actor=actor))
    return page(export.request, code=201, issued=issued)


@bp.route("/links/<id:link_id>/revoke", methods=["POST"])
@requires("admin", "csm")
def link_revoke(link_id: int) -> Response:
    link = _link_or_404(link_id)
    links.revoke(link, actor=current_principal().actor)
    db.session.commit()
    flash(f"Link #{link_id} to {link.recipient} is revoked: it opens nothing from now on.", "ok")
    return redirect(url_for("admin.request", request_id=link.export.request_id, _anchor="links"))


@bp.route("/links/<id:link_id>/reissue", methods=["POST"])
@requires("admin", "csm")
def link_reissue(link_id: int) -> Any:
    """Revoke the link and send a fresh one to the same recipient (as the API's reissue)."""
    old = _link_or_404(link_id)
    issued = _delivered(lambda actor: links.reissue(old, actor=actor))
    return page(old.export.request, code=201, issued=issued)


def _delivered(deliver: Callable[[str], links.Issued]) -> links.Issued:
    try:
        issued = deliver(current_principal().actor)
    except links.LinkError as error:
        db.session.rollback()
        abort(409, str(error))
    db.session.commit()
    return issued


def _reason(schema: Any, field: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The posted reason (each form names its box apart, so ids stay unique on the page)."""
    data, errors = load(schema, MultiDict([("reason", request.form.get(field, ""))]))
    if "reason" in errors:
        return data, {field: "Give a reason." if "Missing" in errors["reason"] else errors["reason"]}
    return data, {}


def _renamed(schema: Any, names: dict[str, str], fields: MultiDict[str, str]) -> tuple[
        dict[str, Any], dict[str, str]]:
    """A form through the API's schema; ``names`` maps schema fields to the page's input names."""
    data, errors = load(schema, fields)
    return data, {names.get(field, field): message for field, message in errors.items()}


def _link_form(form: MultiDict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The issue form through the API's LinkIn; the page asks for the lifetime in days."""
    days = form.get("expires_in_days", "").strip()
    fields = MultiDict([(name, form.get(name, "")) for name in ("recipient", "max_downloads")])
    if days.isdigit():
        fields["expires_in"] = str(int(days) * DAY)
    data, errors = load(LinkIn(), fields)
    if "expires_in" in errors or (days and not days.isdigit()):
        errors.pop("expires_in", None)
        errors["expires_in_days"] = "Enter a whole number of days from 1 to 30."
    return data, errors


def _export_or_404(export_id: int) -> Export:
    export = db.session.get(Export, export_id)
    if export is None:
        abort(404, f"export {export_id} not found")
    return export


def _link_or_404(link_id: int) -> DownloadLink:
    link = db.session.get(DownloadLink, link_id)
    if link is None:
        abort(404, f"link {link_id} not found")
    return link
