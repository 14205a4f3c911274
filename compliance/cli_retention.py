"""``offboard purge``, ``offboard holds`` and ``offboard backups``: retention from the command line."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any

import click
from sqlalchemy import select

from compliance import config, db
from compliance.cli_support import CLI_ACTOR, database, one_line_errors
from compliance.models import Tenant


@click.command()
@click.option("--as-of", "as_of", required=True, metavar="YYYY-MM-DD",
              help="Purge what is due at the start of this day (UTC); a real run refuses a later day.")
@click.option("--tenant", "tenant_id", type=click.IntRange(min=1), help="Only this tenant.")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing.")
@one_line_errors
def purge(as_of: str, tenant_id: int | None, dry_run: bool) -> None:
    """Run the primary purge of the tenants due as of a day, here and now (no queue).

    The backup purge, dry or real, is `offboard backups sweep`."""
    from retention import purge as purges

    moment = _day(as_of)
    config.use(database())
    if tenant_id is not None:
        with db.transaction():
            if db.session.get(Tenant, tenant_id) is None:
                raise LookupError(f"tenant {tenant_id} not found")
    row = purges.run(as_of=moment, tenant_id=tenant_id, dry_run=dry_run, actor=CLI_ACTOR,
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


@click.group(name="holds")
def holds_group() -> None:
    """Legal holds: while one is active, nothing of the tenant is deleted."""


@holds_group.command(name="place")
@click.argument("tenant_id", type=click.IntRange(min=1))
@click.option("--reason", required=True)
@click.option("--matter", required=True, help="The legal matter (at most 200 characters).")
@one_line_errors
def place_hold(tenant_id: int, reason: str, matter: str) -> None:
    """Place a hold on TENANT_ID."""
    from retention import holds

    if not reason.strip() or not matter.strip() or len(matter) > 200 or len(reason) > 2000:
        raise ValueError("--reason (at most 2000 characters) and --matter (at most 200) must not be blank")
    database()
    with db.transaction():
        if db.session.get(Tenant, tenant_id) is None:
            raise LookupError(f"tenant {tenant_id} not found")
        hold = holds.place(tenant_id, reason=reason, matter=matter, actor=CLI_ACTOR)
    click.echo(f"placed hold {hold.id} on tenant {tenant_id} ({matter})")


@holds_group.command(name="release")
@click.argument("hold_id", type=click.IntRange(min=1))
@click.option("--reason", required=True)
@one_line_errors
def release_hold(hold_id: int, reason: str) -> None:
    """Release HOLD_ID; a released hold stays as it was."""
    from compliance.models import LegalHold
    from retention import holds

    if not reason.strip() or len(reason) > 2000:
        raise ValueError("--reason must not be blank (at most 2000 characters)")
    database()
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
@one_line_errors
def list_holds(tenant_id: int) -> None:
    """Every hold of TENANT_ID, newest first."""
    from compliance.models import LegalHold

    database()
    with db.transaction():
        if db.session.get(Tenant, tenant_id) is None:
            raise LookupError(f"tenant {tenant_id} not found")
        rows = db.session.scalars(select(LegalHold).where(LegalHold.tenant_id == tenant_id)
                                  .order_by(LegalHold.placed_at.desc(), LegalHold.id.desc())).all()
        lines = [f"{hold.id}\t{'active' if hold.released_at is None else 'released'}\t"
                 f"{hold.placed_at.isoformat()}\t{hold.placed_by}\t{hold.matter}" for hold in rows]
    click.echo("\n".join(lines) if lines else f"tenant {tenant_id} has no holds")


@click.group(name="backups")
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
@one_line_errors
def register_backup(taken_at: str, location: str, object_name: str, tenant_ids: tuple[int, ...],
                    method: str) -> None:
    """Add a snapshot to the catalogue."""
    from retention import backups

    try:
        moment = datetime.fromisoformat(taken_at)
    except ValueError:
        raise ValueError(f"--taken-at {taken_at[:40]!r} is not an ISO 8601 date or time") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    config.use(database())
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
@one_line_errors
def list_backups(tenant_id: int | None) -> None:
    """Every snapshot, newest first: id, taken, method, state, where, tenants."""
    from compliance.models import BackupSnapshot, backup_snapshot_tenants
    from retention import backups

    config.use(database())
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
@click.option("--as-of", "as_of", metavar="YYYY-MM-DD",
              help="Sweep as of the start of this day (UTC), not now; a real sweep refuses a later day.")
@click.option("--dry-run", is_flag=True,
              help="Print what would be deleted and whose keys destroyed; change nothing.")
@one_line_errors
def sweep_backups(as_of: str | None, dry_run: bool) -> None:
    """Run the backup sweep here (no queue): delete expired snapshots, crypto-shred due tenants.

    The backup purge from the command line, dry or real: a retention run of kind backups, as
    POST /api/v1/retention/runs starts one. `offboard purge` is the primary purge."""
    from retention import backups

    moment = _day(as_of) if as_of is not None else None
    config.use(database())
    row = backups.run(as_of=moment, dry_run=dry_run, actor=CLI_ACTOR)
    report = row.report or {}
    if dry_run:
        _echo_backup_plan(row.id, report)
        return
    for entry in report["snapshots"]:
        click.echo(f"snapshot {entry['snapshot_id']}: {entry['status']}" + _why(entry))
    for entry in report["tenants"]:
        certificate = entry.get("certificate") or {}
        click.echo(f"tenant {entry['tenant_id']}: {entry['status']}"
                   + (f", certificate {certificate['id']}" if "id" in certificate else "") + _why(entry))
    failed = [e for e in report["snapshots"] + report["tenants"] if e["status"] == "failed"]
    if failed:
        raise click.ClickException(f"{len(failed)} item(s) failed; see run {row.id}")
    click.echo(f"backup sweep {row.id}: {len(report['snapshots'])} snapshot(s), "
               f"{len(report['tenants'])} tenant(s)")


def _why(entry: dict[str, Any]) -> str:
    reason = entry.get("exception") or entry.get("error")
    return f" ({reason})" if reason else ""


_SNAPSHOT_WOULD = {"deleted": "would be deleted", "retired": "would be retired (its tenants' keys are gone)",
                   "waiting": "would be kept for now", "held": "HELD, would be kept"}


def _echo_backup_plan(run_id: int, report: dict[str, Any]) -> None:
    snapshots, tenants = report["snapshots"], report["tenants"]
    shredded = [entry for entry in tenants if entry["would"] == "purged"]
    click.echo(f"dry run {run_id} of the backup sweep as of {report['as_of']}: {len(snapshots)} expired "
               f"snapshot(s), {len(shredded)} tenant(s) to crypto-shred, {len(report['held'])} held; "
               "nothing was deleted")
    for entry in snapshots:
        what = _SNAPSHOT_WOULD[entry["would"]]
        click.echo(f"snapshot {entry['snapshot_id']} ({entry['method']}, taken {entry['taken_at']}, "
                   f"{entry['location'].rstrip('/')}/{entry['object']}): {what}" + _why(entry))
    for entry in tenants:
        what = ("HELD, its keys would not be destroyed" if entry["would"] == "held" else
                f"would be crypto-shredded: {entry['keys']} data key(s) destroyed, "
                f"{entry['snapshots']} snapshot(s) deleted")
        click.echo(f"tenant {entry['tenant_id']} ({entry['external_ref']}), backups due "
                   f"{entry['backup_due']}: {what}" + _why(entry))
