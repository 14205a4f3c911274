"""Save attempts: whether the CSM should try to keep the customer, and the record of each try.

The rule the CSM sees, in order: no attempt when the customer asked for no sales conversation,
the churn is structural or a competitor contract is signed; otherwise an attempt only for a
reason an offer can address, and only for an account worth it: premium or above (strategic
included) or a customer for two years or more, counted from the tenant's ``created_at``.
Every record counts towards the limit, an offer or the note that none was made: one per
request, two for a strategic account. An accepted offer withdraws the request.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

import audit
from compliance import clock, db, notify, workflow
from compliance.models import VALUE_TIERS, OffboardingRequest, SaveAttempt

ADDRESSABLE = frozenset({"price", "budget_cuts", "missing_features", "product_fit", "service_quality"})
STRUCTURAL = frozenset({"company_closed", "acquired", "bankrupt"})
LONG_TENURE = timedelta(days=2 * 365)
OUTCOMES = ("accepted", "declined")
STATE = "verified"  # after verification, before approval


def limit(request: OffboardingRequest) -> int:
    return 2 if request.tenant.value_tier == "strategic" else 1


def attempts(request_id: int) -> int:
    return db.session.scalar(select(func.count()).where(SaveAttempt.request_id == request_id)) or 0


def eligibility(request: OffboardingRequest, now: datetime) -> tuple[bool, str]:
    """Whether a save attempt should be offered, and why (the reason is shown to the CSM)."""
    reason, tier = request.churn_reason.replace("_", " "), request.tenant.value_tier
    ruled_out = _ruled_out(request, reason)
    if ruled_out is not None:
        return False, ruled_out
    if VALUE_TIERS.index(tier) >= VALUE_TIERS.index("premium"):
        return True, f"a {tier} account leaving for a reason an offer can address ({reason})"
    if now - request.tenant.created_at >= LONG_TENURE:
        return True, f"a customer of two years or more leaving for a reason an offer can address ({reason})"
    return False, "a standard account of under two years: not worth a save attempt"


def _ruled_out(request: OffboardingRequest, reason: str) -> str | None:
    if request.no_sales_contact:
        return "the customer asked for no sales conversation"
    if request.churn_reason in STRUCTURAL:
        return f"the churn is structural ({reason})"
    if request.competitor_signed:
        return "a contract with a competitor is signed"
    if request.churn_reason not in ADDRESSABLE:
        return f"the reason ({reason}) is not one an offer can address"
    return None


def record(request_id: int, *, actor: str, offered: bool, offer: str | None = None,
           outcome: str | None = None) -> SaveAttempt:
    """Record one attempt (or that none was offered); an accepted offer withdraws the request."""
    if offered and (not offer or outcome not in OUTCOMES):
        raise ValueError("an offered save attempt needs the offer and its outcome (accepted or declined)")
    if not offered and (offer or outcome):
        raise ValueError("a save attempt that was not offered has no offer and no outcome")
    request = workflow.locked(request_id)
    if request.status != STATE:
        raise workflow.WorkflowError(f"a save attempt is recorded once the request is verified and before "
                                     f"it is approved; this one is in state '{request.status}'")
    used, most = attempts(request.id), limit(request)
    if used >= most:
        raise workflow.WorkflowError(f"this request has used its {most} save attempt{'s' * (most > 1)} "
                                     f"({request.tenant.value_tier} account); no further attempt is allowed")
    eligible, why = eligibility(request, clock.now())
    if offered and not eligible:
        raise workflow.WorkflowError(f"no save attempt may be offered: {why}")
    attempt = SaveAttempt(request_id=request.id, offered=offered, offer=offer, outcome=outcome,
                          recorded_by=actor, recorded_at=clock.now())
    db.session.add(attempt)
    db.session.flush()
    audit.record("request.save_attempted", actor=actor, tenant_id=request.tenant_id, request_id=request.id,
                 data={"attempt": used + 1, "of": most, "offered": offered, "offer": offer,
                       "outcome": outcome})
    recipient = workflow.customer_address(request)
    if offered and recipient is not None:
        notify.send("save_invitation", {}, recipient=recipient, actor=actor, tenant_id=request.tenant_id,
                    request_id=request.id)
    if outcome == "accepted":
        workflow.move(request, "withdraw", actor=actor, reason=f"saved: {offer}")
    return attempt
