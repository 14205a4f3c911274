"""Changing a customer account's facts: the one way both ``PATCH /api/v1/tenants/<id>`` and the
admin page's edit form do it, so that both record a change only when a value really changed and
audit it the same way.

Creating an account is ``workflow.register_tenant``; closing and purging it belong to the
workflow and to retention, so they cannot be reached from here.
"""

from __future__ import annotations

from typing import Any

import audit
from compliance import clock
from compliance.models import Tenant

# The facts a person may change; ``no_contact`` is kept as the time it was asked for.
EDITABLE = frozenset({"name", "region", "value_tier", "annual_value", "contact_email"})


def update(tenant: Tenant, changes: dict[str, Any], *, actor: str) -> list[str]:
    """Apply ``changes`` (any of ``EDITABLE`` and ``no_contact``) and audit what differs from
    before as ``tenant.updated``; the names that changed, sorted (none: nothing is recorded)."""
    facts = dict(changes)
    no_contact = facts.pop("no_contact", None)
    unknown = set(facts) - EDITABLE
    if unknown:
        raise ValueError(f"not an editable fact of an account: {', '.join(sorted(unknown))}")
    changed = {name for name, value in facts.items() if getattr(tenant, name) != value}
    for name in changed:
        setattr(tenant, name, facts[name])
    if no_contact is not None and no_contact != (tenant.no_contact_since is not None):
        tenant.no_contact_since = clock.now() if no_contact else None  # since when: kept until withdrawn
        changed.add("no_contact")
    if changed:
        audit.record("tenant.updated", actor=actor, tenant_id=tenant.id, data={"changed": sorted(changed)})
    return sorted(changed)
