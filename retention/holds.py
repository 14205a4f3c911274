"""Legal holds: while one is active on a tenant, nothing of the tenant is deleted.

Every deletion asks ``ensure_none`` at the moment it deletes, inside its own transaction,
not only when the sweep picks the tenant: a hold placed a second before still wins. If the
lookup itself fails, the error propagates and nothing is deleted.
"""

from __future__ import annotations

from sqlalchemy import select

import audit
from compliance import clock, db
from compliance.models import LegalHold


class HoldActive(RuntimeError):
    """A deletion was refused because the tenant is under a legal hold."""

    def __init__(self, tenant_id: int, holds: list[LegalHold]) -> None:
        names = "; ".join(f"hold {hold.id} ({hold.matter})" for hold in holds)
        super().__init__(f"tenant {tenant_id} is under legal hold: {names}")
        self.tenant_id, self.hold_ids = tenant_id, [hold.id for hold in holds]


class DuplicateHold(ValueError):
    """The tenant already has an active hold for this matter: one hold per matter keeps releases
    unambiguous."""

    def __init__(self, hold: LegalHold) -> None:
        super().__init__(f"hold {hold.id} for matter {hold.matter!r} is already active "
                         f"on tenant {hold.tenant_id}")
        self.hold = hold


def active(tenant_id: int) -> list[LegalHold]:
    return list(db.session.scalars(select(LegalHold).where(
        LegalHold.tenant_id == tenant_id, LegalHold.released_at.is_(None)).order_by(LegalHold.id)))


def ensure_none(tenant_id: int) -> None:
    """Raise HoldActive if the tenant is under any hold (call it where the deletion happens)."""
    holds = active(tenant_id)
    if holds:
        raise HoldActive(tenant_id, holds)


def place(tenant_id: int, *, reason: str, matter: str, actor: str) -> LegalHold:
    """Place a hold; raise DuplicateHold if one for the same matter is active."""
    same = [hold for hold in active(tenant_id) if hold.matter == matter]
    if same:
        raise DuplicateHold(same[0])
    hold = LegalHold(tenant_id=tenant_id, reason=reason, matter=matter, placed_by=actor,
                     placed_at=clock.now())
    db.session.add(hold)
    db.session.flush()
    audit.record("hold.placed", actor=actor, tenant_id=tenant_id, subject=("legal_hold", hold.id),
                 data={"hold_id": hold.id, "reason": reason, "matter": matter})
    return hold


def release(hold: LegalHold, *, reason: str, actor: str) -> LegalHold:
    """Release a hold once; releasing it again changes nothing."""
    if hold.released_at is None:
        hold.released_at, hold.released_by, hold.release_reason = clock.now(), actor, reason
        audit.record("hold.released", actor=actor, tenant_id=hold.tenant_id, subject=("legal_hold", hold.id),
                     data={"hold_id": hold.id, "reason": reason})
    return hold
