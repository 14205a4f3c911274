"""The audit signing keys: files in a private directory, one key however many processes start
at once, rotation that keeps old keys verifying, the env key, and the JWKS."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import multiprocessing
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import keys, notes
from compliance import config
from compliance.config import ConfigError

PROCESSES = 8
SIGNED_AT = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(keys.ENV_VAR, raising=False)


@pytest.fixture
def key_settings(settings: config.Settings, tmp_path: Path) -> config.Settings:
    """The test settings with a keys directory of this test's own."""
    return dataclasses.replace(settings, keys_dir=tmp_path / "keys")


@pytest.fixture
def current(settings: config.Settings, key_settings: config.Settings) -> Iterator[config.Settings]:
    """``config.current()`` gives this test's settings, and the session's afterwards."""
    config.use(key_settings)
    yield key_settings
    config.use(settings)


def audit_dir(settings: config.Settings) -> Path:
    return settings.keys_dir / "audit"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def seed_b64(private: Ed25519PrivateKey) -> str:
    return base64.b64encode(private.private_bytes_raw()).decode()


def checkpoint_note(key: keys.SigningKey, origin: str, size: int) -> str:
    head = notes.Checkpoint(origin, size, hashlib.sha256(str(size).encode()).digest(), SIGNED_AT)
    return notes.sign_note(notes.checkpoint_text(head), origin, key.private)


# What each spawned process runs. A spawned child cannot always import this test module (pytest's
# importlib mode gives it a name that is not on the child's path), so the child runs this code
# through the builtin ``exec``, which pickles by reference, with its inputs as globals.
RACE_FOR_THE_FIRST_KEY = """
from audit import keys
start.wait(timeout=60)  # all processes ask at the same moment
results.put(keys.active_key(settings).key_id)
"""


# --- files -------------------------------------------------------------------------------------


def test_first_key_is_created_0600_in_a_0700_directory(key_settings: config.Settings) -> None:
    key = keys.active_key(key_settings)
    directory = audit_dir(key_settings)
    path = directory / f"{key.key_id}.pem"
    assert mode(directory) == 0o700 and mode(key_settings.keys_dir) == 0o700
    assert mode(path) == 0o600 and mode(directory / "active") == 0o600
    assert (directory / "active").read_text() == key.key_id + "\n"
    assert {p.name for p in directory.iterdir() if not p.name.startswith(".")} == {
        "active", f"{key.key_id}.pem"}
    assert not [p for p in directory.iterdir() if p.name.startswith(".pending")]  # no leftovers

    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
    assert loaded.public_key().public_bytes_raw() == key.public
    assert key.key_id == hashlib.sha256(key.public).hexdigest()[:16] == keys.key_id_of(key.public)
    assert len(key.public) == 32 and key.private.public_key().public_bytes_raw() == key.public


def test_the_active_key_is_the_same_on_every_call(key_settings: config.Settings) -> None:
    first = keys.active_key(key_settings)
    again = keys.active_key(key_settings)
    assert again.key_id == first.key_id and again.public == first.public
    assert again.private.private_bytes_raw() == first.private.private_bytes_raw()
    assert len(list(audit_dir(key_settings).glob("*.pem"))) == 1


def test_settings_default_to_the_current_ones(current: config.Settings) -> None:
    key = keys.active_key()
    assert (audit_dir(current) / f"{key.key_id}.pem").is_file()
    assert keys.public_keys() == {key.key_id: key.public}
    assert keys.jwks()["keys"][0]["kid"] == key.key_id
    assert keys.rotate().key_id != key.key_id


def test_processes_starting_at_once_share_one_first_key(key_settings: config.Settings) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    inputs = {"settings": key_settings, "start": start, "results": results}
    workers = [context.Process(target=exec, args=(RACE_FOR_THE_FIRST_KEY, inputs))
               for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:  # the results are a few bytes each: the children exit without waiting
        worker.join(timeout=120)
        if worker.is_alive():
            worker.kill()
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    ids = [results.get(timeout=10) for _ in workers]
    assert len(set(ids)) == 1
    directory = audit_dir(key_settings)
    assert [path.stem for path in directory.glob("*.pem")] == ids[:1]
    assert (directory / "active").read_text().strip() == ids[0]
    assert keys.active_key(key_settings).key_id == ids[0]


def test_public_keys_create_nothing(key_settings: config.Settings) -> None:
    assert keys.public_keys(key_settings) == {}
    assert keys.jwks(key_settings) == {"keys": []}
    assert not audit_dir(key_settings).exists()


def test_signing_key_repr_shows_no_private_material(key_settings: config.Settings) -> None:
    key = keys.active_key(key_settings)
    shown = repr(key)
    assert key.key_id in shown and "private" not in shown
    assert base64.b64encode(key.private.private_bytes_raw()).decode() not in shown


# --- rotation ----------------------------------------------------------------------------------


def test_rotation_keeps_old_keys_published_and_verifying(key_settings: config.Settings) -> None:
    origin = key_settings.audit_origin
    old = keys.active_key(key_settings)
    old_note = checkpoint_note(old, origin, 10)

    new = keys.rotate(key_settings)
    assert new.key_id != old.key_id
    assert keys.active_key(key_settings).key_id == new.key_id
    assert (audit_dir(key_settings) / "active").read_text().strip() == new.key_id
    assert mode(audit_dir(key_settings) / f"{new.key_id}.pem") == 0o600

    published = keys.public_keys(key_settings)
    assert published == {new.key_id: new.public, old.key_id: old.public}
    assert list(published) == [new.key_id, old.key_id]  # active first
    assert [jwk["kid"] for jwk in keys.jwks(key_settings)["keys"]] == [new.key_id, old.key_id]

    verifiers = keys.note_verifiers(origin, published)
    new_note = checkpoint_note(new, origin, 20)
    assert notes.parse_checkpoint(notes.verify_note(old_note, verifiers)).size == 10
    assert notes.parse_checkpoint(notes.verify_note(new_note, verifiers)).size == 20

    third = keys.rotate(key_settings)
    assert next(iter(keys.public_keys(key_settings))) == third.key_id
    assert set(keys.public_keys(key_settings)) == {old.key_id, new.key_id, third.key_id}
    assert notes.verify_note(old_note, keys.note_verifiers(origin, keys.public_keys(key_settings)))


def test_note_verifiers_name_every_key_by_its_signed_note_key_hash(key_settings: config.Settings) -> None:
    first, second = keys.active_key(key_settings), keys.rotate(key_settings)
    verifiers = keys.note_verifiers("log.example/a", keys.public_keys(key_settings))
    assert verifiers == {notes.key_hash("log.example/a", first.public): ("log.example/a", first.public),
                         notes.key_hash("log.example/a", second.public): ("log.example/a", second.public)}
    note = checkpoint_note(first, "log.example/a", 3)
    with pytest.raises(notes.NoteError):  # the key name is part of what a note is signed under
        notes.verify_note(note, keys.note_verifiers("log.example/b", keys.public_keys(key_settings)))


def test_rotate_before_any_key_creates_the_first(key_settings: config.Settings) -> None:
    key = keys.rotate(key_settings)
    assert keys.active_key(key_settings).key_id == key.key_id
    assert list(keys.public_keys(key_settings)) == [key.key_id]


# --- the environment key -----------------------------------------------------------------------


def test_env_key_is_active_and_published_with_the_file_keys(
        key_settings: config.Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    file_key = keys.active_key(key_settings)
    private = Ed25519PrivateKey.generate()
    monkeypatch.setenv(keys.ENV_VAR, seed_b64(private))

    key = keys.active_key(key_settings)
    assert key.public == private.public_key().public_bytes_raw()
    assert key.key_id == keys.key_id_of(key.public)
    assert list(keys.public_keys(key_settings)) == [key.key_id, file_key.key_id]
    assert [jwk["kid"] for jwk in keys.jwks(key_settings)["keys"]] == [key.key_id, file_key.key_id]
    assert sorted(p.stem for p in audit_dir(key_settings).glob("*.pem")) == [file_key.key_id]  # not written

    note = checkpoint_note(key, key_settings.audit_origin, 5)
    verifiers = keys.note_verifiers(key_settings.audit_origin, keys.public_keys(key_settings))
    assert notes.verify_note(note, verifiers)
    with pytest.raises(ConfigError, match=keys.ENV_VAR):
        keys.rotate(key_settings)


def test_env_key_alone_creates_no_file(
        key_settings: config.Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(keys.ENV_VAR, seed_b64(Ed25519PrivateKey.generate()))
    key = keys.active_key(key_settings)
    assert keys.public_keys(key_settings) == {key.key_id: key.public}
    assert not audit_dir(key_settings).exists()


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"x" * 31).decode(),
                                   base64.b64encode(b"x" * 64).decode()])
def test_a_bad_env_key_is_named_without_its_value(
        key_settings: config.Settings, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(keys.ENV_VAR, value)
    with pytest.raises(keys.SigningKeyError, match=keys.ENV_VAR) as raised:
        keys.active_key(key_settings)
    assert value not in str(raised.value)
    assert isinstance(raised.value, ConfigError)


# --- JWKS --------------------------------------------------------------------------------------


def test_jwks_round_trips_through_public_key_from_jwk(key_settings: config.Settings) -> None:
    keys.active_key(key_settings)
    keys.rotate(key_settings)
    document = keys.jwks(key_settings)
    for jwk in document["keys"]:
        assert set(jwk) == {"kty", "crv", "x", "kid", "use", "alg"}
        assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("OKP", "Ed25519", "sig", "EdDSA")
        assert "=" not in jwk["x"] and "d" not in jwk
    assert dict(keys.public_key_from_jwk(jwk) for jwk in document["keys"]) == keys.public_keys(key_settings)


def test_a_jwk_without_kid_use_or_alg_is_accepted(key_settings: config.Settings) -> None:
    key = keys.active_key(key_settings)
    x = base64.urlsafe_b64encode(key.public).rstrip(b"=").decode()
    assert keys.public_key_from_jwk({"kty": "OKP", "crv": "Ed25519", "x": x}) == (key.key_id, key.public)


@pytest.mark.parametrize(("change", "problem"), [
    ({"kty": "EC"}, "kty"),
    ({"kty": None}, "kty"),
    ({"crv": "X25519"}, "crv"),
    ({"crv": "Ed448"}, "crv"),
    ({"x": None}, "x"),
    ({"x": 12}, "x"),
    ({"x": ""}, "x"),
    ({"x": "AAAA"}, "32-byte"),
    ({"x": base64.b64encode(b"\xfb" * 32).decode().rstrip("=")}, "base64url"),  # standard, not url
    ({"x": base64.urlsafe_b64encode(bytes(32)).decode()}, "base64url"),  # padded
    ({"kid": "0000000000000000"}, "kid"),
    ({"use": "enc"}, "use"),
    ({"alg": "ES256"}, "alg"),
    ({"d": "AAAA"}, "private"),
])
def test_bad_jwks_are_refused_naming_the_problem(
        key_settings: config.Settings, change: dict, problem: str) -> None:
    jwk = dict(keys.jwks(keys_for_jwk(key_settings))["keys"][0])
    jwk.update(change)
    with pytest.raises(ValueError, match=problem):
        keys.public_key_from_jwk(jwk)


def keys_for_jwk(key_settings: config.Settings) -> config.Settings:
    keys.active_key(key_settings)
    return key_settings


def test_a_jwk_must_be_an_object() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        keys.public_key_from_jwk(["OKP"])  # type: ignore[arg-type]


# --- damaged files -----------------------------------------------------------------------------


def test_a_corrupt_key_file_is_named_without_its_content(key_settings: config.Settings) -> None:
    key = keys.active_key(key_settings)
    path = audit_dir(key_settings) / f"{key.key_id}.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWdhcmJhZ2U=\n-----END PRIVATE KEY-----\n")
    for call in (keys.active_key, keys.public_keys, keys.jwks, keys.rotate):
        with pytest.raises(keys.SigningKeyError, match="damaged") as raised:
            call(key_settings)
        assert str(path) in str(raised.value)
        assert "c2VjcmV0" not in str(raised.value) and raised.value.__cause__ is None


def test_a_key_file_that_does_not_match_its_name_is_refused(key_settings: config.Settings) -> None:
    first = keys.active_key(key_settings)
    second = keys.rotate(key_settings)
    directory = audit_dir(key_settings)
    (directory / f"{second.key_id}.pem").write_bytes((directory / f"{first.key_id}.pem").read_bytes())
    with pytest.raises(keys.SigningKeyError, match="does not match its name") as raised:
        keys.active_key(key_settings)
    assert f"{second.key_id}.pem" in str(raised.value)


def test_a_key_file_of_another_kind_is_refused(key_settings: config.Settings) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = keys.active_key(key_settings)
    path = audit_dir(key_settings) / f"{key.key_id}.pem"
    other = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    with pytest.raises(keys.SigningKeyError, match="Ed25519") as raised:
        keys.active_key(key_settings)
    assert str(path) in str(raised.value)


def test_an_encrypted_key_file_is_refused(key_settings: config.Settings) -> None:
    key = keys.active_key(key_settings)
    path = audit_dir(key_settings) / f"{key.key_id}.pem"
    path.write_bytes(key.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.BestAvailableEncryption(b"pass phrase")))
    with pytest.raises(keys.SigningKeyError, match="unencrypted") as raised:
        keys.active_key(key_settings)
    assert str(path) in str(raised.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_key_file_is_named(key_settings: config.Settings) -> None:
    key = keys.active_key(key_settings)
    path = audit_dir(key_settings) / f"{key.key_id}.pem"
    path.chmod(0)
    try:
        with pytest.raises(keys.SigningKeyError, match="cannot be read") as raised:
            keys.active_key(key_settings)
    finally:
        path.chmod(0o600)
    assert str(path) in str(raised.value)


def test_an_active_file_naming_a_missing_or_bad_key_is_refused(key_settings: config.Settings) -> None:
    keys.active_key(key_settings)
    active = audit_dir(key_settings) / "active"
    active.write_text("0123456789abcdef\n")
    with pytest.raises(keys.SigningKeyError, match="0123456789abcdef"):
        keys.active_key(key_settings)
    active.write_text("../../etc/passwd\n")
    with pytest.raises(keys.SigningKeyError, match="does not name a key id"):
        keys.active_key(key_settings)


def test_without_an_active_file_one_key_is_used_and_several_are_refused(
        key_settings: config.Settings) -> None:
    first = keys.active_key(key_settings)
    active = audit_dir(key_settings) / "active"
    active.unlink()
    assert keys.active_key(key_settings).key_id == first.key_id
    assert not active.exists()  # nothing was created: the one key is the active one
    keys.rotate(key_settings)
    active.unlink()
    with pytest.raises(keys.SigningKeyError, match="several"):
        keys.active_key(key_settings)
