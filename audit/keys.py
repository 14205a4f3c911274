"""The audit log's Ed25519 signing keys: checkpoints (signed notes) and deletion certificates.

Where keys live: ``OFFBOARD_AUDIT_SIGNING_KEY`` (base64 of the 32-byte Ed25519 private seed) is
the active key when set; else ``<keys_dir>/audit/<key id>.pem`` files (PKCS#8 PEM, unencrypted,
mode 0600, in a 0700 directory), with ``<keys_dir>/audit/active`` naming the active one. The
first key is generated on first use, under an exclusive lock on ``<keys_dir>/audit/.lock``, so
processes starting together all end up with the same key.

A key id is the first 16 hex characters (64 bits) of SHA-256 of the raw 32-byte public key:
derived from the key, so it is stable, a file can be checked against its name, and, unlike the
4-byte signed-note key hash (which also depends on the key name), ids do not collide in
practice. It is the JWK ``kid``.

Rotation makes a new key active; old keys stay on disk and stay published (``public_keys``,
``jwks``), so everything they signed keeps verifying. The signed-note key name is the log's
origin, given by the caller. Private key material never reaches logs or exception messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import notes
from compliance import config
from compliance.config import ConfigError, Settings

ENV_VAR = "OFFBOARD_AUDIT_SIGNING_KEY"
SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_SUFFIX = ".pem"


class SigningKeyError(ConfigError):
    """An audit signing key cannot be loaded: a damaged or unreadable key file, or a bad env value."""


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private: Ed25519PrivateKey = field(repr=False)
    public: bytes  # raw 32 bytes


def key_id_of(public: bytes) -> str:
    """The public name of a key: the first 16 hex characters of SHA-256 of its raw public key."""
    return hashlib.sha256(public).hexdigest()[:16]


def _signing_key(private: Ed25519PrivateKey) -> SigningKey:
    public = private.public_key().public_bytes_raw()
    return SigningKey(key_id_of(public), private, public)


# --- loading -----------------------------------------------------------------------------------


def _env_key() -> SigningKey | None:
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    try:
        seed = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError(f"{ENV_VAR} is not valid base64") from None
    if len(seed) != SEED_SIZE:
        raise SigningKeyError(f"{ENV_VAR} must be base64 of a {SEED_SIZE}-byte Ed25519 seed, "
                              f"not of {len(seed)} bytes")
    return _signing_key(Ed25519PrivateKey.from_private_bytes(seed))


def _audit_dir(settings: Settings) -> Path:
    return settings.keys_dir / "audit"


def _load_file(path: Path) -> SigningKey:
    """The key in ``path``, checked against the id its name gives; errors name the file only."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SigningKeyError(f"audit signing key file {path} cannot be read: {error.strerror}") from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningKeyError(f"audit signing key file {path} is damaged: not an unencrypted PKCS#8 "
                              "PEM private key") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError(f"audit signing key file {path} does not hold an Ed25519 key")
    key = _signing_key(private)
    if key.key_id != path.name.removesuffix(_SUFFIX):
        raise SigningKeyError(f"audit signing key file {path} is damaged: its key does not match its name")
    return key


def _file_ids(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(path.name.removesuffix(_SUFFIX) for path in directory.glob(f"*{_SUFFIX}")
                  if _KEY_ID.fullmatch(path.name.removesuffix(_SUFFIX)))


def _file_active_id(directory: Path) -> str | None:
    """The id the ``active`` file names (or the only key file when it is missing); None if no key."""
    active = directory / "active"
    try:
        key_id = active.read_text().strip()
    except FileNotFoundError:
        ids = _file_ids(directory)
        if len(ids) > 1:
            raise SigningKeyError(f"{directory} holds several audit signing keys and no 'active' file "
                                  "naming one") from None
        return ids[0] if ids else None
    except OSError as error:
        raise SigningKeyError(f"{active} cannot be read: {error.strerror}") from None
    if not _KEY_ID.fullmatch(key_id):
        raise SigningKeyError(f"{active} does not name a key id (16 lowercase hex characters)")
    if not (directory / f"{key_id}{_SUFFIX}").is_file():
        raise SigningKeyError(f"the active audit signing key {key_id} has no key file in {directory}")
    return key_id


def _file_active(settings: Settings) -> SigningKey | None:
    directory = _audit_dir(settings)
    key_id = _file_active_id(directory)
    return None if key_id is None else _load_file(directory / f"{key_id}{_SUFFIX}")


# --- writing -----------------------------------------------------------------------------------


def _write_atomically(path: Path, content: str) -> None:
    """Write a 0600 file under a temporary name, make it durable, then rename it into place."""
    pending = path.with_name(f".pending-{secrets.token_hex(8)}")
    try:
        config.write_private_file(pending, content)
        config.fsync_path(pending)
        os.replace(pending, path)
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    config.fsync_path(path.parent)


def _create(directory: Path, origin: str) -> SigningKey:
    """A new key file, durable before the ``active`` file names it (called under the lock).

    A key whose signed-note key hash under ``origin`` equals a published key's is skipped:
    a note verifier finds keys by that 4-byte hash.
    """
    taken = {notes.key_hash(origin, key.public) for key in _published_file_keys(directory)}
    env = _env_key()
    if env is not None:
        taken.add(notes.key_hash(origin, env.public))
    while True:
        key = _signing_key(Ed25519PrivateKey.generate())
        if notes.key_hash(origin, key.public) not in taken:
            break
    pem = key.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    _write_atomically(directory / f"{key.key_id}{_SUFFIX}", pem)
    _write_atomically(directory / "active", key.key_id + "\n")
    return key


def _published_file_keys(directory: Path) -> list[SigningKey]:
    return [_load_file(directory / f"{key_id}{_SUFFIX}") for key_id in _file_ids(directory)]


# --- the API -----------------------------------------------------------------------------------


def active_key(settings: Settings | None = None) -> SigningKey:
    """The key new checkpoints and certificates are signed with: the env key, else the active key
    file, else a new key file (created once, however many processes ask at the same time)."""
    settings = settings or config.current()
    key = _env_key() or _file_active(settings)
    if key is not None:
        return key
    with config.locked_private_dir(_audit_dir(settings)) as directory:
        return _file_active(settings) or _create(directory, settings.audit_origin)  # another may have won


def rotate(settings: Settings | None = None) -> SigningKey:
    """Make a new key file active; old keys stay on disk, published, and keep verifying."""
    settings = settings or config.current()
    if _env_key() is not None:
        raise ConfigError(f"the audit signing key comes from {ENV_VAR}: rotate by setting a new value "
                          f"and keeping the old key as a file in {_audit_dir(settings)}")
    with config.locked_private_dir(_audit_dir(settings)) as directory:
        return _create(directory, settings.audit_origin)


def public_keys(settings: Settings | None = None) -> dict[str, bytes]:
    """Key id -> raw public key of every key ever used (key files and the env key), active first.

    Creates nothing: before the first key exists this is empty.
    """
    settings = settings or config.current()
    directory = _audit_dir(settings)
    env = _env_key()
    active_id = env.key_id if env is not None else _file_active_id(directory)
    found = {key.key_id: key.public for key in _published_file_keys(directory)}
    if env is not None:
        found[env.key_id] = env.public
    ordered = sorted(found, key=lambda key_id: (key_id != active_id, key_id))
    return {key_id: found[key_id] for key_id in ordered}


def jwks(settings: Settings | None = None) -> dict:
    """The published keys as a JSON Web Key Set (RFC 7517, OKP keys per RFC 8037), active first."""
    return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": _b64url(public), "kid": key_id,
                      "use": "sig", "alg": "EdDSA"}
                     for key_id, public in public_keys(settings).items()]}


def note_verifiers(origin: str, keys: Mapping[str, bytes]) -> dict[bytes, tuple[str, bytes]]:
    """Signed-note verifiers (key hash -> (name, public key)) for ``notes.verify_note``: every key
    under the log's ``origin`` as key name."""
    verifiers: dict[bytes, tuple[str, bytes]] = {}
    for key_id, public in keys.items():
        hashed = notes.key_hash(origin, public)
        if hashed in verifiers and verifiers[hashed][1] != public:
            raise ValueError(f"audit key {key_id} has the same signed-note key hash {hashed.hex()} as "
                             "another published key; notes cannot tell them apart")
        verifiers[hashed] = (origin, public)
    return verifiers


def public_key_from_jwk(jwk: Mapping) -> tuple[str, bytes]:
    """(key id, raw public key) from an Ed25519 public JWK; ValueError naming what is wrong.

    A ``kid``, when present, must be the key id derived from the key; a private part is refused.
    """
    if not isinstance(jwk, Mapping):
        raise ValueError(f"a JWK must be a JSON object, not {type(jwk).__name__}")
    if jwk.get("kty") != "OKP":
        raise ValueError(f"JWK kty must be 'OKP' for an Ed25519 key, not {jwk.get('kty')!r}")
    if jwk.get("crv") != "Ed25519":
        raise ValueError(f"JWK crv must be 'Ed25519', not {jwk.get('crv')!r}")
    if "d" in jwk:
        raise ValueError("JWK holds a private key ('d'); publish and accept public keys only")
    if jwk.get("use", "sig") != "sig":
        raise ValueError(f"JWK use must be 'sig', not {jwk.get('use')!r}")
    if jwk.get("alg", "EdDSA") not in ("EdDSA", "Ed25519"):
        raise ValueError(f"JWK alg must be 'EdDSA', not {jwk.get('alg')!r}")
    x = jwk.get("x")
    if not isinstance(x, str):
        raise ValueError("JWK x (the public key) is missing or not a string")
    try:
        public = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
    except (binascii.Error, ValueError):
        public = b""
    if not x or _b64url(public) != x:
        raise ValueError("JWK x is not unpadded base64url")
    if len(public) != PUBLIC_KEY_SIZE:
        raise ValueError(f"JWK x must encode a {PUBLIC_KEY_SIZE}-byte Ed25519 public key, "
                         f"not {len(public)} bytes")
    key_id = key_id_of(public)
    kid = jwk.get("kid", key_id)
    if kid != key_id:
        raise ValueError(f"JWK kid {kid!r} is not the id of its key ({key_id})")
    return key_id, public


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
