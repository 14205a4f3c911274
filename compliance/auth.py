"""Who is calling and what they may do: API keys, staff users, role rules on every route.

Routes are denied unless they declare a rule: ``@requires(role, ...)`` or ``@public``.
The check runs once, before every request, so a view cannot forget it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from flask_smorest import abort
from sqlalchemy import select

import audit
from compliance import clock, db, signin
from compliance.models import ROLES, ApiKey, User

View = TypeVar("View", bound=Callable[..., Any])
KEY_PATTERN = re.compile(r"^ob_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
LAST_USED_RESOLUTION = timedelta(minutes=1)
_DUMMY_HASH = hashlib.sha256(b"no such key").digest()


@dataclass(frozen=True)
class Principal:
    role: str
    actor: str  # how the audit trail names them, e.g. "apikey:3"


def requires(*roles: str) -> Callable[[View], View]:
    """Declare which roles may call a view."""
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"unknown or missing roles: {sorted(unknown) or 'none given'}")

    def mark(view: View) -> View:
        view.roles = frozenset(roles)  # type: ignore[attr-defined]
        return view

    return mark


def public(view: View) -> View:
    """Declare a view open to anyone (health checks, metrics, the API docs)."""
    view.public = True  # type: ignore[attr-defined]
    return view


def public_endpoint(app: Flask, endpoint: str) -> None:
    """Declare a view we did not write (API docs, static files) open to anyone."""
    app.extensions.setdefault("offboard_public", set()).add(endpoint)


def current_principal() -> Principal:
    return g.principal


def session_realm(app: Flask, blueprint: str, authenticate: Callable[[], Principal]) -> None:
    """Views of ``blueprint`` authenticate with a browser session (``authenticate`` answers the
    principal or raises, e.g. a redirect to the sign-in page) instead of an API key."""
    app.extensions.setdefault("offboard_session_realms", {})[blueprint] = authenticate


def may(endpoint: str) -> bool:
    """Whether the current principal passes ``endpoint``'s role rule: pages show a button only
    when its form would be accepted."""
    roles = getattr(current_app.view_functions.get(endpoint), "roles", frozenset())
    principal = g.get("principal")
    return principal is not None and principal.role in roles


def init_app(app: Flask) -> None:
    app.before_request(_authorize)
    public_endpoint(app, "static")


def _authorize() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    opened = current_app.extensions.get("offboard_public", set())
    if view is None or getattr(view, "public", False) or request.endpoint in opened:
        return  # unknown URLs fall through to 404/405
    roles: frozenset[str] | None = getattr(view, "roles", None)
    if roles is None:
        abort(403, message="this route declares no role rule, so nobody may call it")
    realm = current_app.extensions.get("offboard_session_realms", {}).get(request.blueprint)
    g.principal = principal = realm() if realm else _authenticate()
    if principal.role not in roles:
        abort(403, message=f"role '{principal.role}' may not do this; needs one of {sorted(roles)}")


def _authenticate() -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        abort(401, message="an API key is required: Authorization: Bearer <key>",
              headers={"WWW-Authenticate": 'Bearer realm="offboard"'})
    key = verify_api_key(token.strip())
    if key is None:
        abort(401, message="the API key is unknown, malformed or revoked",
              headers={"WWW-Authenticate": 'Bearer realm="offboard", error="invalid_token"'})
    now = clock.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        key.last_used_at = now
        db.session.commit()
    return Principal(role=key.role, actor=f"apikey:{key.id}")


def create_api_key(*, name: str, role: str, created_by: str) -> tuple[ApiKey, str]:
    """A new key and its plain text, which is shown once and never stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    key = ApiKey(name=name, role=role, prefix=prefix, secret_hash=_digest(secret),
                 created_by=created_by)
    db.session.add(key)
    db.session.flush()
    audit.record("apikey.created", actor=created_by, subject=("apikey", key.id),
                 data={"name": name, "role": role, "prefix": prefix})
    return key, f"ob_{prefix}_{secret}"


def revoke_api_key(key: ApiKey, *, actor: str) -> None:
    if key.revoked_at is None:
        key.revoked_at = clock.now()
        audit.record("apikey.revoked", actor=actor, subject=("apikey", key.id),
                     data={"name": key.name, "prefix": key.prefix})


def verify_api_key(token: str) -> ApiKey | None:
    """The live key for ``token``, compared in constant time, or None."""
    match = KEY_PATTERN.match(token)
    prefix, secret = match.groups() if match else ("", token)
    key = db.session.scalar(select(ApiKey).where(ApiKey.prefix == prefix)) if match else None
    expected = key.secret_hash if key is not None else _DUMMY_HASH
    if not hmac.compare_digest(_digest(secret), expected) or key is None:
        return None
    return None if key.revoked_at is not None else key


def create_user(*, email: str, name: str, role: str, password: str, actor: str) -> User:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if len(password) < 12:
        raise ValueError("the password must be at least 12 characters")
    if db.session.scalar(select(User.id).where(User.email == email.lower())) is not None:
        raise ValueError(f"a user with email {email} already exists")
    user = User(email=email.lower(), name=name, role=role,
                password_hash=signin.hash_password(password))
    db.session.add(user)
    db.session.flush()
    audit.record("user.created", actor=actor, subject=("user", user.id),
                 data={"email": user.email, "role": role})
    return user


def find_user(email: str) -> User:
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()).with_for_update())
    if user is None:
        raise LookupError(f"no user has email {email}")
    return user


def unlock_user(email: str, *, actor: str) -> User:
    """Lift a sign-in lockout before it ends by itself."""
    user = find_user(email)
    user.failed_sign_ins, user.locked_until = 0, None
    audit.record("user.unlocked", actor=actor, subject=("user", user.id), data={"email": user.email})
    return user


def set_password(email: str, password: str, *, actor: str) -> User:
    if len(password) < 12:
        raise ValueError("the password must be at least 12 characters")
    user = find_user(email)
    user.password_hash = signin.hash_password(password)
    user.failed_sign_ins, user.locked_until = 0, None
    signin.end_sessions(user)  # whoever knew the old password is signed out
    audit.record("user.password_set", actor=actor, subject=("user", user.id), data={"email": user.email})
    return user


def disable_user(email: str, *, actor: str) -> User:
    """Nobody signs in as this user any more; their sessions end at once."""
    user = find_user(email)
    if user.disabled_at is None:
        user.disabled_at = clock.now()
        signin.end_sessions(user)
        audit.record("user.disabled", actor=actor, subject=("user", user.id), data={"email": user.email})
    return user


def _digest(secret: str) -> bytes:
    # API keys carry 256 random bits, so a fast hash is enough (passwords get argon2).
    return hashlib.sha256(secret.encode()).digest()
