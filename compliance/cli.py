"""The ``offboard`` command. Errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time
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


@main.command()
@click.option("--as-of", "as_of", required=True, metavar="YYYY-MM-DD",
              help="Purge what is due at the start of this day (UTC); a real run refuses a later day.")
@click.option("--tenant", "tenant_id", type=click.IntRange(min=1), help="Only this tenant.")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing.")
@_one_line_errors
def purge(as_of: str, tenant_id: int | None, dry_run: bool) -> None:
    """Run the primary purge of the tenants due as of a day, here and now (no queue)."""
    from retention import purge as purges

    moment = _day(as_of)
    config.use(_database())
    if tenant_id is not None:
        with db.transaction():
            if db.session.get(Tenant, tenant_id) is None:
                raise LookupError(f"tenant {tenant_id} not found")
    row = purges.run("primary", as_of=moment, tenant_id=tenant_id, dry_run=dry_run, actor=CLI_ACTOR,
                     enqueue=False)
    report = row.report or {}
    due, held = report.get("due", []), set(report.get("held", []))
    click.echo(f"{'dry run' if dry_run else 'purge'} {row.id} as of {moment.date().isoformat()}: "
               f"{len(due)} tenant(s) due, {len(held)} held" + ("; nothing was deleted" if dry_run else ""))
    if dry_run:
        for plan in report.get("plans", []):
            _echo_plan(plan, plan["tenant_id"] in held)
        return
    failed = []
    for result in report.get("tenants", []):
        systems = result.get("systems", {})
        done = sum(1 for entry in systems.values() if entry.get("status") == "done")
        certificate = result.get("certificate") or {}
        click.echo(f"tenant {result['tenant_id']}: {result['status']}, {done}/{len(systems)} systems emptied"
                   + (f", certificate {certificate['id']}" if "id" in certificate else ""))
        if result["status"] not in ("purged", "already_purged", "held"):
            failed.append(str(result["tenant_id"]))
    for tenant in sorted(held):
        click.echo(f"tenant {tenant}: held, not purged")
    if failed:
        raise click.ClickException(f"the purge of tenant(s) {', '.join(failed)} did not finish; "
                                   f"see run {row.id}")


def _day(value: str) -> datetime:
    """The start (UTC) of a YYYY-MM-DD day."""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError
        return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
    except ValueError:
        raise ValueError(f"--as-of {value[:40]!r} is not a date (YYYY-MM-DD)") from None


def _echo_plan(plan: dict[str, Any], held: bool) -> None:
    click.echo(f"tenant {plan['tenant_id']} ({plan['external_ref']}), due {plan['due_at']}"
               + (": HELD, would not be purged" if held else ": would be purged"))
    for source in plan["sources"]:
        counts = ", ".join(f"{name} {count}" for name, count in sorted(source.get("counts", {}).items()))
        what = f"cannot count: {source['error']}" if "error" in source else (counts or "no rows")
        click.echo(f"  source {source['source']} ({source['kind']}): {what}")
    click.echo(f"  bundles: {plan['bundles']['count']} ({plan['bundles']['bytes']} bytes); "
               f"staging files: {plan['staging']['files']}; active links: {plan['links']['active']}")
    for hold in plan["holds"]:
        click.echo(f"  hold {hold['hold_id']}: {hold['matter']} (placed {hold['placed_at']})")


@main.group(name="holds")
def holds_group() -> None:
    """Legal holds: while one is active, nothing of the tenant is deleted."""


@holds_group.command(name="place")
@click.argument("tenant_id", type=click.IntRange(min=1))
@click.option("--reason", required=True)
@click.option("--matter", required=True, help="The legal matter (at most 200 characters).")
@_one_line_errors
def place_hold(tenant_id: int, reason: str, matter: str) -> None:
    """Place a hold on TENANT_ID."""
    from retention import holds

    if not reason.strip() or not matter.strip() or len(matter) > 200 or len(reason) > 2000:
        raise ValueError("--reason (at most 2000 characters) and --matter (at most 200) must not be blank")
    _database()
    with db.transaction():
        if db.session.get(Tenant, tenant_id) is None:
            raise LookupError(f"tenant {tenant_id} not found")
        hold = holds.place(tenant_id, reason=reason, matter=matter, actor=CLI_ACTOR)
    click.echo(f"placed hold {hold.id} on tenant {tenant_id} ({matter})")


@holds_group.command(name="release")
@click.argument("hold_id", type=click.IntRange(min=1))
@click.option("--reason", required=True)
@_one_line_errors
def release_hold(hold_id: int, reason: str) -> None:
    """Release HOLD_ID; a released hold stays as it was."""
    from compliance.models import LegalHold
    from retention import holds

    if not reason.strip() or len(reason) > 2000:
        raise ValueError("--reason must not be blank (at most 2000 characters)")
    _database()
    with db.transaction():
        hold = db.session.get(LegalHold, hold_id)
        if hold is None:
            raise LookupError(f"hold {hold_id} not found")
        already = hold.released_at is not None
        holds.release(hold, reason=reason, actor=CLI_ACTOR)
        when, by = hold.released_at, hold.released_by
    if already:
        click.echo(f"hold {hold_id} was already released at {when.isoformat()} by {by}; nothing changed")
    else:
        click.echo(f"released hold {hold_id} of tenant {hold.tenant_id}")


@holds_group.command(name="list")
@click.argument("tenant_id", type=click.IntRange(min=1))
@_one_line_errors
def list_holds(tenant_id: int) -> None:
    """Every hold of TENANT_ID, newest first."""
    from compliance.models import LegalHold

    _database()
    with db.transaction():
        if db.session.get(Tenant, tenant_id) is None:
            raise LookupError(f"tenant {tenant_id} not found")
        rows = db.session.scalars(select(LegalHold).where(LegalHold.tenant_id == tenant_id)
                                  .order_by(LegalHold.placed_at.desc(), LegalHold.id.desc())).all()
        lines = [f"{hold.id}\t{'active' if hold.released_at is None else 'released'}\t"
                 f"{hold.placed_at.isoformat()}\t{hold.placed_by}\t{hold.matter}" for hold in rows]
    click.echo("\n".join(lines) if lines else f"tenant {tenant_id} has no holds")


@main.group(name="backups")
def backups_group() -> None:
    """The backup catalogue and its sweep (snapshot deletion, crypto-shredding)."""


@backups_group.command(name="register")
@click.option("--taken-at", "taken_at", required=True, metavar="ISO-8601",
              help="When the snapshot was taken (UTC unless it names a zone).")
@click.option("--location", required=True, help="A directory path or s3://bucket/prefix.")
@click.option("--object", "object_name", required=True, help="The snapshot's object name or prefix there.")
@click.option("--tenant", "tenant_ids", type=click.IntRange(min=1), multiple=True, required=True,
              help="A tenant the snapshot holds (repeat for each).")
@click.option("--method", type=click.Choice(["delete", "crypto_shred"]), default="delete", show_default=True)
@_one_line_errors
def register_backup(taken_at: str, location: str, object_name: str, tenant_ids: tuple[int, ...],
                    method: str) -> None:
    """Add a snapshot to the catalogue."""
    from retention import backups

    try:
        moment = datetime.fromisoformat(taken_at)
    except ValueError:
        raise ValueError(f"--taken-at {taken_at[:40]!r} is not an ISO 8601 date or time") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    config.use(_database())
    try:
        with db.transaction():
            snapshot = backups.register(taken_at=moment, location=location, object_name=object_name,
                                        tenant_ids=list(tenant_ids), method=method, actor=CLI_ACTOR)
    except backups.InvalidSnapshot as error:
        option = {"object": "--object", "tenant_ids": "--tenant"}.get(error.field, f"--{error.field}")
        raise click.BadParameter(str(error), param_hint=option.replace("_", "-")) from None
    held = ", ".join(map(str, sorted(set(tenant_ids))))
    click.echo(f"registered snapshot {snapshot.id} ({method}) holding tenant(s) {held}, "
               f"expires {backups.expires_at(snapshot).isoformat()}")


@backups_group.command(name="list")
@click.option("--tenant", "tenant_id", type=click.IntRange(min=1), help="Only snapshots holding this tenant.")
@_one_line_errors
def list_backups(tenant_id: int | None) -> None:
    """Every snapshot, newest first: id, taken, method, state, where, tenants."""
    from compliance.models import BackupSnapshot, backup_snapshot_tenants
    from retention import backups

    config.use(_database())
    with db.transaction():
        query = select(BackupSnapshot).order_by(BackupSnapshot.taken_at.desc(), BackupSnapshot.id.desc())
        if tenant_id is not None:
            query = query.join(backup_snapshot_tenants).where(
                backup_snapshot_tenants.c.tenant_id == tenant_id)
        lines = [f"{s.id}\t{s.taken_at.isoformat()}\t{s.method}\t"
                 + (f"purged {s.purged_at.isoformat()}" if s.purged_at else
                    f"expires {backups.expires_at(s).isoformat()}" + (" (error)" if s.purge_error else ""))
                 + f"\t{s.location.rstrip('/')}/{s.object}\t{','.join(str(t.id) for t in s.tenants)}"
                 for s in db.session.scalars(query)]
    click.echo("\n".join(lines) if lines else "no backup snapshots")


@backups_group.command(name="sweep")
@_one_line_errors
def sweep_backups() -> None:
    """Run the backup sweep now, here (no queue): delete expired snapshots, crypto-shred due tenants."""
    from retention import backups

    config.use(_database())
    report = backups.run_backup_sweep(actor=CLI_ACTOR)
    for entry in report["snapshots"]:
        click.echo(f"snapshot {entry['snapshot_id']}: {entry['status']}"
                   + (f" ({entry.get('exception') or entry.get('error')})"
                      if entry.get("exception") or entry.get("error") else ""))
    for entry in report["tenants"]:
        certificate = entry.get("certificate") or {}
        click.echo(f"tenant {entry['tenant_id']}: {entry['status']}"
                   + (f", certificate {certificate['id']}" if "id" in certificate else "")
                   + (f" ({entry.get('exception') or entry.get('error')})"
                      if entry.get("exception") or entry.get("error") else ""))
    failed = [e for e in report["snapshots"] + report["tenants"] if e["status"] == "failed"]
    if failed:
        raise click.ClickException(f"{len(failed)} item(s) failed; see run {report['run_id']}")
    click.echo(f"backup sweep {report['run_id']}: {len(report['snapshots'])} snapshot(s), "
               f"{len(report['tenants'])} tenant(s)")


if __name__ == "__main__":
    main()
