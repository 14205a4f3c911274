"""Signed, expiring download links: issue, check, count, revoke.

A token is ``<key id>.<payload>.<signature>``: HMAC-SHA256 over the link id, the
time it was issued and a random nonce. The database keeps the link row (bundle,
sha256, expiry, quota, count) and the nonce; the token itself exists only in the
issuing answer and in the e-mail that carries it to the customer; signing keys live
in the keys dir with ids, so a rotated key keeps verifying the links it signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import BigInteger, literal, update

import audit
from compliance import clock, config, db, notify
from compliance.config import ensure_private_dir, write_private_file
from compliance.models import DownloadLink, Export

DEFAULT_LIFETIME = timedelta(days=7)
MAX_LIFETIME = timedelta(days=30)
CLOCK_SKEW = timedelta(minutes=1)
PAYLOAD = struct.Struct(">QQ16s")  # link id, issued (unix seconds), nonce
URLSAFE = re.compile(r"[A-Za-z0-9_-]+")


class LinkError(Exception):
    """Why a token opens nothing; ``gone`` (HTTP 410) or not (HTTP 404)."""

    def __init__(self, outcome: str, *, gone: bool, link: DownloadLink | None = None) -> None:
        super().__init__(outcome)
        self.outcome, self.gone, self.link = outcome, gone, link


@dataclass(frozen=True)
class Issued:
    link: DownloadLink
    token: str

    @property
    def url(self) -> str:
        """The customer's link: shown once to the person who issued it, and e-mailed."""
        return f"{config.current().public_url}/d/{self.token}"


def issue(export: Export, *, recipient: str, expires_in: timedelta, max_downloads: int,
          actor: str, replaces: DownloadLink | None = None) -> Issued:
    """A new link to a ready export; the token is returned here (and put in the customer's e-mail)."""
    if export.status != "ready" or export.bundle_sha256 is None:
        raise LinkError(f"export {export.id} is {export.status}, not ready", gone=False)
    if not timedelta(minutes=5) <= expires_in <= MAX_LIFETIME:
        raise ValueError("expires_in must be between 5 minutes and 30 days")
    key_id, key = _active_key()
    now, nonce = clock.now(), secrets.token_bytes(16)
    link = DownloadLink(export_id=export.id, bundle_sha256=export.bundle_sha256, recipient=recipient,
                        signing_key_id=key_id, nonce=nonce.hex(), expires_at=now + expires_in,
                        max_downloads=max_downloads, created_by=actor,
                        replaces_id=replaces.id if replaces else None)
    db.session.add(link)
    db.session.flush()
    payload = PAYLOAD.pack(link.id, int(now.timestamp()), nonce)
    token = f"{key_id}.{_b64(payload)}.{_b64(_sign(key, key_id, payload))}"
    audit.record("link.issued", actor=actor, tenant_id=export.request.tenant_id,
                 request_id=export.request_id, subject=("link", link.id),
                 data={"export_id": export.id, "recipient": recipient,
                       "expires_at": link.expires_at.isoformat(), "max_downloads": max_downloads,
                       "replaces": link.replaces_id})
    return Issued(link, token)


def deliver(export: Export, *, recipient: str, expires_in: timedelta, max_downloads: int, actor: str,
            replaces: DownloadLink | None = None) -> Issued:
    """Issue a link and e-mail it to the recipient (LinkError when the export is not ready)."""
    issued = issue(export, recipient=recipient, expires_in=expires_in, max_downloads=max_downloads,
                   actor=actor, replaces=replaces)
    notify.send("export_ready", {"url": issued.url, "expires_at": issued.link.expires_at,
                                 "max_downloads": max_downloads, "sha256": issued.link.bundle_sha256},
                recipient=recipient, actor=actor, tenant_id=export.request.tenant_id,
                request_id=export.request_id, meta={"link_id": issued.link.id})
    return issued


def reissue(old: DownloadLink, *, actor: str) -> Issued:
    """Revoke a link and deliver a fresh one to the same recipient, with a fresh expiry and quota."""
    revoke(old, actor=actor)
    lifetime = max(old.expires_at - old.created_at, timedelta(minutes=5))
    return deliver(old.export, recipient=old.recipient, expires_in=lifetime, max_downloads=old.max_downloads,
                   actor=actor, replaces=old)


def state(link: DownloadLink) -> str:
    """What the link can still do: active, revoked, expired or used_up."""
    if link.revoked_at is not None:
        return "revoked"
    if link.expires_at <= clock.now():
        return "expired"
    return "used_up" if link.downloads >= link.max_downloads else "active"


def resolve(token: str) -> DownloadLink:
    """The link a token names, if the signature holds and the link may still be used."""
    link = _verified(token)
    now = clock.now()
    if link.revoked_at is not None:
        raise LinkError("revoked", gone=True, link=link)
    if link.expires_at <= now:
        raise LinkError("expired", gone=True, link=link)
    return link


def claim_download(link: DownloadLink, length: int, bundle_size: int, *, counts: bool) -> None:
    """Charge a transfer to the link in one atomic conditional update: a whole download uses
    one of the quota (with N left and any concurrency, exactly N succeed), and every byte
    sent, resumes included, comes out of a budget of the quota's worth of bytes: a resume
    finishes an interrupted download, but ranges cannot fetch the bundle without end."""
    link_row = DownloadLink
    conditions = [link_row.id == link.id, link_row.revoked_at.is_(None), link_row.expires_at > clock.now(),
                  link_row.bytes_served + length
                  <= link_row.max_downloads * literal(max(bundle_size, 1), BigInteger())]  # no int32 overflow
    if counts:
        conditions.append(link_row.downloads < link_row.max_downloads)
    result = db.session.execute(
        update(link_row).where(*conditions)
        .values(downloads=link_row.downloads + (1 if counts else 0),
                bytes_served=link_row.bytes_served + length)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise LinkError("exhausted", gone=True, link=link)


def refund_bytes(link_id: int, unsent: int) -> None:
    """Give back what an interrupted transfer was charged but never sent, so its resume fits."""
    with db.transaction():
        db.session.execute(update(DownloadLink).where(DownloadLink.id == link_id)
                           .values(bytes_served=DownloadLink.bytes_served - unsent)
                           .execution_options(synchronize_session=False))


def downloads_left(link: DownloadLink) -> int:
    return max(0, link.max_downloads - link.downloads)


def revoke(link: DownloadLink, *, actor: str) -> None:
    if link.revoked_at is None:
        link.revoked_at, link.revoked_by = clock.now(), actor
        audit.record("link.revoked", actor=actor, tenant_id=link.export.request.tenant_id,
                     request_id=link.export.request_id, subject=("link", link.id))


def rotate_signing_key() -> str:
    """A new signing key for new links; older keys stay to verify the links they signed."""
    key_id = f"{int(clock.now().timestamp()):010d}{secrets.token_hex(3)}"
    write_private_file(_keys_dir() / f"{key_id}.key", base64.b64encode(os.urandom(32)).decode())
    return key_id


def _verified(token: str) -> DownloadLink:
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 200:
        raise LinkError("malformed", gone=False)
    key_id, payload_text, signature_text = parts
    key = _key(key_id)
    payload, signature = _unb64(payload_text), _unb64(signature_text)
    if key is None or payload is None or signature is None or len(payload) != PAYLOAD.size:
        raise LinkError("unknown", gone=False)
    if not hmac.compare_digest(_sign(key, key_id, payload), signature):
        raise LinkError("bad_signature", gone=False)
    link_id, issued, nonce = PAYLOAD.unpack(payload)
    if datetime.fromtimestamp(issued, tz=clock.now().tzinfo) > clock.now() + CLOCK_SKEW:
        raise LinkError("future_dated", gone=False)
    link = db.session.get(DownloadLink, link_id, populate_existing=True)
    if link is None or not hmac.compare_digest(link.nonce, nonce.hex()) or link.signing_key_id != key_id:
        raise LinkError("unknown", gone=False)
    return link


def _sign(key: bytes, key_id: str, payload: bytes) -> bytes:
    return hmac.new(key, key_id.encode() + b"." + payload, hashlib.sha256).digest()


def _keys_dir() -> Path:
    return ensure_private_dir(config.current().keys_dir / "links")


def _active_key() -> tuple[str, bytes]:
    names = sorted(path.stem for path in _keys_dir().glob("*.key"))
    key_id = names[-1] if names else rotate_signing_key()
    key = _key(key_id)
    assert key is not None
    return key_id, key


def _key(key_id: str) -> bytes | None:
    if not key_id.isalnum():
        return None
    path = _keys_dir() / f"{key_id}.key"
    return base64.b64decode(path.read_text()) if path.is_file() else None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes | None:
    """Strict: one spelling per token, so matching tokens as text (logs, deny-lists) holds."""
    if not URLSAFE.fullmatch(text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    return raw if _b64(raw) == text else None
