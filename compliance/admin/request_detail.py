"""One request's page: facts, deadlines, timeline, export progress (live), bundle, links and plan.

Everything shown is read through the services and the API's own schemas; the buttons are the
workflow's allowed transitions for this state, and only those the signed-in role may post.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import abort, jsonify, render_template
from sqlalchemy import select

from compliance import clock, config, db, feedback, saves, winback, workflow
from compliance.admin import bp, formatting
from compliance.admin.formatting import label
from compliance.api.exports import ExportSummaryOut
from compliance.api.links import download_history
from compliance.auth import requires
from compliance.models import ROLES, AuditEvent, DownloadLink, Export, OffboardingRequest
from exporters import links

FINISHED = ("ready", "failed")  # an export in one of these states changes no more on its own
ACTIONS = {
    "request.received": "Request received",
    "request.acknowledged": "Acknowledged",
    "request.verified": "Verified",
    "request.save_attempted": "Save attempt recorded",
    "request.approved": "Approved",
    "request.exporting": "Export started",
    "request.export_ready": "Export ready",
    "request.access_reduced": "Access reduced",
    "request.closed": "Closed",
    "request.feedback_collected": "Feedback collected",
    "feedback.invited": "Exit survey sent",
    "feedback.submitted": "Customer answered the exit survey",
    "winback.flagged": "Flagged for win-back",
    "winback.reminded": "Win-back due: owner e-mailed",
    "request.withdrawn": "Withdrawn",
    "request.failed": "Marked as failed",
    "request.deadline_extended": "Legal deadline extended",
    "request.deadline_missed": "Deadline missed",
    "request.deadline_warning": "Deadline near: owner warned",
    "export.created": "Export queued",
    "export.ready": "Bundle built and sealed",
    "export.failed": "Export failed",
    "export.retried": "Failed parts retried",
    "link.issued": "Download link issued",
    "link.revoked": "Download link revoked",
    "download.page": "Customer opened the download page",
    "download.bundle": "Customer downloaded the bundle",
    "download.head": "Customer's client checked the bundle",
    "message.queued": "Message queued",
    "message.sent": "Message sent",
    "message.failed": "Message could not be sent",
    "alarm.bundle_integrity": "Alarm: the bundle failed its integrity check",
}
DETAILS = ("reason", "recipient", "deadline", "outcome", "error")  # the first one present is shown
PHASES = {
    "export": "Export",
    "knowledge_transfer": "Knowledge transfer",
    "access_reduction": "Access reduction",
    "final_billing_and_closure": "Final billing and closure",
    "deactivated": "Deactivated",
}


@bp.route("/requests/<id:request_id>", endpoint="request")
@requires(*ROLES)
def request_page(request_id: int) -> str:
    return page(request_or_404(request_id))


@bp.route("/requests/<id:request_id>/progress")
@requires(*ROLES)
def request_progress(request_id: int) -> Any:
    """The export's progress as JSON, polled by admin.js while the export runs."""
    offboarding = request_or_404(request_id)
    export = latest_export(offboarding.id)
    return jsonify({
        "request_status": offboarding.status,
        "request_status_label": label(offboarding.status),
        "export": ExportSummaryOut().dump(export) if export is not None else None,
        "finished": export is None or export.status in FINISHED,
    })


def page(offboarding: OffboardingRequest, *, code: int = 200, errors: dict[str, str] | None = None,
         issued: links.Issued | None = None) -> Any:
    """The request's page; also what a refused form or a freshly issued link answers with."""
    export = latest_export(offboarding.id)
    now = clock.now()
    html = render_template(
        "admin/request.html", r=offboarding, now=now, errors=errors or {}, issued=issued,
        actions=workflow.allowed_actions(offboarding.status), save=_save(offboarding, now),
        extendable=workflow.extension_refusal(offboarding, now) is None,
        export=export, progress=ExportSummaryOut().dump(export) if export is not None else None,
        finished=export is None or export.status in FINISHED,
        links=_links(offboarding.id),
        timeline=_timeline(offboarding.id), plan=workflow.plan(offboarding.received_at, now.date()),
        phases=PHASES, survey=_survey(offboarding))
    return (html, code) if code != 200 else html


def _save(offboarding: OffboardingRequest, now: datetime) -> dict[str, Any]:
    eligible, reason = saves.eligibility(offboarding, now)
    return {"eligible": eligible, "reason": reason, "attempts": saves.attempts(offboarding.id),
            "max": saves.limit(offboarding)}


def _survey(offboarding: OffboardingRequest) -> dict[str, Any] | None:
    """The exit survey's state once the request is closed: sent (and answered), or why it will not be."""
    if offboarding.status not in winback.LEFT:
        return None
    return {"invitation": feedback.invitation_of(offboarding.id), "refusal": feedback.refusal(offboarding),
            "delay_hours": config.current().survey_delay_hours}


def request_or_404(request_id: int) -> OffboardingRequest:
    found = db.session.get(OffboardingRequest, request_id)
    if found is None:
        abort(404, f"request {request_id} not found")
    return found


def latest_export(request_id: int) -> Export | None:
    return db.session.scalars(select(Export).where(Export.request_id == request_id)
                              .order_by(Export.id.desc()).limit(1)).first()


def _links(request_id: int) -> list[dict[str, Any]]:
    """The request's links, newest first, each with its state and download history."""
    rows = db.session.scalars(select(DownloadLink).join(Export).where(Export.request_id == request_id)
                              .order_by(DownloadLink.id.desc()))
    shown = []
    for link in rows:
        history = download_history(link.id)
        served = [event for event in history if event.action == "download.bundle"
                  and str(event.data.get("outcome", "")).startswith(("ok", "range "))]
        shown.append({"link": link, "state": links.state(link), "history": history,
                      "last_download": served[-1].occurred_at if served else None})
    return shown


def _timeline(request_id: int) -> list[dict[str, Any]]:
    events = list(db.session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id)
                                     .order_by(AuditEvent.occurred_at, AuditEvent.id)))
    names = formatting.actor_names({event.actor for event in events})
    return [{"at": event.occurred_at, "code": event.action,
             "action": ACTIONS.get(event.action) or label(event.action.replace(".", " ")),
             "actor": names.get(event.actor, event.actor),
             "detail": next((str(event.data[key]) for key in DETAILS if event.data.get(key)), None)}
            for event in events]


