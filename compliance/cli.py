"""The ``offboard`` command. Errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from redis.exceptions import RedisError
from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError

import audit
from compliance import auth, config, db, schema
from compliance.models import ROLES, ApiKey, Tenant

CLI_ACTOR = "cli:" + os.environ.get("USER", "operator")


def _one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (config.ConfigError, ValueError, LookupError) as error:
            raise click.ClickException(str(error)) from error
        except SQLAlchemyError as error:
            raise click.ClickException(f"database error: {error.__class__.__name__}: "
                                       f"{str(error).splitlines()[0]}") from error
        except RedisError as error:
            raise click.ClickException(f"redis error: {error}") from error

    return wrapper


def _database() -> config.Settings:
    settings = config.load()
    db.configure(settings.database_url)
    return settings


@click.group()
def main() -> None:
    """Offboard: customer offboarding with exports, retention and proof."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), envvar="PORT", default=8000, show_default=True,
              help="Also read from $PORT.")
@_one_line_errors
def run(host: str, port: int) -> None:
    """Migrate, seed the demo tenant, and run web server, worker and scheduler."""
    from compliance import launcher

    sys.exit(launcher.run(host, port))


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@_one_line_errors
def worker(burst: bool) -> None:
    """Run one RQ worker on every queue."""
    from compliance.worker import run_worker

    run_worker(burst=burst)


@main.command()
@_one_line_errors
def cron() -> None:
    """Run the RQ cron scheduler with retention.schedule."""
    from compliance.worker import run_cron

    run_cron()


@main.group(name="db")
def db_group() -> None:
    """Database schema."""


@db_group.command()
@_one_line_errors
def upgrade() -> None:
    """Apply every migration not yet applied."""
    settings = config.load()
    schema.upgrade(settings.database_url)
    click.echo("database is at the latest revision")


@main.group()
def users() -> None:
    """Staff users who sign in to the admin pages."""


@users.command(name="create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.password_option(envvar="OFFBOARD_PASSWORD", help="Prompted for when not given.")
@_one_line_errors
def create_user(email: str, name: str, role: str, password: str) -> None:
    _database()
    with db.transaction():
        user = auth.create_user(email=email, name=name, role=role, password=password,
                                actor=CLI_ACTOR)
    click.echo(f"created user {user.id} <{user.email}> with role {role}")


@main.group()
def keys() -> None:
    """API keys, encryption keys and link signing keys."""


@keys.command(name="create")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--name", default="cli", show_default=True)
@_one_line_errors
def create_key(role: str, name: str) -> None:
    """Print a new key once; only its hash is stored."""
    _database()
    with db.transaction():
        key, plain = auth.create_api_key(name=name, role=role, created_by=CLI_ACTOR)
    click.echo(f"created key {key.id} ({role}); it will not be shown again:", err=True)
    click.echo(plain)


@keys.command(name="rotate-master")
@_one_line_errors
def rotate_master() -> None:
    """Make a new master key and re-wrap every tenant data key with it (bundles stay as they are)."""
    settings = _database()
    from exporters import keys as data_keys

    with db.transaction():
        count = data_keys.rotate_master_key(CLI_ACTOR, settings)
    click.echo(f"new master key {data_keys.active_master_key(settings).key_id}; re-wrapped {count} data keys")


@keys.command(name="rewrap")
@_one_line_errors
def rewrap() -> None:
    """Re-wrap every tenant data key with the active master key (after changing OFFBOARD_MASTER_KEY)."""
    settings = _database()
    from exporters import keys as data_keys

    with db.transaction():
        count = data_keys.rewrap_tenant_keys(actor=CLI_ACTOR, settings=settings)
    click.echo(f"re-wrapped {count} data keys with master key {data_keys.active_master_key(settings).key_id}")


@keys.command(name="rotate-link-key")
@_one_line_errors
def rotate_link_key() -> None:
    """Sign new download links with a new key; links signed by older keys keep working."""
    config.use(_database())
    from exporters import links

    with db.transaction():
        key_id = links.rotate_signing_key()
        audit.record("link_key.rotated", actor=CLI_ACTOR, data={"key_id": key_id})
    click.echo(f"new link signing key {key_id}")


@keys.command(name="destroy-tenant")
@click.argument("tenant_id", type=click.IntRange(min=1))
@click.option("--yes", is_flag=True, help="Confirm: every bundle of the tenant becomes unreadable.")
@_one_line_errors
def destroy_tenant(tenant_id: int, yes: bool) -> None:
    """Crypto-shred TENANT_ID: destroy its data keys, so no copy of its bundles can be read again."""
    if not yes:
        raise click.UsageError("destroying keys cannot be undone; add --yes to confirm")
    config.use(_database())
    from exporters import keys as data_keys

    with db.transaction():
        if db.session.get(Tenant, tenant_id) is None:
            raise LookupError(f"tenant {tenant_id} not found")
        count = data_keys.destroy_tenant_keys(tenant_id, actor=CLI_ACTOR)
    click.echo(f"destroyed {count} data keys of tenant {tenant_id}")


@keys.command(name="revoke")
@click.argument("key")
@_one_line_errors
def revoke_key(key: str) -> None:
    """Revoke KEY, given as its id or its prefix."""
    _database()
    with db.transaction():
        conditions = [ApiKey.prefix == key] + ([ApiKey.id == int(key)] if key.isdigit() else [])
        found = db.session.scalar(select(ApiKey).where(or_(*conditions)))
        if found is None:
            raise LookupError(f"no API key with id or prefix {key!r}")
        auth.revoke_api_key(found, actor=CLI_ACTOR)
    click.echo(f"revoked key {found.id} ({found.name})")



@main.group(name="audit")
def audit_group() -> None:
    """The tamper-evident audit log: checkpoints, verification, signing keys."""


@audit_group.command(name="verify")
@_one_line_errors
def verify_log() -> None:
    """Recompute the tree from every stored event and check every signed checkpoint."""
    from audit import verify

    _database()
    with db.transaction():
        report = verify.verify()
    for note in report.notes:
        click.echo(f"note: {note}")
    if not report.ok:
        where = f"first bad index {report.first_bad_index}: " if report.first_bad_index is not None else ""
        raise click.ClickException(f"audit log does NOT verify: {where}{report.problem}")
    click.echo(f"audit log verifies: {report.size} events, {report.checkpoints} checkpoints, "
               f"{report.queued} queued")


@audit_group.command(name="checkpoint")
@click.option("--force", is_flag=True, help="Sign even when the log did not grow.")
@_one_line_errors
def sign_checkpoint(force: bool) -> None:
    """Sequence queued events and sign a checkpoint of the whole log now."""
    from audit import checkpoints

    _database()
    row = checkpoints.checkpoint(force=force)
    if row is None:
        click.echo("the log did not grow since the last checkpoint; nothing signed")
    else:
        click.echo(row.note, nl=False)


@audit_group.command(name="keys")
@_one_line_errors
def audit_keys() -> None:
    """Print the published audit signing keys as JWKS (active key first)."""
    from audit import keys as signing_keys

    click.echo(json.dumps(signing_keys.jwks(config.load()), indent=2))


@audit_group.command(name="rotate-key")
@_one_line_errors
def rotate_audit_key() -> None:
    """Make a new audit signing key active; the old ones stay published and keep verifying."""
    from audit import keys as signing_keys

    settings = _database()
    key = signing_keys.rotate(settings)
    with db.transaction():
        audit.record("audit_key.rotated", actor=CLI_ACTOR, data={"key_id": key.key_id})
    click.echo(f"audit signing key {key.key_id} is now active")


@main.group(name="cert")
def cert_group() -> None:
    """Deletion certificates."""


@cert_group.command(name="verify")
@click.argument("envelope", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="The public key: a JWKS file, a JWK or a PEM Ed25519 public key.")
def verify_certificate(envelope: Path, key_file: Path) -> None:
    """Verify a certificate offline: its signature, its evidence and the checkpoint's signature."""
    from audit import certificates

    try:
        payload = certificates.verify(envelope.read_bytes(), certificates.load_public_keys(key_file))
    except (certificates.CertificateError, ValueError) as error:
        raise click.ClickException(f"certificate does NOT verify: {error}") from error
    click.echo(f"certificate {payload['certificate_id']} verifies: {payload['kind']} deletion for tenant "
               f"{payload['tenant_id']}, status {payload['status']}, signed by {payload['key_id']}")


if __name__ == "__main__":
    main()
