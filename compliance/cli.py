"""The ``offboard`` command. Errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import sys

import click
from sqlalchemy import or_, select

import audit
from compliance import auth, cli_audit, cli_retention, config, db, schema
from compliance.cli_support import CLI_ACTOR, database, one_line_errors
from compliance.models import ROLES, ApiKey, Tenant, User


@click.group()
def main() -> None:
    """Offboard: customer offboarding with exports, retention and proof."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), envvar="PORT", default=8000, show_default=True,
              help="Also read from $PORT.")
@one_line_errors
def run(host: str, port: int) -> None:
    """Migrate, seed the demo tenant, and run web server, worker and scheduler."""
    from compliance import launcher

    sys.exit(launcher.run(host, port))


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@one_line_errors
def worker(burst: bool) -> None:
    """Run one RQ worker on every queue."""
    from compliance.worker import run_worker

    run_worker(burst=burst)


@main.command()
@one_line_errors
def cron() -> None:
    """Run the RQ cron scheduler with retention.schedule."""
    from compliance.worker import run_cron

    run_cron()


@main.group(name="db")
def db_group() -> None:
    """Database schema."""


@db_group.command()
@one_line_errors
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
@one_line_errors
def create_user(email: str, name: str, role: str, password: str) -> None:
    database()
    with db.transaction():
        user = auth.create_user(email=email, name=name, role=role, password=password,
                                actor=CLI_ACTOR)
    click.echo(f"created user {user.id} <{user.email}> with role {role}")


@users.command(name="list")
@one_line_errors
def list_users() -> None:
    """Everyone who may sign in, and who may not any more."""
    database()
    for user in db.session.scalars(select(User).order_by(User.id)):
        state = ("disabled" if user.disabled_at else
                 f"locked until {user.locked_until:%Y-%m-%d %H:%M} UTC" if user.locked_until else "active")
        seen = f"{user.last_sign_in_at:%Y-%m-%d %H:%M} UTC" if user.last_sign_in_at else "never"
        click.echo(f"{user.id}\t{user.email}\t{user.role}\t{state}\tlast sign-in {seen}")


@users.command(name="unlock")
@click.argument("email")
@one_line_errors
def unlock_user(email: str) -> None:
    """Lift a lockout after too many failed sign-ins."""
    database()
    with db.transaction():
        user = auth.unlock_user(email, actor=CLI_ACTOR)
    click.echo(f"unlocked {user.email}")


@users.command(name="set-password")
@click.argument("email")
@click.password_option(envvar="OFFBOARD_PASSWORD", help="Prompted for when not given.")
@one_line_errors
def set_password(email: str, password: str) -> None:
    """Give a user a new password; their open sessions end."""
    database()
    with db.transaction():
        user = auth.set_password(email, password, actor=CLI_ACTOR)
    click.echo(f"new password set for {user.email}; their sessions were ended")


@users.command(name="disable")
@click.argument("email")
@one_line_errors
def disable_user(email: str) -> None:
    """Stop a user from signing in; their open sessions end at once."""
    database()
    with db.transaction():
        user = auth.disable_user(email, actor=CLI_ACTOR)
    click.echo(f"disabled {user.email}")


@main.group()
def keys() -> None:
    """API keys, encryption keys and link signing keys."""


@keys.command(name="create")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--name", default="cli", show_default=True)
@one_line_errors
def create_key(role: str, name: str) -> None:
    """Print a new key once; only its hash is stored."""
    database()
    with db.transaction():
        key, plain = auth.create_api_key(name=name, role=role, created_by=CLI_ACTOR)
    click.echo(f"created key {key.id} ({role}); it will not be shown again:", err=True)
    click.echo(plain)


@keys.command(name="rotate-master")
@one_line_errors
def rotate_master() -> None:
    """Make a new master key and re-wrap every tenant data key with it (bundles stay as they are)."""
    settings = database()
    from exporters import keys as data_keys

    with db.transaction():
        count = data_keys.rotate_master_key(CLI_ACTOR, settings)
    click.echo(f"new master key {data_keys.active_master_key(settings).key_id}; re-wrapped {count} data keys")


@keys.command(name="rewrap")
@one_line_errors
def rewrap() -> None:
    """Re-wrap every tenant data key with the active master key (after changing OFFBOARD_MASTER_KEY)."""
    settings = database()
    from exporters import keys as data_keys

    with db.transaction():
        count = data_keys.rewrap_tenant_keys(actor=CLI_ACTOR, settings=settings)
    click.echo(f"re-wrapped {count} data keys with master key {data_keys.active_master_key(settings).key_id}")


@keys.command(name="rotate-link-key")
@one_line_errors
def rotate_link_key() -> None:
    """Sign new download links with a new key; links signed by older keys keep working."""
    config.use(database())
    from exporters import links

    with db.transaction():
        key_id = links.rotate_signing_key()
        audit.record("link_key.rotated", actor=CLI_ACTOR, data={"key_id": key_id})
    click.echo(f"new link signing key {key_id}")


@keys.command(name="destroy-tenant")
@click.argument("tenant_id", type=click.IntRange(min=1))
@click.option("--yes", is_flag=True, help="Confirm: every bundle of the tenant becomes unreadable.")
@one_line_errors
def destroy_tenant(tenant_id: int, yes: bool) -> None:
    """Crypto-shred TENANT_ID: destroy its data keys, so no copy of its bundles can be read again."""
    if not yes:
        raise click.UsageError("destroying keys cannot be undone; add --yes to confirm")
    config.use(database())
    from exporters import keys as data_keys

    with db.transaction():
        if db.session.get(Tenant, tenant_id) is None:
            raise LookupError(f"tenant {tenant_id} not found")
        count = data_keys.destroy_tenant_keys(tenant_id, actor=CLI_ACTOR)
    click.echo(f"destroyed {count} data keys of tenant {tenant_id}")


@keys.command(name="revoke")
@click.argument("key")
@one_line_errors
def revoke_key(key: str) -> None:
    """Revoke KEY, given as its id or its prefix."""
    database()
    with db.transaction():
        conditions = [ApiKey.prefix == key] + ([ApiKey.id == int(key)] if key.isdigit() else [])
        found = db.session.scalar(select(ApiKey).where(or_(*conditions)))
        if found is None:
            raise LookupError(f"no API key with id or prefix {key!r}")
        auth.revoke_api_key(found, actor=CLI_ACTOR)
    click.echo(f"revoked key {found.id} ({found.name})")


for command in (cli_audit.audit_group, cli_audit.cert_group, cli_retention.purge, cli_retention.holds_group,
                cli_retention.backups_group):
    main.add_command(command)


if __name__ == "__main__":
    main()
