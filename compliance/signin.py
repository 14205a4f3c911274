"""Staff sign-in for the admin pages: argon2 passwords, lockout, sessions kept in the database.

The browser's cookie holds a random token and the database only its SHA-256, so signing out
ends the session even where a copy of the cookie survives. Repeated failures lock the account
for a while. Every sign-in, failure, lockout and sign-out is audited (never the password).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

import audit
from compliance import clock, db
from compliance.models import StaffSession, User

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
IDLE_TIMEOUT = timedelta(hours=2)
ABSOLUTE_TIMEOUT = timedelta(hours=12)
SEEN_RESOLUTION = timedelta(minutes=1)
WRONG = "The email or the password is wrong."
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("an unknown user still costs one argon2 verification")


@dataclass(frozen=True)
class Attempt:
    """The outcome of one sign-in: a session token, or the message the person sees."""

    token: str | None = None
    refusal: str | None = None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def actor(user: User) -> str:
    """How the audit trail names a signed-in person."""
    return f"user:{user.id}"


def attempt(email: str, password: str, *, ip: str | None, user_agent: str | None) -> Attempt:
    """Check a password and open a session; the caller commits whatever the outcome."""
    now = clock.now()
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()).with_for_update())
    if user is None or user.disabled_at is not None:
        _verify(_DUMMY_HASH, password)  # the same cost as a real check: no timing hint of who exists
        audit.record("user.sign_in_failed", actor=audit.SYSTEM,
                     data={"reason": "unknown or disabled user", "ip": ip})
        return Attempt(refusal=WRONG)
    if user.locked_until is not None and user.locked_until > now:
        audit.record("user.sign_in_refused", actor=actor(user), subject=("user", user.id),
                     data={"reason": "locked", "ip": ip})
        return Attempt(refusal=locked_message(user))
    if not _verify(user.password_hash, password):
        return _failed(user, ip)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_sign_ins, user.locked_until, user.last_sign_in_at = 0, None, now
    token = secrets.token_urlsafe(32)
    session = StaffSession(token_hash=_digest(token), user_id=user.id, created_at=now, last_seen_at=now,
                           ip=ip, user_agent=(user_agent or "")[:300] or None)
    db.session.add(session)
    db.session.flush()
    audit.record("user.signed_in", actor=actor(user), subject=("user", user.id),
                 data={"session_id": session.id, "ip": ip})
    return Attempt(token=token)


def locked_message(user: User) -> str:
    until = user.locked_until.strftime("%H:%M UTC") if user.locked_until else "later"
    return (f"Too many failed sign-ins: this account is locked until {until}. "
            "Try again then, or ask an admin to help.")


def current(token: str | None) -> StaffSession | None:
    """The live session for a cookie's token, or None when it ended, idled or aged out."""
    if not token:
        return None
    session = db.session.scalar(select(StaffSession).where(StaffSession.token_hash == _digest(token),
                                                           StaffSession.ended_at.is_(None)))
    now = clock.now()
    if session is None or session.user.disabled_at is not None:
        return None
    if now - session.last_seen_at > IDLE_TIMEOUT or now - session.created_at > ABSOLUTE_TIMEOUT:
        session.ended_at = now
        db.session.commit()
        return None
    if now - session.last_seen_at > SEEN_RESOLUTION:
        session.last_seen_at = now
        db.session.commit()
    return session


def sign_out(session: StaffSession) -> None:
    if session.ended_at is None:
        session.ended_at = clock.now()
        audit.record("user.signed_out", actor=actor(session.user), subject=("user", session.user_id),
                     data={"session_id": session.id})


def end_sessions(user: User) -> int:
    """End every live session of ``user``; how many there were."""
    live = db.session.scalars(select(StaffSession).where(StaffSession.user_id == user.id,
                                                         StaffSession.ended_at.is_(None))).all()
    for session in live:
        session.ended_at = clock.now()
    return len(live)


def _failed(user: User, ip: str | None) -> Attempt:
    user.failed_sign_ins += 1
    audit.record("user.sign_in_failed", actor=actor(user), subject=("user", user.id),
                 data={"reason": "wrong password", "failures": user.failed_sign_ins, "ip": ip})
    if user.failed_sign_ins < MAX_FAILURES:
        return Attempt(refusal=WRONG)
    user.failed_sign_ins, user.locked_until = 0, clock.now() + LOCKOUT
    audit.record("user.locked", actor=audit.SYSTEM, subject=("user", user.id),
                 data={"until": user.locked_until.isoformat(), "after_failures": MAX_FAILURES})
    return Attempt(refusal=locked_message(user))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _digest(token: str) -> bytes:
    # The token carries 256 random bits, so a fast hash is enough (passwords get argon2).
    return hashlib.sha256(token.encode()).digest()
