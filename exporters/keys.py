"""Envelope encryption: master keys wrap per-tenant data keys; destroying a data key shreds the data.

Why envelopes: bundles are encrypted once under their tenant's data key, so rotating the
master key re-wraps 61 bytes per tenant key instead of re-encrypting every bundle, and
crypto-shredding a tenant is erasing its wrapped keys (backups of the ``tenant_keys``
table still hold them until those backups expire, so master keys must outlive them only
as long as the backup policy requires).

Master keys: ``OFFBOARD_MASTER_KEY`` (base64 of 32 bytes) is the active key when set; else
``<keys_dir>/master/<key_id>.key`` files, with ``<keys_dir>/master/active`` naming the
active one. A key id is the first 16 hex chars of the key's sha256, so a file is checked
against its name. Old keys stay on disk to unwrap what they wrapped. Outside production a
key is generated on first use; production refuses to run without one.

Wrapped form: format byte 0x01 | nonce (12 B) | AES-256-GCM(data key) + tag, under the master
key named by the row's ``master_key_id``, with associated data binding tenant id, version
and master key id, so a wrapped key copied to another tenant or version does not unwrap.
Key material never reaches logs, audit data or exception messages. Callers own the
transaction: these functions add to ``db.session`` and never commit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

import audit
from compliance import clock, config, db
from compliance.config import ConfigError, Settings
from compliance.models import TenantKey

ENV_VAR = "OFFBOARD_MASTER_KEY"
KEY_SIZE = 32
_FORMAT = b"\x01"
_NONCE_SIZE = 12
_WRAPPED_SIZE = 1 + _NONCE_SIZE + KEY_SIZE + 16
_AD_LABEL = b"offboard tenant key v1\x00"
_KEY_ID = re.compile(r"[0-9a-f]{16}")


class KeyDestroyed(LookupError):
    """The tenant key was crypto-shredded or never existed: what it encrypted is gone for good."""


class KeyIntegrityError(Exception):
    """A wrapped key did not unwrap: the row was altered, or moved to another tenant or version."""


class MasterKeyUnavailable(ConfigError):
    """The master key a tenant key is wrapped with cannot be loaded in this process."""


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    key: bytes = field(repr=False)


def key_id_of(key: bytes) -> str:
    """The public name of a master key: derived from it, so a key file can be checked."""
    return hashlib.sha256(key).hexdigest()[:16]


# --- master keys -------------------------------------------------------------------------------


def _env_key() -> MasterKey | None:
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{ENV_VAR} is not valid base64") from None
    if len(key) != KEY_SIZE:
        raise ConfigError(f"{ENV_VAR} must be base64 of {KEY_SIZE} bytes, not of {len(key)}")
    return MasterKey(key_id_of(key), key)


def _master_dir(settings: Settings) -> Path:
    return settings.keys_dir / "master"


def _load_file(directory: Path, key_id: str) -> MasterKey | None:
    path = directory / f"{key_id}.key"
    if not _KEY_ID.fullmatch(key_id) or not path.is_file():
        return None
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if key_id_of(key) != key_id or len(key) != KEY_SIZE:
        raise ConfigError(f"master key file {path} is damaged: its content does not match its name")
    return MasterKey(key_id, key)


def _file_active(settings: Settings) -> MasterKey | None:
    directory = _master_dir(settings)
    active = directory / "active"
    if active.is_file():
        key_id = active.read_text().strip()
    else:
        ids = sorted(path.stem for path in directory.glob("*.key"))
        if not ids:
            return None
        if len(ids) > 1:
            raise ConfigError(f"{directory} holds several master keys and no 'active' file naming one")
        key_id = ids[0]
    key = _load_file(directory, key_id)
    if key is None:
        raise ConfigError(f"the active master key {key_id!r} has no key file in {directory}")
    return key



def _create(directory: Path) -> MasterKey:
    """A new key file, made durable before anything is wrapped with it, then named active."""
    key = os.urandom(KEY_SIZE)
    master = MasterKey(key_id_of(key), key)
    config.write_private_file(directory / f"{master.key_id}.key", base64.b64encode(key).decode() + "\n")
    config.fsync_path(directory / f"{master.key_id}.key")
    pending = directory / f".active-{secrets.token_hex(4)}"
    config.write_private_file(pending, master.key_id + "\n")
    config.fsync_path(pending)
    os.replace(pending, directory / "active")
    config.fsync_path(directory)
    return master


def active_master_key(settings: Settings | None = None) -> MasterKey:
    """The key new wraps use: the env key, else the active key file, else (not in production) a new one."""
    settings = settings or config.current()
    master = _env_key() or _file_active(settings)
    if master is not None:
        return master
    if settings.env == "production":
        raise ConfigError(f"no master key: set {ENV_VAR} or provision {_master_dir(settings)}; "
                          "production never generates one")
    with config.locked_private_dir(_master_dir(settings)) as directory:
        return _file_active(settings) or _create(directory)  # another worker may have won the lock


def master_key(key_id: str, settings: Settings | None = None) -> MasterKey:
    """Any master key by id, active or retired, to unwrap what it wrapped."""
    settings = settings or config.current()
    env = _env_key()
    master = env if env is not None and env.key_id == key_id else _load_file(_master_dir(settings), key_id)
    if master is None:
        raise MasterKeyUnavailable(f"master key {key_id!r} is neither {ENV_VAR} nor a file in "
                                   f"{_master_dir(settings)}")
    return master


def rotate_master_key(actor: str, settings: Settings | None = None) -> int:
    """Make a new file master key active and re-wrap every live tenant key with it; returns how many.

    The key file is written at once (not transactional); old keys stay on disk, so a rolled
    back transaction leaves rows under old keys that still unwrap. Bundles are not touched.
    """
    settings = settings or config.current()
    if _env_key() is not None:
        raise ConfigError(f"the master key comes from {ENV_VAR}: set a new value, keep the old key as "
                          "a key file, then run `offboard keys rewrap`")
    with config.locked_private_dir(_master_dir(settings)) as directory:
        _create(directory)
    return rewrap_tenant_keys(actor=actor, settings=settings)


def rewrap_tenant_keys(*, actor: str, settings: Settings | None = None) -> int:
    """Re-wrap every live tenant key not yet under the active master key; audited once."""
    settings = settings or config.current()
    active = active_master_key(settings)
    rows = db.session.scalars(
        select(TenantKey).where(TenantKey.wrapped_key.is_not(None),
                                TenantKey.master_key_id.is_distinct_from(active.key_id))
        .order_by(TenantKey.id)).all()
    previous = sorted({row.master_key_id or "" for row in rows})
    now = clock.now()
    for row in rows:
        data_key = _unwrap_row(row, settings)
        row.wrapped_key = _wrap(active, row.tenant_id, row.version, data_key)
        row.master_key_id, row.rewrapped_at = active.key_id, now
    audit.record("master_key.rotated", actor=actor, subject=("master_key", active.key_id),
                 data={"key_id": active.key_id, "previous_key_ids": previous, "rewrapped": len(rows)})
    return len(rows)


# --- tenant data keys --------------------------------------------------------------------------


def _associated_data(tenant_id: int, version: int, master_key_id: str) -> bytes:
    return _AD_LABEL + struct.pack(">QI", tenant_id, version) + master_key_id.encode()


def _wrap(master: MasterKey, tenant_id: int, version: int, data_key: bytes) -> bytes:
    nonce = os.urandom(_NONCE_SIZE)
    sealed = AESGCM(master.key).encrypt(nonce, data_key, _associated_data(tenant_id, version, master.key_id))
    return _FORMAT + nonce + sealed


def _unwrap_row(row: TenantKey, settings: Settings) -> bytes:
    if row.wrapped_key is None or row.destroyed_at is not None or row.master_key_id is None:
        raise KeyDestroyed(f"tenant {row.tenant_id} key version {row.version} was destroyed")
    master = master_key(row.master_key_id, settings)
    blob = bytes(row.wrapped_key)
    try:
        if len(blob) != _WRAPPED_SIZE or blob[:1] != _FORMAT:
            raise InvalidTag
        return AESGCM(master.key).decrypt(blob[1:1 + _NONCE_SIZE], blob[1 + _NONCE_SIZE:],
                                          _associated_data(row.tenant_id, row.version, master.key_id))
    except InvalidTag:
        raise KeyIntegrityError(f"tenant {row.tenant_id} key version {row.version} does not unwrap under "
                                f"master key {master.key_id}: altered or moved") from None


def _latest_live(tenant_id: int) -> TenantKey | None:
    return db.session.scalars(
        select(TenantKey).where(TenantKey.tenant_id == tenant_id, TenantKey.wrapped_key.is_not(None))
        .order_by(TenantKey.version.desc()).limit(1)).first()


def data_key_for(tenant_id: int, *, actor: str, settings: Settings | None = None) -> tuple[int, bytes]:
    """The tenant's current (version, data key), creating and auditing version 1 (or the next) if none."""
    settings = settings or config.current()
    row = _latest_live(tenant_id)
    if row is not None:
        return row.version, _unwrap_row(row, settings)
    master = active_master_key(settings)
    latest = db.session.scalar(select(func.max(TenantKey.version)).where(TenantKey.tenant_id == tenant_id))
    version = (latest or 0) + 1  # destroyed versions keep their numbers
    data_key = os.urandom(KEY_SIZE)
    row = TenantKey(tenant_id=tenant_id, version=version, master_key_id=master.key_id,
                    wrapped_key=_wrap(master, tenant_id, version, data_key))
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:  # another worker created this version first: use theirs
        winner = _latest_live(tenant_id)
        if winner is None:
            raise
        return winner.version, _unwrap_row(winner, settings)
    audit.record("tenant_key.created", actor=actor, tenant_id=tenant_id, subject=("tenant_key", row.id),
                 data={"version": version, "master_key_id": master.key_id})
    return version, data_key


def unwrap(tenant_id: int, version: int, settings: Settings | None = None) -> bytes:
    """The data key a bundle names; KeyDestroyed once the tenant was crypto-shredded."""
    row = db.session.scalars(
        select(TenantKey).where(TenantKey.tenant_id == tenant_id, TenantKey.version == version)).first()
    if row is None:
        raise KeyDestroyed(f"tenant {tenant_id} has no key version {version}")
    return _unwrap_row(row, settings or config.current())


def destroy_tenant_keys(tenant_id: int, *, actor: str) -> int:
    """Crypto-shred: erase every wrapped key of the tenant, one audit event each; returns how many."""
    rows = db.session.scalars(
        select(TenantKey).where(TenantKey.tenant_id == tenant_id, TenantKey.wrapped_key.is_not(None))
        .order_by(TenantKey.version)).all()
    now = clock.now()
    for row in rows:
        row.wrapped_key, row.destroyed_at, row.destroyed_by = None, now, actor
        audit.record("tenant_key.destroyed", actor=actor, tenant_id=tenant_id, subject=("tenant_key", row.id),
                     data={"version": row.version, "master_key_id": row.master_key_id})
    db.session.flush()
    return len(rows)
