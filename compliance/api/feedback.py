"""Exit feedback for product teams as CSV, and win-back reminders for account owners."""

from __future__ import annotations

from typing import Any

from flask import Response, stream_with_context
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from compliance import feedback, winback
from compliance.api.schemas import Strict
from compliance.api.writes import writes
from compliance.auth import current_principal, requires
from compliance.models import SurveyInvitation, WinbackReminder

blp = Blueprint("feedback", __name__, url_prefix="/api/v1",
                description="Exit survey answers and win-back reminders")
CSV_NAME = "exit-feedback.csv"


class WinbackIn(Strict):
    months = fields.Integer(required=True, validate=validate.Range(6, 12, error="choose 6 to 12 months"),
                            metadata={"description": "when to get back in touch, 6 to 12 months from now"})
    note = fields.String(load_default=None, validate=validate.Length(max=2000),
                         metadata={"description": "for the owner: what to offer, whom to ask"})


class WinbackOut(Schema):
    id = fields.Integer()
    tenant_id = fields.Integer()
    request_id = fields.Integer()
    owner = fields.String(metadata={"description": "the account owner the reminder is for"})
    months = fields.Integer()
    due_on = fields.Date()
    note = fields.String(allow_none=True)
    created_by = fields.String()
    created_at = fields.DateTime()


class SurveyInvitationOut(Schema):
    id = fields.Integer()
    request_id = fields.Integer()
    expires_at = fields.DateTime(metadata={"description": "the link works until then, for one answer"})
    created_by = fields.String()
    created_at = fields.DateTime()


@blp.route("/feedback.csv", methods=["GET"])
@requires("admin", "csm")
@blp.alt_response(200, description="text/csv: a header row, then one row per answered survey")
def feedback_csv() -> Response:
    """Every exit survey answer, oldest first, streamed; anonymised rows have no free text or ids."""
    return csv_response()


def csv_response() -> Response:
    """The streamed CSV both the API and the admin page answer with."""
    return Response(stream_with_context(feedback.csv_lines()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{CSV_NAME}"',
                             "Cache-Control": "no-store"})


@blp.route("/requests/<id:request_id>/survey", methods=["POST"])
@requires("admin", "csm")
@blp.response(201, SurveyInvitationOut)
@blp.alt_response(404, description="no such request")
@blp.alt_response(409, description="not closed, already invited, purged, no contact wanted, or no address")
@writes
def send_survey(request_id: int) -> SurveyInvitation:
    """Send the exit survey invitation now rather than a day after the closure (the cron job's
    delay). The link goes to the customer only: it is not in this answer."""
    return feedback.invite_now(request_id, actor=current_principal().actor).invitation


@blp.route("/requests/<id:request_id>/winback", methods=["POST"])
@requires("admin", "csm")
@blp.arguments(WinbackIn)
@blp.response(201, WinbackOut)
@blp.alt_response(404, description="no such request")
@blp.alt_response(409, description="not a closed request, no contact wanted, said no to coming back, "
                                   "already flagged, or no owner")
@writes
def flag_winback(data: dict[str, Any], request_id: int) -> WinbackReminder:
    """Flag a departure on good terms for the owner's follow-up in 6 to 12 months; the customer
    is not written to."""
    return winback.flag(request_id, months=data["months"], note=data["note"], actor=current_principal().actor)
