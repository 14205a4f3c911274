"""``offboard audit`` and ``offboard cert``: the audit log's checkpoints, verification and keys,
and deletion certificates checked offline."""

from __future__ import annotations

import json
from pathlib import Path

import click

import audit
from compliance import config, db
from compliance.cli_support import CLI_ACTOR, database, one_line_errors


@click.group(name="audit")
def audit_group() -> None:
    """The tamper-evident audit log: checkpoints, verification, signing keys."""


@audit_group.command(name="verify")
@one_line_errors
def verify_log() -> None:
    """Recompute the tree from every stored event and check every signed checkpoint; the
    outcome is recorded in the log (``audit.verified``) for the audit page."""
    from audit import verifications

    database()
    report = verifications.run(CLI_ACTOR)
    for note in report.notes:
        click.echo(f"note: {note}")
    if not report.ok:
        where = f"first bad index {report.first_bad_index}: " if report.first_bad_index is not None else ""
        raise click.ClickException(f"audit log does NOT verify: {where}{report.problem}")
    click.echo(f"audit log verifies: {report.size} events, {report.checkpoints} checkpoints, "
               f"{report.queued} queued")


@audit_group.command(name="checkpoint")
@click.option("--force", is_flag=True, help="Sign even when the log did not grow.")
@one_line_errors
def sign_checkpoint(force: bool) -> None:
    """Sequence queued events and sign a checkpoint of the whole log now."""
    from audit import checkpoints

    database()
    row = checkpoints.checkpoint(force=force)
    if row is None:
        click.echo("the log did not grow since the last checkpoint; nothing signed")
    else:
        click.echo(row.note, nl=False)


@audit_group.command(name="keys")
@one_line_errors
def audit_keys() -> None:
    """Print the published audit signing keys as JWKS (active key first)."""
    from audit import keys as signing_keys

    click.echo(json.dumps(signing_keys.jwks(config.load()), indent=2))


@audit_group.command(name="rotate-key")
@one_line_errors
def rotate_audit_key() -> None:
    """Make a new audit signing key active; the old ones stay published and keep verifying."""
    from audit import keys as signing_keys

    settings = database()
    key = signing_keys.rotate(settings)
    with db.transaction():
        audit.record("audit_key.rotated", actor=CLI_ACTOR, data={"key_id": key.key_id})
    click.echo(f"audit signing key {key.key_id} is now active")


@click.group(name="cert")
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
