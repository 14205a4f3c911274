"""Offboarding requests: open one, follow it, move it along its allowed transitions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_smorest import Blueprint, abort
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from compliance import clock, db, saves, workflow
from compliance.api.pagination import paginate
from compliance.api.schemas import (
    OptionalReasonIn,
    Page,
    PageArgs,
    ReasonIn,
    Strict,
    WholeNumber,
    one_of,
    text,
)
from compliance.api.tenants import REGION
from compliance.api.tenants import get_or_404 as tenant_or_404
from compliance.api.writes import IDEMPOTENCY_HEADER, idempotent, writes
from compliance.auth import current_principal, requires
from compliance.models import CHANNELS, CHURN_REASONS, FORMATS, LEGAL_REGIMES, OffboardingRequest
from compliance.request_filters import find_requests

blp = Blueprint("requests", __name__, url_prefix="/api/v1/requests",
                description="Offboarding requests and their state machine")
READERS = ("admin", "csm", "legal", "auditor")
CONFLICT = "the request is not in a state that allows this (the message names it)"


class RequestIn(Strict):
    tenant_id = WholeNumber(required=True, validate=validate.Range(min=1, max=2**63 - 1))
    requested_by = text(254, required=True, metadata={"description": "who asked (name or email)"})
    channel = one_of(CHANNELS, required=True)
    churn_reason = one_of(CHURN_REASONS, required=True)
    churn_detail = text(5000)
    formats = fields.List(one_of(FORMATS), load_default=list(FORMATS),
                          validate=validate.Length(min=1, max=len(FORMATS)))
    owner = text(254, metadata={"description": "the CSM responsible"})
    legal_regime = one_of(LEGAL_REGIMES, metadata={"description": "default: from the region"})
    no_sales_contact = fields.Boolean(
        load_default=False, metadata={"description": "the customer asked for no sales conversation"})
    competitor_signed = fields.Boolean(load_default=False,
                                       metadata={"description": "a contract with a competitor is signed"})


class VerifyIn(Strict):
    note = text(2000, required=True, metadata={"description": "the cancellation is intended; why"})
    no_sales_contact = fields.Boolean(metadata={"description": "default: as recorded at creation"})
    competitor_signed = fields.Boolean(metadata={"description": "default: as recorded at creation"})


class CloseIn(Strict):
    final_invoice_ref = text(64, required=True, metadata={"description": "the last invoice's reference"})


class SaveAttemptIn(Strict):
    offered = fields.Boolean(required=True)
    offer = text(2000, metadata={"description": "what was offered; required when offered"})
    outcome = one_of(saves.OUTCOMES, metadata={"description": "required when offered"})

    @validates_schema
    def _offer_and_outcome(self, data: dict[str, Any], **_: Any) -> None:
        for name in ("offer", "outcome"):
            if data.get("offered") and name not in data:
                raise ValidationError("Required when a save was offered.", name)
            if data.get("offered") is False and name in data:
                raise ValidationError("Only when a save was offered.", name)


class PhaseOut(Schema):
    name = fields.String(metadata={"description": "export, knowledge_transfer, access_reduction, "
                                                  "final_billing_and_closure or deactivated"})
    first_day = fields.Integer(metadata={"description": "day 1 is the day the request arrived"})
    last_day = fields.Integer(allow_none=True, metadata={"description": "null: for good"})
    starts = fields.Date()
    ends = fields.Date(allow_none=True)
    current = fields.Boolean()


def _plan(request: OffboardingRequest) -> list[dict[str, Any]]:
    return PhaseOut(many=True).dump(workflow.plan(request.received_at, clock.now().date()))


class SaveAttemptOut(Schema):
    offered = fields.Boolean()
    offer = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)
    recorded_by = fields.String()
    recorded_at = fields.DateTime()


def _save_attempt(request: OffboardingRequest) -> dict[str, Any]:
    eligible, reason = saves.eligibility(request, clock.now())
    return {"eligible": eligible, "reason": reason, "attempts": saves.attempts(request.id),
            "max": saves.limit(request)}


class RequestOut(Schema):
    id = fields.Integer()
    tenant_id = fields.Integer()
    tenant_name = fields.Function(lambda r: r.tenant.name)
    status = fields.String()
    allowed_actions = fields.Function(lambda r: workflow.allowed_actions(r.status))
    requested_by = fields.String()
    owner = fields.String(allow_none=True)
    channel = fields.String()
    churn_reason = fields.String()
    churn_detail = fields.String(allow_none=True)
    formats = fields.List(fields.String())
    legal_regime = fields.String()
    legal_deadline = fields.DateTime(allow_none=True)
    extended_at = fields.DateTime(allow_none=True)
    extension_reason = fields.String(allow_none=True)
    acknowledgement_due = fields.DateTime()
    export_due = fields.DateTime()
    overdue = fields.Function(lambda r: workflow.is_overdue(r, clock.now()))
    processing_due = fields.DateTime(metadata={"description": "received + 14 days (the target is 7)"})
    failure_reason = fields.String(allow_none=True)
    withdrawal_reason = fields.String(allow_none=True)
    no_sales_contact = fields.Boolean()
    competitor_signed = fields.Boolean()
    verified_by = fields.String(allow_none=True)
    verification_note = fields.String(allow_none=True)
    approved_by = fields.String(allow_none=True)
    final_invoice_ref = fields.String(allow_none=True)
    save_attempt = fields.Function(_save_attempt, metadata={
        "description": "the save-attempt rule for this request: {eligible, reason, attempts, max}"})
    save_attempts = fields.List(fields.Nested(SaveAttemptOut))
    received_at = fields.DateTime()
    acknowledged_at = fields.DateTime(allow_none=True)
    verified_at = fields.DateTime(allow_none=True)
    approved_at = fields.DateTime(allow_none=True)
    export_started_at = fields.DateTime(allow_none=True)
    export_ready_at = fields.DateTime(allow_none=True)
    access_reduced_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    feedback_collected_at = fields.DateTime(allow_none=True)
    withdrawn_at = fields.DateTime(allow_none=True)
    failed_at = fields.DateTime(allow_none=True)
    updated_at = fields.DateTime()
    plan = fields.Function(_plan, metadata={"description": "the offboarding plan, dated from received_at"})


class RequestPage(Page):
    items = fields.List(fields.Nested(RequestOut))


class RequestFilter(PageArgs):
    status = one_of(workflow.STATES)
    tenant_id = WholeNumber(validate=validate.Range(min=1, max=2**63 - 1))
    owner = text(254)
    overdue = fields.Boolean(metadata={"description": "only requests past a deadline (or not)"})
    region = fields.String(validate=REGION, metadata={"description": "the tenant's region"})
    q = fields.String(validate=validate.Length(min=1, max=200),
                      metadata={"description": "part of the tenant's name or external ref"})


@blp.route("", methods=["GET"])
@requires(*READERS)
@blp.arguments(RequestFilter, location="query", as_kwargs=True, unknown=RAISE)
@blp.response(200, RequestPage)
def list_requests(limit: int, cursor: str | None = None, **filters: Any) -> dict[str, Any]:
    query = find_requests(now=clock.now(), **filters)
    return paginate(query, OffboardingRequest.id, limit=limit, cursor=cursor)


@blp.route("", methods=["POST"])
@requires("admin", "csm")
@idempotent
@blp.arguments(RequestIn)
@blp.response(201, RequestOut)
@blp.alt_response(404, description="no such tenant")
@blp.alt_response(409, description="the tenant already has an open request")
@blp.doc(parameters=[IDEMPOTENCY_HEADER])
def create_request(data: dict[str, Any]) -> OffboardingRequest:
    tenant = tenant_or_404(data.pop("tenant_id"))
    return workflow.open_request(tenant, actor=current_principal().actor, **data)


@blp.route("/<id:request_id>", methods=["GET"])
@requires(*READERS)
@blp.response(200, RequestOut)
@blp.alt_response(404, description="no such request")
def get_request(request_id: int) -> OffboardingRequest:
    request = db.session.get(OffboardingRequest, request_id)
    if request is None:
        abort(404, message=f"request {request_id} not found")
    return request


def _transition_view(action: str, body: type[Strict], roles: tuple[str, ...]) -> None:
    """Register ``POST /requests/<id>/<action>``: one endpoint per transition."""

    def view(data: dict[str, Any], request_id: int) -> OffboardingRequest:
        principal = current_principal()
        return workflow.apply(request_id, action, actor=principal.actor, reason=data.get("reason"),
                              role=principal.role, invoice_ref=data.get("final_invoice_ref"))

    view.__name__ = action
    view.__doc__ = f"{action.replace('_', ' ').capitalize()} the request."
    decorated: Callable[..., Any] = blp.alt_response(409, description=CONFLICT)(
        blp.alt_response(404, description="no such request")(
            blp.response(200, RequestOut)(blp.arguments(body)(writes(view)))))
    blp.route(f"/<id:request_id>/{action.replace('_', '-')}", methods=["POST"])(requires(*roles)(decorated))


_transition_view("acknowledge", OptionalReasonIn, ("admin", "csm"))
# At or above OFFBOARD_APPROVAL_TIER the approver must not be the verifier, unless an admin.
_transition_view("approve", OptionalReasonIn, ("admin", "csm"))
_transition_view("reduce_access", OptionalReasonIn, ("admin", "csm"))
_transition_view("close", CloseIn, ("admin", "csm"))
_transition_view("collect_feedback", OptionalReasonIn, ("admin", "csm"))
_transition_view("withdraw", ReasonIn, ("admin", "csm"))
_transition_view("fail", ReasonIn, ("admin",))


@blp.route("/<id:request_id>/verify", methods=["POST"])
@requires("admin", "csm")
@blp.arguments(VerifyIn)
@blp.response(200, RequestOut)
@blp.alt_response(404, description="no such request")
@blp.alt_response(409, description=CONFLICT)
@writes
def verify(data: dict[str, Any], request_id: int) -> OffboardingRequest:
    """Verify the request: the cancellation is intended and its reason understood (sends the plan)."""
    return workflow.verify(request_id, actor=current_principal().actor, **data)


@blp.route("/<id:request_id>/save-attempts", methods=["POST"])
@requires("admin", "csm")
@blp.arguments(SaveAttemptIn)
@blp.response(201, RequestOut)
@blp.alt_response(404, description="no such request")
@blp.alt_response(409, description="not verified, the limit is used, or the rule rules an offer out")
@writes
def record_save_attempt(data: dict[str, Any], request_id: int) -> OffboardingRequest:
    """Record a save attempt (one; two for a strategic account); an accepted offer withdraws the request."""
    saves.record(request_id, actor=current_principal().actor, **data)
    request = db.session.get(OffboardingRequest, request_id)
    assert request is not None
    return request


@blp.route("/<id:request_id>/extend-deadline", methods=["POST"])
@requires("admin", "csm", "legal")
@blp.arguments(ReasonIn)
@blp.response(200, RequestOut)
@blp.alt_response(404, description="no such request")
@blp.alt_response(409, description="no deadline, already extended, or already passed")
@writes
def extend_deadline(data: dict[str, Any], request_id: int) -> OffboardingRequest:
    """Use the one extension the law allows (GDPR +2 months, CCPA +45 days)."""
    return workflow.extend_deadline(request_id, actor=current_principal().actor,
                                    reason=data["reason"])
