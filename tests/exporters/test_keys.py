"""Envelope keys: tenant data keys wrapped by master keys, rotation, and crypto-shredding."""

from __future__ import annotations

import base64
import dataclasses
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from compliance import config, db
from compliance.config import ConfigError
from compliance.models import AuditEvent, Tenant, TenantKey
from exporters import keys

ACTOR = "test:keys"
Pair = tuple[int, int]  # two tenant ids


@pytest.fixture(autouse=True)
def no_env_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(keys.ENV_VAR, raising=False)


@pytest.fixture
def key_settings(settings: config.Settings, tmp_path: Path) -> config.Settings:
    """The test settings with a keys directory of this test's own."""
    return dataclasses.replace(settings, keys_dir=tmp_path / "keys")


@pytest.fixture
def tenants(session: None) -> Iterator[Pair]:
    first = Tenant(external_ref="keys-a", name="Keys A", region="eu")
    second = Tenant(external_ref="keys-b", name="Keys B", region="us")
    db.session.add_all([first, second])
    db.session.flush()
    yield first.id, second.id


def events(action: str, tenant_id: int | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.action == action)
    if tenant_id is not None:
        query = query.where(AuditEvent.tenant_id == tenant_id)
    return list(db.session.scalars(query.order_by(AuditEvent.id)))


def row(tenant_id: int, version: int = 1) -> TenantKey:
    return db.session.scalars(select(TenantKey).where(
        TenantKey.tenant_id == tenant_id, TenantKey.version == version)).one()


def test_data_key_is_created_once_and_reused(tenants: Pair, key_settings: config.Settings) -> None:
    tenant, _ = tenants
    version, key = keys.data_key_for(tenant, actor=ACTOR, settings=key_settings)
    again = keys.data_key_for(tenant, actor=ACTOR, settings=key_settings)
    assert version == 1 and len(key) == 32
    assert again == (version, key)
    assert keys.unwrap(tenant, version, key_settings) == key
    stored = row(tenant)
    assert stored.wrapped_key is not None and key not in stored.wrapped_key
    assert stored.master_key_id == keys.active_master_key(key_settings).key_id
    [created] = events("tenant_key.created", tenant)
    assert created.actor == ACTOR
    assert created.data == {"version": 1, "master_key_id": stored.master_key_id}
    assert base64.b64encode(key).decode() not in created.canonical and key.hex() not in created.canonical


def test_tenants_get_different_keys(tenants: Pair, key_settings: config.Settings) -> None:
    first, second = tenants
    assert keys.data_key_for(first, actor=ACTOR, settings=key_settings)[1] != \
        keys.data_key_for(second, actor=ACTOR, settings=key_settings)[1]


def test_wrapped_key_is_bound_to_its_tenant_and_version(tenants: Pair, key_settings: config.Settings) -> None:
    first, second = tenants
    keys.data_key_for(first, actor=ACTOR, settings=key_settings)
    keys.data_key_for(second, actor=ACTOR, settings=key_settings)
    stolen = row(first)
    victim = row(second)
    victim.wrapped_key, victim.master_key_id = stolen.wrapped_key, stolen.master_key_id
    with pytest.raises(keys.KeyIntegrityError) as caught:
        keys.unwrap(second, 1, key_settings)
    assert "altered or moved" in str(caught.value)
    stolen.version = 2  # the same wrapped key presented as another version
    with pytest.raises(keys.KeyIntegrityError):
        keys.unwrap(first, 2, key_settings)


def test_tampered_wrapped_key_does_not_unwrap(tenants: Pair, key_settings: config.Settings) -> None:
    tenant, _ = tenants
    keys.data_key_for(tenant, actor=ACTOR, settings=key_settings)
    stored = row(tenant)
    assert stored.wrapped_key is not None
    stored.wrapped_key = stored.wrapped_key[:-1] + bytes([stored.wrapped_key[-1] ^ 1])
    with pytest.raises(keys.KeyIntegrityError):
        keys.unwrap(tenant, 1, key_settings)


def test_rotation_rewraps_every_live_key(tenants: Pair, key_settings: config.Settings) -> None:
    first, second = tenants
    _, key_a = keys.data_key_for(first, actor=ACTOR, settings=key_settings)
    _, key_b = keys.data_key_for(second, actor=ACTOR, settings=key_settings)
    old_id = keys.active_master_key(key_settings).key_id
    old_wrapped = row(first).wrapped_key

    assert keys.rotate_master_key(ACTOR, key_settings) == 2

    new_id = keys.active_master_key(key_settings).key_id
    assert new_id != old_id
    for tenant in (first, second):
        assert row(tenant).master_key_id == new_id and row(tenant).rewrapped_at is not None
    assert row(first).wrapped_key != old_wrapped
    assert keys.unwrap(first, 1, key_settings) == key_a
    assert keys.unwrap(second, 1, key_settings) == key_b
    master_dir = key_settings.keys_dir / "master"
    assert (master_dir / f"{old_id}.key").is_file()  # kept: backups of the table still name it
    assert (master_dir / "active").read_text().strip() == new_id
    [rotated] = events("master_key.rotated")
    assert rotated.data == {"key_id": new_id, "previous_key_ids": [old_id], "rewrapped": 2}
    for material in (key_a, key_b, keys.master_key(new_id, key_settings).key,
                     keys.master_key(old_id, key_settings).key):
        assert base64.b64encode(material).decode() not in rotated.canonical


def test_rotation_leaves_destroyed_keys_alone(tenants: Pair, key_settings: config.Settings) -> None:
    first, second = tenants
    keys.data_key_for(first, actor=ACTOR, settings=key_settings)
    keys.data_key_for(second, actor=ACTOR, settings=key_settings)
    keys.destroy_tenant_keys(first, actor=ACTOR)
    assert keys.rotate_master_key(ACTOR, key_settings) == 1
    assert row(first).wrapped_key is None and row(first).rewrapped_at is None


def test_env_master_key(tenants: Pair, key_settings: config.Settings,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    tenant, _ = tenants
    material = os.urandom(32)
    monkeypatch.setenv(keys.ENV_VAR, base64.b64encode(material).decode())
    master = keys.active_master_key(key_settings)
    assert master.key_id == keys.key_id_of(material) and len(master.key_id) == 16
    assert base64.b64encode(material).decode() not in repr(master)
    _, key = keys.data_key_for(tenant, actor=ACTOR, settings=key_settings)
    assert row(tenant).master_key_id == master.key_id
    assert keys.unwrap(tenant, 1, key_settings) == key
    assert not (key_settings.keys_dir / "master").exists()  # the env key is never written down
    with pytest.raises(ConfigError, match="OFFBOARD_MASTER_KEY"):
        keys.rotate_master_key(ACTOR, key_settings)
    monkeypatch.delenv(keys.ENV_VAR)
    with pytest.raises(keys.MasterKeyUnavailable):
        keys.unwrap(tenant, 1, key_settings)


def test_env_rotation_rewraps_from_the_retired_key_file(tenants: Pair, key_settings: config.Settings,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    tenant, _ = tenants
    _, key = keys.data_key_for(tenant, actor=ACTOR, settings=key_settings)  # under a generated file key
    new = os.urandom(32)
    monkeypatch.setenv(keys.ENV_VAR, base64.b64encode(new).decode())
    assert keys.rewrap_tenant_keys(actor=ACTOR, settings=key_settings) == 1
    assert row(tenant).master_key_id == keys.key_id_of(new)
    assert keys.unwrap(tenant, 1, key_settings) == key


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_bad_env_master_key_is_refused_without_echoing_it(value: str, key_settings: config.Settings,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(keys.ENV_VAR, value)
    with pytest.raises(ConfigError) as caught:
        keys.active_master_key(key_settings)
    assert value not in str(caught.value)


def test_key_files_are_private(key_settings: config.Settings) -> None:
    master = keys.active_master_key(key_settings)
    master_dir = key_settings.keys_dir / "master"
    assert stat.S_IMODE(master_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(key_settings.keys_dir.stat().st_mode) == 0o700
    key_file = master_dir / f"{master.key_id}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert base64.b64decode(key_file.read_text()) == master.key
    assert keys.active_master_key(key_settings) == master  # generated once, then loaded


def test_damaged_key_file_is_refused(key_settings: config.Settings) -> None:
    master = keys.active_master_key(key_settings)
    key_file = key_settings.keys_dir / "master" / f"{master.key_id}.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(ConfigError, match="damaged"):
        keys.active_master_key(key_settings)


def test_destroy_then_unwrap_raises(tenants: Pair, key_settings: config.Settings) -> None:
    first, second = tenants
    _, key = keys.data_key_for(first, actor=ACTOR, settings=key_settings)
    _, second_key = keys.data_key_for(second, actor=ACTOR, settings=key_settings)

    assert keys.destroy_tenant_keys(first, actor="legal:alice") == 1

    with pytest.raises(keys.KeyDestroyed) as caught:
        keys.unwrap(first, 1, key_settings)
    assert key.hex() not in str(caught.value)
    with pytest.raises(keys.KeyDestroyed):
        keys.unwrap(first, 7, key_settings)  # never existed
    shredded = row(first)
    assert shredded.wrapped_key is None and shredded.destroyed_by == "legal:alice"
    assert shredded.destroyed_at is not None
    [destroyed] = events("tenant_key.destroyed", first)
    assert destroyed.actor == "legal:alice"
    assert destroyed.subject_type == "tenant_key" and destroyed.subject_id == str(shredded.id)
    assert destroyed.data == {"version": 1, "master_key_id": shredded.master_key_id}
    assert keys.unwrap(second, 1, key_settings) == second_key  # other tenants untouched
    assert keys.destroy_tenant_keys(first, actor="legal:alice") == 0


def test_destroyed_key_is_not_reused(tenants: Pair, key_settings: config.Settings) -> None:
    tenant, _ = tenants
    _, old = keys.data_key_for(tenant, actor=ACTOR, settings=key_settings)
    keys.destroy_tenant_keys(tenant, actor=ACTOR)
    version, new = keys.data_key_for(tenant, actor=ACTOR, settings=key_settings)
    assert version == 2 and new != old  # a shredded version keeps its number
    assert keys.destroy_tenant_keys(tenant, actor=ACTOR) == 1
    assert len(events("tenant_key.destroyed", tenant)) == 2


def test_production_without_master_key_refuses(tenants: Pair, key_settings: config.Settings) -> None:
    production = dataclasses.replace(key_settings, env="production")
    with pytest.raises(ConfigError, match="production"):
        keys.data_key_for(tenants[0], actor=ACTOR, settings=production)
    assert not (production.keys_dir / "master").exists()
    assert db.session.scalars(select(TenantKey)).first() is None


def test_production_uses_a_provisioned_key_file(tenants: Pair, key_settings: config.Settings) -> None:
    provisioned = keys.active_master_key(key_settings)  # as an operator would provision it
    production = dataclasses.replace(key_settings, env="production")
    assert keys.active_master_key(production) == provisioned
    _, key = keys.data_key_for(tenants[0], actor=ACTOR, settings=production)
    assert keys.unwrap(tenants[0], 1, production) == key
