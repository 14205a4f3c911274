"""Bundles at rest and on the way out: sealed with the tenant's data key, opened by range.

A stored bundle is the ZIP encrypted with ``exporters.crypto`` (STREAM, 64 KiB
segments). Its header names the tenant, the data key version and the ZIP's
sha256, so a server can refuse a swapped or altered object before sending a byte.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from compliance import config, queues
from compliance.models import Export
from exporters import crypto, keys
from exporters.storage import Storage, open_storage

INFO_VERSION = 1
VERIFIED_FOR = 7 * 24 * 3600  # seconds a checked object version stays trusted


class BundleGone(Exception):
    """The bundle no longer exists or can no longer be decrypted (deleted, crypto-shredded)."""


class BundleTampered(Exception):
    """The stored object is not the bundle the link was issued for."""


class BundleUnavailable(Exception):
    """The bundle cannot be opened now for an operational reason (e.g. its master key is missing)."""


def seal(plain: Path, sealed: Path, *, tenant_id: int, sha256: str, actor: str) -> None:
    """Encrypt a finished ZIP for storage with the tenant's current data key."""
    version, key = keys.data_key_for(tenant_id, actor=actor)
    info = json.dumps({"v": INFO_VERSION, "tenant_id": tenant_id, "key_version": version,
                       "sha256": sha256}, sort_keys=True).encode()
    with open(plain, "rb") as source, open(sealed, "wb") as target:
        crypto.encrypt_stream(source, target, key, info)


@dataclass(frozen=True)
class OpenBundle:
    storage: Storage
    name: str
    ciphertext_size: int
    key: bytes
    size: int  # of the plaintext ZIP
    sha256: str

    def verify(self) -> None:
        """Decrypt the whole object and check it hashes to the sha256 the link was issued for.

        Costly, so the result is remembered for this version of the object (its storage
        fingerprint): a replaced or rewritten object is checked again before it is served.
        """
        remembered = f"offboard:verified:{self.name}:{self.storage.fingerprint(self.name)}"
        connection = queues.connection()
        if connection.get(remembered) == self.sha256.encode():
            return
        digest = hashlib.sha256()
        try:
            for chunk in self.chunks(0, self.size):
                digest.update(chunk)
        except crypto.DecryptionError as error:
            raise BundleTampered(f"{self.name} fails authentication") from error
        if digest.hexdigest() != self.sha256:
            raise BundleTampered(f"{self.name} does not hash to the link's sha256")
        connection.set(remembered, self.sha256, ex=VERIFIED_FOR)

    def chunks(self, start: int, stop: int) -> Iterator[bytes]:
        """Plaintext bytes [start, stop), reading only the segments that hold them."""
        yield from crypto.decrypt_range(self._read_at, self.ciphertext_size, self.key, start, stop)

    def _read_at(self, offset: int, length: int) -> bytes:
        return self.storage.read_at(self.name, offset, length)


def open_bundle(export: Export, expected_sha256: str) -> OpenBundle:
    """The export's stored bundle, checked against the sha256 its link was issued for."""
    storage = open_storage(config.current().storage)
    name = export.bundle_name
    if name is None or not storage.exists(name):
        raise BundleGone(f"export {export.id} has no stored bundle")

    def read_at(offset: int, length: int) -> bytes:
        return storage.read_at(name, offset, length)

    try:
        info = json.loads(crypto.read_info(read_at))
    except (crypto.DecryptionError, ValueError) as error:
        raise BundleTampered(f"bundle of export {export.id} has an unreadable header") from error
    if info.get("sha256") != expected_sha256 or info.get("tenant_id") != export.request.tenant_id:
        raise BundleTampered(f"bundle of export {export.id} does not match its link")
    try:
        key = keys.unwrap(export.request.tenant_id, int(info["key_version"]))
    except keys.KeyDestroyed as error:
        raise BundleGone(f"the data key of tenant {export.request.tenant_id} was destroyed") from error
    except keys.KeyIntegrityError as error:
        raise BundleTampered(f"the data key of tenant {export.request.tenant_id} fails its check") from error
    except config.ConfigError as error:
        raise BundleUnavailable(str(error)) from error
    size = storage.size(name)
    return OpenBundle(storage, name, size, key, crypto.plaintext_size(read_at, size), expected_sha256)


def filename(export: Export) -> str:
    """What the customer's browser saves the bundle as."""
    ref = re.sub(r"[^A-Za-z0-9._-]+", "_", export.request.tenant.external_ref).strip("._") or "account"
    return f"{ref}-export-{export.id}.zip"
