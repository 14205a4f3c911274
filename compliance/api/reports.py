"""Reports: the dashboard's figures as JSON, the very numbers the admin dashboard draws."""

from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from compliance import reports
from compliance.auth import requires
from compliance.models import ROLES

blp = Blueprint("reports", __name__, url_prefix="/api/v1/reports",
                description="Figures about offboarding: states, durations, deadlines, purges, churn")


class DurationsOut(Schema):
    count = fields.Integer(metadata={"description": "requests of the window that reached the step"})
    median_seconds = fields.Integer(attribute="median", allow_none=True,
                                    metadata={"description": "nearest-rank median, null without requests"})
    p90_seconds = fields.Integer(attribute="p90", allow_none=True,
                                 metadata={"description": "nearest-rank 90th percentile"})


class PromiseOut(Schema):
    counted = fields.Integer(metadata={"description": "exports delivered, or due for over 72 hours"})
    in_time = fields.Integer(metadata={"description": "delivered within 72 hours of the request"})
    share = fields.Float(allow_none=True, metadata={"description": "in_time / counted; null when none"})


class PurgeOut(Schema):
    tenant_id = fields.Integer(attribute="tenant.id")
    tenant_name = fields.String(attribute="tenant.name")
    kind = fields.String(metadata={"description": "primary | backups"})
    due_at = fields.DateTime()
    due = fields.Boolean(metadata={"description": "already due: the next sweep purges it unless held"})
    held = fields.Boolean(metadata={"description": "under a legal hold: the purge waits"})


class ChurnOut(Schema):
    months = fields.List(fields.String(), metadata={"description": "YYYY-MM, oldest first"})
    series = fields.Dict(keys=fields.String(), values=fields.List(fields.Integer()),
                         metadata={"description": "requests per month by churn reason"})


class ReasonOut(Schema):
    count = fields.Integer(metadata={"description": "answers naming this reason"})
    revenue = fields.Integer(metadata={"description": "sum of those accounts' annual_value, "
                                                      "whole currency units"})


class FeedbackOut(Schema):
    answered = fields.Integer(metadata={"description": "surveys submitted in the window"})
    reasons = fields.Dict(keys=fields.String(), values=fields.Nested(ReasonOut),
                          metadata={"description": "every survey reason, by count and by revenue"})
    ratings = fields.List(fields.Integer(), metadata={"description": "how many rated 1, 2, ... 10"})
    rating_average = fields.Float(allow_none=True)
    would_return = fields.Dict(keys=fields.String(), values=fields.Integer(),
                               metadata={"description": "answers yes, maybe, no"})
    would_return_share = fields.Float(allow_none=True, metadata={"description": "yes / answered"})
    recommends = fields.List(fields.Integer(), metadata={"description": "how many answered 0, 1, ... 10"})
    recommend_score = fields.Float(allow_none=True,
                                   metadata={"description": "net promoter score: % 9-10 minus % 0-6"})


class WinbackDueOut(Schema):
    id = fields.Integer()
    tenant_id = fields.Integer()
    request_id = fields.Integer()
    owner = fields.String()
    due_on = fields.Date()
    note = fields.String(allow_none=True)
    notified_at = fields.DateTime(allow_none=True,
                                  metadata={"description": "when the owner was e-mailed; null until then"})


class DashboardOut(Schema):
    generated_at = fields.DateTime()
    since = fields.DateTime(metadata={"description": "start of the window the durations cover"})
    open_by_state = fields.Dict(keys=fields.String(), values=fields.Integer())
    overdue = fields.Integer(metadata={"description": "open requests past a deadline: acknowledgement, "
                                                      "export, legal or the 14-day processing limit"})
    to_acknowledgement = fields.Nested(DurationsOut, metadata={"description": "request to acknowledgement"})
    to_export = fields.Nested(DurationsOut, metadata={"description": "request to export delivered"})
    to_closure = fields.Nested(DurationsOut, metadata={"description": "request to closure"})
    export_promise = fields.Nested(PromiseOut)
    purges = fields.List(fields.Nested(PurgeOut),
                         metadata={"description": "due within 30 days (or past due), soonest first"})
    purges_total = fields.Integer(metadata={"description": "all due within 30 days (the list shows 50)"})
    churn = fields.Nested(ChurnOut)
    feedback = fields.Nested(FeedbackOut, metadata={"description": "exit survey answers in the window"})
    winback_due = fields.List(fields.Nested(WinbackDueOut),
                              metadata={"description": "win-back reminders due for their owners"})


@blp.route("/dashboard", methods=["GET"])
@requires(*ROLES)
@blp.response(200, DashboardOut)
def dashboard() -> reports.Dashboard:
    """Open requests by state, time to acknowledgement, to export and to closure, the 72-hour
    promise, overdue requests, purges due within 30 days, churn reasons by month over the last 12,
    the exit survey's answers and the win-back reminders due."""
    return reports.dashboard()
