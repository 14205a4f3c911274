"""First-start data for ``offboard run``: a demo tenant to click through, a bootstrap admin key
and a first admin who can sign in to the admin pages."""

from __future__ import annotations

import secrets

from sqlalchemy import select

import audit
from compliance import db
from compliance.auth import create_api_key, create_user
from compliance.config import Settings
from compliance.models import ApiKey, SourceConfig, Tenant, User
from exporters.sources import registry

DEMO_REF = "demo-001"
BOOTSTRAP_EMAIL = "admin@localhost"


def seed_demo_tenant(settings: Settings) -> Tenant:
    """The demo tenant and its demo source; created once, found afterwards."""
    with db.transaction():
        tenant = db.session.scalar(select(Tenant).where(Tenant.external_ref == DEMO_REF))
        if tenant is None:
            tenant = Tenant(external_ref=DEMO_REF, name="Demo Customer GmbH", region="DE",
                            value_tier="enterprise", contact_email="it@demo-customer.example")
            db.session.add(tenant)
            db.session.flush()
            config = registry.get("demo").validate(
                {"rows": 5000, "state_dir": str(settings.instance_dir / "demo-source")})
            db.session.add(SourceConfig(tenant_id=tenant.id, kind="demo", name="demo-app",
                                        config=config))
            audit.record("tenant.created", actor=audit.SYSTEM, tenant_id=tenant.id,
                         data={"external_ref": DEMO_REF, "region": "DE", "seeded": True})
    return tenant


def bootstrap_admin_key() -> str | None:
    """A first admin key when no live admin key exists; its plain text, or None."""
    with db.transaction():
        live_admin = select(ApiKey.id).where(ApiKey.role == "admin", ApiKey.revoked_at.is_(None))
        if db.session.scalar(live_admin.limit(1)):
            return None
        _key, plain = create_api_key(name="bootstrap", role="admin", created_by=audit.SYSTEM)
    return plain


def bootstrap_admin_user() -> tuple[str, str] | None:
    """A first admin for the admin pages when nobody can sign in yet: (email, password) to show
    once, or None."""
    with db.transaction():
        if db.session.scalar(select(User.id).where(User.disabled_at.is_(None)).limit(1)):
            return None
        if db.session.scalar(select(User.id).where(User.email == BOOTSTRAP_EMAIL)):
            return None  # disabled on purpose: never revived; `offboard users create` makes a new admin
        password = secrets.token_urlsafe(12)
        create_user(email=BOOTSTRAP_EMAIL, name="Bootstrap admin", role="admin", password=password,
                    actor=audit.SYSTEM)
    return BOOTSTRAP_EMAIL, password
