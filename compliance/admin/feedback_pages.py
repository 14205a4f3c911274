"""Exit feedback pages: the CSV for product teams, "send the survey now" and the win-back flag on a
closed request (the same services and schemas as ``/api/v1/feedback.csv``,
``/api/v1/requests/<id>/survey`` and ``/api/v1/requests/<id>/winback``)."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for

from compliance import db, feedback, winback
from compliance.admin import bp
from compliance.admin.forms import load
from compliance.api.feedback import WinbackIn, csv_response
from compliance.auth import current_principal, requires
from compliance.models import OffboardingRequest


@bp.route("/feedback.csv")
@requires("admin", "csm")
def feedback_csv() -> Response:
    return csv_response()


@bp.route("/requests/<id:request_id>/survey", methods=["POST"])
@requires("admin", "csm")
def send_survey(request_id: int) -> Any:
    _request_or_404(request_id)
    invited = feedback.invite_now(request_id, actor=current_principal().actor)
    db.session.commit()
    flash(f"The exit survey is on its way; its link works until {invited.invitation.expires_at:%-d %B %Y}.",
          "ok")
    return redirect(url_for("admin.request", request_id=request_id))


@bp.route("/requests/<id:request_id>/winback")
@requires("admin", "csm")
def winback_form(request_id: int) -> str:
    return _page(_request_or_404(request_id))[0]


@bp.route("/requests/<id:request_id>/winback", methods=["POST"])
@requires("admin", "csm")
def flag_winback(request_id: int) -> Any:
    offboarding = _request_or_404(request_id)
    data, errors = load(WinbackIn(), request.form)
    if errors:
        return _page(offboarding, errors=errors, values=request.form, code=400)
    reminder = winback.flag(request_id, months=data["months"], note=data["note"],
                            actor=current_principal().actor)
    db.session.commit()
    flash(f"{reminder.owner} will be reminded on {reminder.due_on:%-d %B %Y} to get back in touch.", "ok")
    return redirect(url_for("admin.tenant", tenant_id=offboarding.tenant_id))


def _page(offboarding: OffboardingRequest, errors: dict[str, str] | None = None,
          values: Any = None, code: int = 200) -> tuple[str, int]:
    return render_template("admin/winback.html", offboarding=offboarding,
                           refusal=winback.refusal(offboarding), errors=errors or {}, values=values or {},
                           months=[(count, f"{count} months") for count in winback.MONTHS]), code


def _request_or_404(request_id: int) -> OffboardingRequest:
    return db.session.get(OffboardingRequest, request_id) or abort(404, f"there is no request {request_id}")
