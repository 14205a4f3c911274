"""Which requests a list shows: one filter for the API's list and the requests page."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, not_, select

from compliance import workflow
from compliance.models import OffboardingRequest, Tenant


def find_requests(*, now: datetime, status: str | None = None, tenant_id: int | None = None,
                  owner: str | None = None, overdue: bool | None = None, region: str | None = None,
                  q: str | None = None) -> Select[tuple[OffboardingRequest]]:
    """Requests matching every filter given (unordered; the caller pages through them).

    ``region`` is the tenant's region; ``q`` is part of the tenant's name or external ref.
    """
    r = OffboardingRequest
    query = select(r)
    if status:
        query = query.where(r.status == status)
    if tenant_id is not None:
        query = query.where(r.tenant_id == tenant_id)
    if owner:
        query = query.where(r.owner == owner)
    if overdue is not None:
        late = workflow.overdue(now)
        query = query.where(late if overdue else not_(late))
    if region or q:
        accounts = select(Tenant.id)
        if region:
            accounts = accounts.where(Tenant.region == region)
        if q:
            accounts = accounts.where(Tenant.name.ilike(contains(q), escape="\\")
                                      | Tenant.external_ref.ilike(contains(q), escape="\\"))
        query = query.where(r.tenant_id.in_(accounts))
    return query


def contains(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its own % and _ taken literally (escape ``\\``)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
