"""Deletion certificates: issued only from the audit events of a purge, never ``erased`` while a
system is not, and verified offline (signature, payload type, canonical payload, checkpoint,
inclusion proofs, tenant, every claim) from the file and the public key alone, also by the
30 lines of docs/verify-a-certificate.md."""

from __future__ import annotations

import ast
import base64
import dataclasses
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pypdf import PdfReader
from sqlalchemy import select

import audit
from audit import certificates, checkpoints, keys, log, proofs
from audit.certificate_pdf import render_pdf
from audit.certificates import CertificateError, MissingEvidence
from compliance import config, db
from compliance.models import AuditEvent, DeletionCertificate, SourceConfig, Tenant

pytestmark = pytest.mark.usefixtures("session", "own_keys")

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "verify-a-certificate.md"
STARTED, FINISHED = "2026-06-01T02:00:00+00:00", "2026-06-01T02:07:31+00:00"
PURGER = "system:purge"




@dataclasses.dataclass
class Setup:
    tenant: Tenant
    sources: list[SourceConfig]  # the tenant's own, then the shared one


def make_tenant(ref: str) -> Setup:
    tenant = Tenant(external_ref=ref, name=f"Tenant {ref}", region="DE")
    db.session.add(tenant)
    db.session.flush()
    sources = [SourceConfig(tenant_id=tenant.id, kind="sql", name="crm", config={}),
               SourceConfig(tenant_id=tenant.id, kind="http", name="tickets", config={})]
    shared = db.session.scalars(select(SourceConfig).where(SourceConfig.name == "warehouse",
                                                           SourceConfig.tenant_id.is_(None))).first()
    sources.append(shared or SourceConfig(tenant_id=None, kind="sql", name="warehouse", config={}))
    db.session.add_all(sources)
    db.session.commit()
    return Setup(tenant, sources)


@pytest.fixture
def acme() -> Setup:
    return make_tenant("acme")


CATEGORIES = {"crm": ["account", "content"], "tickets": ["content", "usage"], "warehouse": ["reports"]}


def purge(setup: Setup, *, failed: tuple[str, ...] = (), remaining: dict[str, int] | None = None,
          skip: tuple[str, ...] = (), completed: bool = True, objects: int = 3, files: int = 2) -> None:
    """What the retention purge will write: one erase (or failure) event per system, then completion."""
    tenant_id = setup.tenant.id
    for source in setup.sources:
        if source.name in skip:
            continue
        if source.name in failed:
            audit.record("purge.source_failed", actor=PURGER, tenant_id=tenant_id,
                         data={"source_id": source.id, "source": source.name, "kind": source.kind,
                               "error": "connection refused by db.internal:5432", "attempts": 3})
            continue
        left = (remaining or {}).get(source.name, 0)
        audit.record("purge.source_erased", actor=PURGER, tenant_id=tenant_id,
                     data={"source_id": source.id, "source": source.name, "kind": source.kind,
                           "categories": CATEGORIES[source.name], "started_at": STARTED,
                           "finished_at": FINISHED, "removed": {f"{source.name}_rows": 120 - left},
                           "remaining": {f"{source.name}_rows": left}})
    if "bundle_store" not in skip:
        audit.record("purge.bundles_deleted", actor=PURGER, tenant_id=tenant_id,
                     data={"objects": objects, "bytes": 40960 * objects, "started_at": STARTED,
                           "finished_at": FINISHED})
    if "staging" not in skip:
        audit.record("purge.staging_deleted", actor=PURGER, tenant_id=tenant_id,
                     data={"files": files, "started_at": STARTED, "finished_at": FINISHED})
    if completed:
        audit.record("purge.completed", actor=PURGER, tenant_id=tenant_id, data={"kind": "primary"})
    db.session.commit()


def hold(setup: Setup, action: str, hold_id: str = "H-7", **data: str) -> None:
    audit.record(f"hold.{action}", actor="legal@example.com", tenant_id=setup.tenant.id,
                 data={"hold_id": hold_id, **data})
    db.session.commit()


def published() -> dict[str, bytes]:
    return keys.public_keys()


def payload_of(envelope: str | dict[str, Any]) -> dict[str, Any]:
    document = json.loads(envelope) if isinstance(envelope, str) else envelope
    return json.loads(base64.b64decode(document["payload"]))


def resign(payload: dict[str, Any] | bytes, *,
           payload_type: str = certificates.PAYLOAD_TYPE) -> dict[str, Any]:
    """An envelope over ``payload`` properly signed by the active key: what a forger holding the key,
    or a buggy issuer, could produce; only the payload's own checks can then refuse it."""
    key = keys.active_key()
    body = payload if isinstance(payload, bytes) else rfc8785.dumps(payload)
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type.encode()), payload_type.encode(), len(body), body)
    return {"payload": base64.b64encode(body).decode(), "payloadType": payload_type,
            "signatures": [{"keyid": key.key_id, "sig": base64.b64encode(key.private.sign(pae)).decode()}]}


def by_name(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {system["name"]: system for system in payload["systems"]}


# --- issuing -----------------------------------------------------------------------------------


def test_a_primary_certificate_verifies_offline_from_the_file_and_the_jwks(acme: Setup,
                                                                           tmp_path: Path) -> None:
    purge(acme)
    row = certificates.issue(acme.tenant.id, "primary", actor="legal@example.com")
    assert db.session.get(DeletionCertificate, row.id).envelope == row.envelope
    certificate, jwks = tmp_path / "certificate.json", tmp_path / "keys.json"
    certificate.write_text(row.envelope)
    jwks.write_text(json.dumps(keys.jwks()))

    # A fresh interpreter with no reachable database, no Redis and no instance: the file and the key only.
    code = ("import sys, json; from pathlib import Path; from audit import certificates as c; "
            "p = c.verify(Path(sys.argv[1]).read_bytes(), c.load_public_keys(Path(sys.argv[2]))); "
            "print(json.dumps(p))")
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
           "REDIS_URL": "redis://127.0.0.1:9/0", "OFFBOARD_INSTANCE_DIR": str(tmp_path / "nowhere")}
    done = subprocess.run([sys.executable, "-c", code, str(certificate), str(jwks)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert not (tmp_path / "nowhere").exists()

    assert payload == payload_of(row.envelope)
    assert (payload["certificate_id"], payload["kind"], payload["status"]) == (row.id, "primary", "erased")
    assert (payload["tenant_id"], payload["key_id"], payload["issued_by"]) == (
        acme.tenant.id, keys.active_key().key_id, "legal@example.com")
    assert payload["exceptions"] == [] and payload["retained"] == []
    assert payload["data_categories"] == ["account", "content", "reports", "usage"]
    systems = by_name(payload)
    assert list(systems) == ["source crm", "source tickets", "source warehouse", "bundle store", "staging"]
    crm = systems["source crm"]
    assert (crm["method"], crm["status"], crm["started_at"], crm["finished_at"]) == (
        "deleted", "erased", STARTED, FINISHED)
    assert crm["removed"] == {"crm_rows": 120} and crm["verification"] == {"remaining": {"crm_rows": 0}}
    assert systems["bundle store"]["removed"] == {"objects": 3, "bytes": 122880}
    assert systems["staging"]["removed"] == {"files": 2}
    cited = {i for system in payload["systems"] for i in system["events"]} | {payload["purge_event"]}
    assert cited == {event["index"] for event in payload["evidence"]["events"]}
    for event in payload["evidence"]["events"]:
        assert json.loads(event["leaf"])["tenant_id"] == acme.tenant.id
    assert payload["evidence"]["checkpoint"].startswith(config.current().audit_origin + "\n")

    issued = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "certificate.issued")).one()
    assert (issued.tenant_id, issued.subject_type, issued.subject_id) == (
        acme.tenant.id, "certificate", row.id)
    assert issued.data == {"kind": "primary", "status": "erased", "key_id": row.key_id}


def test_a_pem_public_key_or_a_single_jwk_verifies_too(acme: Setup, tmp_path: Path) -> None:
    purge(acme)
    row = certificates.issue(acme.tenant.id, "primary", actor="legal@example.com")
    key = keys.active_key()
    pem = tmp_path / "key.pem"
    pem.write_bytes(key.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    assert certificates.load_public_keys(pem) == {key.key_id: key.public}
    jwk = tmp_path / "key.jwk"
    jwk.write_text(json.dumps(keys.jwks()["keys"][0]))
    assert certificates.verify(row.envelope, certificates.load_public_keys(jwk))["certificate_id"] == row.id
    assert certificates.verify(row.envelope, certificates.load_public_keys(pem))["certificate_id"] == row.id


def test_missing_evidence_names_every_system_without_its_erase_event(acme: Setup) -> None:
    with pytest.raises(MissingEvidence) as nothing:
        certificates.issue(acme.tenant.id, "primary", actor="legal@example.com")
    assert len(nothing.value.missing) == 6  # the completion, three sources, bundle store, staging
    purge(acme, skip=("tickets", "staging"), completed=False)
    with pytest.raises(MissingEvidence) as missing:
        certificates.issue(acme.tenant.id, "primary", actor="legal@example.com")
    tickets = next(s for s in acme.sources if s.name == "tickets")
    assert missing.value.missing == [
        f"the primary purge of tenant {acme.tenant.id} has not completed (no purge.completed)",
        f"source tickets (id {tickets.id}): no purge.source_erased or purge.source_failed event",
        "staging: no purge.staging_deleted event"]
    with pytest.raises(MissingEvidence, match=r"backups: no backups\.purged or tenant_key\.destroyed event"):
        certificates.issue(acme.tenant.id, "backups", actor="legal@example.com")
    assert db.session.scalars(select(DeletionCertificate)).all() == []


def test_another_tenants_events_are_not_evidence(acme: Setup) -> None:
    other = make_tenant("globex")
    purge(other)
    with pytest.raises(MissingEvidence):
        certificates.issue(acme.tenant.id, "primary", actor="legal@example.com")


def test_a_failed_source_gives_erased_with_exceptions_naming_it(acme: Setup) -> None:
    purge(acme, failed=("tickets",))
    row = certificates.issue(acme.tenant.id, "primary", actor="legal@example.com")
    payload = certificates.verify(row.envelope, published())
    assert row.status == payload["status"] == "erased_with_exceptions"
    tickets = by_name(payload)["source tickets"]
    assert (tickets["status"], tickets["verification"]) == ("failed", {"remaining": None})
    assert payload["exceptions"] == ["source tickets: the erase failed after 3 attempts: connection refused "
                                     "by db.internal:5432"]
    assert payload["data_categories"] == ["account", "content", "reports"]  # not tickets' usage


def test_records_left_after_the_erase_are_an_exception(acme: Setup) -> None:
    purge(acme, remaining={"crm": 4})
    payload = payload_of(certificates.issue(acme.tenant.id, "primary", actor="legal@example.com").envelope)
    assert payload["status"] == "erased_with_exceptions"
    assert by_name(payload)["source crm"]["status"] == "erased_with_exceptions"
    assert payload["exceptions"] == ["source crm: 4 records remain after the erase (crm_rows: 4)"]


def test_nothing_erased_is_failed(acme: Setup) -> None:
    purge(acme, failed=("crm", "tickets", "warehouse"), objects=0, files=0)
    payload = payload_of(certificates.issue(acme.tenant.id, "primary", actor="legal@example.com").envelope)
    assert payload["status"] == "failed" and len(payload["exceptions"]) == 3
    assert by_name(payload)["bundle store"]["method"] == "not held"


def test_a_legal_hold_active_at_the_purge_is_an_exception_with_its_reason_and_matter(acme: Setup) -> None:
    hold(acme, "placed", "H-1", reason="old dispute")
    hold(acme, "released", "H-1", reason="settled")  # released before the purge: no exception
    hold(acme, "placed", "H-7", reason="litigation hold", matter="Acme v. Globex, case 24-cv-113")
    purge(acme, remaining={"warehouse": 31})
    hold(acme, "released", "H-7", reason="judgment")  # after the purge: it was active then
    row = certificates.issue(acme.tenant.id, "primary", actor="legal@example.com")
    payload = certificates.verify(row.envelope, published())
    assert payload["status"] == "erased_with_exceptions"
    [retained] = payload["retained"]
    assert retained["hold_id"] == "H-7" and retained["why"] == "legal hold"
    assert (retained["reason"], retained["matter"]) == ("litigation hold", "Acme v. Globex, case 24-cv-113")
    assert retained["systems"] == ["source warehouse"] and retained["legal_basis"] == certificates.HOLD_BASIS
    assert payload["exceptions"][-1] == (
        "data in source warehouse was retained under legal hold H-7 (reason: "
                                         "litigation hold; matter: Acme v. Globex, case 24-cv-113)")


def test_a_hold_alone_keeps_the_certificate_from_erased(acme: Setup) -> None:
    hold(acme, "placed", "H-2", reason="regulator inquiry", matter="BaFin 2026-17")
    purge(acme)
    payload = payload_of(certificates.issue(acme.tenant.id, "primary", actor="legal@example.com").envelope)
    assert payload["status"] == "erased_with_exceptions"
    assert payload["exceptions"] == [
        "data in the systems in scope was retained under legal hold H-2 (reason: "
                                     "regulator inquiry; matter: BaFin 2026-17)"]


def shred(setup: Setup, versions: range, destroyed: range) -> None:
    for version in versions:
        audit.record("tenant_key.created", actor=PURGER, tenant_id=setup.tenant.id,
                     subject=("tenant_key", version),
                     data={"version": version, "master_key_id": "m1"})
    for version in destroyed:
        audit.record("tenant_key.destroyed", actor=PURGER, tenant_id=setup.tenant.id,
                     subject=("tenant_key", version), data={"version": version, "master_key_id": "m1"})
    db.session.commit()


def test_a_backups_certificate_from_destroyed_keys_is_crypto_shredded(acme: Setup) -> None:
    shred(acme, range(1, 3), range(1, 3))
    row = certificates.issue(acme.tenant.id, "backups", actor="legal@example.com")
    payload = certificates.verify(row.envelope, published())
    [backups] = payload["systems"]
    assert (payload["kind"], payload["status"]) == ("backups", "erased")
    assert (backups["name"], backups["method"], backups["status"]) == ("backups", "crypto-shredded", "erased")
    assert backups["removed"] == {"keys": 2} and backups["verification"] == {"remaining": {"keys": 0}}
    assert len(backups["events"]) == 4


def test_a_key_still_live_keeps_backups_from_erased(acme: Setup) -> None:
    shred(acme, range(1, 4), range(1, 3))
    payload = payload_of(certificates.issue(acme.tenant.id, "backups", actor="legal@example.com").envelope)
    assert payload["status"] == "erased_with_exceptions"
    assert "tenant key versions 3 were never destroyed" in payload["exceptions"][0]


def test_purged_backups_are_deleted(acme: Setup) -> None:
    audit.record("backups.purged", actor=PURGER, tenant_id=acme.tenant.id,
                 data={"snapshots": 12, "started_at": STARTED, "finished_at": FINISHED})
    db.session.commit()
    payload = payload_of(certificates.issue(acme.tenant.id, "backups", actor="legal@example.com").envelope)
    [backups] = payload["systems"]
    assert (payload["status"], backups["method"]) == ("erased", "deleted")
    assert backups["removed"] == {"snapshots": 12}


# --- verification refuses every change ----------------------------------------------------------


@pytest.fixture
def issued(acme: Setup) -> DeletionCertificate:
    purge(acme, failed=("tickets",))
    return certificates.issue(acme.tenant.id, "primary", actor="legal@example.com")


def test_every_changed_payload_byte_fails(issued: DeletionCertificate) -> None:
    envelope = json.loads(issued.envelope)
    body = base64.b64decode(envelope["payload"])
    positions = sorted(set(range(0, len(body), max(1, len(body) // 300))) | set(range(40)) |
                       set(range(len(body) - 40, len(body))))
    for position in positions:
        for change in (0x01, 0x20, 0x80):
            changed = bytearray(body)
            changed[position] ^= change
            forged = {**envelope, "payload": base64.b64encode(bytes(changed)).decode()}
            with pytest.raises(CertificateError, match="bad signature by key"):
                certificates.verify(forged, published())
    with pytest.raises(CertificateError):
        certificates.verify({**envelope, "payload": base64.b64encode(body + b" ").decode()}, published())
    certificates.verify(envelope, published())


def test_the_payload_type_and_the_signature_are_checked(issued: DeletionCertificate) -> None:
    envelope = json.loads(issued.envelope)
    for payload_type in ("application/vnd.offboard.deletion-certificate+json; version=2", "application/json",
                         certificates.PAYLOAD_TYPE + " "):
        with pytest.raises(CertificateError, match="payload type"):
            certificates.verify({**envelope, "payloadType": payload_type}, published())
    with pytest.raises(CertificateError, match="bad signature by key"):  # signed as another type
        certificates.verify({**resign(payload_of(envelope), payload_type="application/json"),
                             "payloadType": certificates.PAYLOAD_TYPE}, published())
    [signature] = envelope["signatures"]
    sig = bytearray(base64.b64decode(signature["sig"]))
    sig[10] ^= 1
    flipped = {**envelope, "signatures": [{**signature, "sig": base64.b64encode(bytes(sig)).decode()}]}
    with pytest.raises(CertificateError, match=f"bad signature by key {signature['keyid']}"):
        certificates.verify(flipped, published())
    with pytest.raises(CertificateError, match="no signature by a known key"):
        certificates.verify({**envelope, "signatures": []}, published())


def test_a_wrong_key_fails(issued: DeletionCertificate) -> None:
    stranger = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(CertificateError, match="no signature by a known key"):
        certificates.verify(issued.envelope, {keys.key_id_of(stranger): stranger})
    with pytest.raises(CertificateError, match=f"bad signature by key {issued.key_id}"):
        certificates.verify(issued.envelope, {issued.key_id: stranger})  # a key passing for ours


def test_a_non_canonical_or_ambiguous_payload_fails_even_when_signed(issued: DeletionCertificate) -> None:
    payload = payload_of(issued.envelope)
    with pytest.raises(CertificateError, match="not canonical"):
        certificates.verify(resign(json.dumps(payload, indent=1).encode()), published())
    text = rfc8785.dumps(payload).decode()
    doubled = text.replace('{"certificate_id"', '{"status":"erased","certificate_id"', 1)
    with pytest.raises(CertificateError, match="repeats a key"):
        certificates.verify(resign(doubled.encode()), published())


def test_signed_claims_must_be_what_the_evidence_says(issued: DeletionCertificate) -> None:
    """Even a payload we signed is refused when it says more than its events: no ``erased`` over a failure."""
    payload = payload_of(issued.envelope)
    for field, value in (("status", "erased"), ("exceptions", []), ("data_categories", ["account"])):
        with pytest.raises(CertificateError, match=f"payload field {field} is not what"):
            certificates.verify(resign({**payload, field: value}), published())
    systems = [dict(system) for system in payload["systems"]]
    systems[1]["status"] = "erased"
    with pytest.raises(CertificateError, match="payload field systems is not what"):
        certificates.verify(resign({**payload, "systems": systems}), published())
    with pytest.raises(CertificateError, match="systems of a primary certificate"):
        certificates.verify(resign({**payload, "systems": payload["systems"][:-1]}), published())
    with pytest.raises(CertificateError, match="key_id"):
        certificates.verify(resign({**payload, "key_id": "0123456789abcdef"}), published())
    with pytest.raises(CertificateError, match="unknown"):
        certificates.verify(resign({**payload, "note": "x"}), published())


def test_evidence_from_another_tenant_fails(acme: Setup, issued: DeletionCertificate) -> None:
    """Another tenant's events, with inclusion proofs that do verify against a checkpoint we signed,
    cannot stand in for this tenant's."""
    other = make_tenant("globex")
    purge(other)
    theirs = payload_of(certificates.issue(other.tenant.id, "primary", actor="legal@example.com").envelope)
    ours = payload_of(issued.envelope)
    note = theirs["evidence"]["checkpoint"]  # signed, and covers both tenants' events
    size = int(note.split("\n")[1])
    leaves = {e["index"]: e["leaf"] for e in ours["evidence"]["events"] + theirs["evidence"]["events"]}

    def evidence(indices: list[int]) -> dict[str, Any]:
        return {"checkpoint": note, "events": [
            {"index": i, "leaf": leaves[i],
             "proof": [base64.b64encode(h).decode() for h in proofs.inclusion_proof(i, size, log.fetch)]}
            for i in sorted(indices)]}

    mine = [e["index"] for e in ours["evidence"]["events"]]
    assert certificates.verify(resign({**ours, "evidence": evidence(mine)}), published())  # fresh proofs do
    [their_bundles] = by_name(theirs)["bundle store"]["events"]
    [our_bundles] = by_name(ours)["bundle store"]["events"]
    systems = [{**s, "events": [their_bundles]} if s["name"] == "bundle store" else s
               for s in ours["systems"]]
    swapped = {**ours, "systems": systems,
               "evidence": evidence([i for i in mine if i != our_bundles] + [their_bundles])}
    with pytest.raises(CertificateError, match=f"event {their_bundles} is about tenant {other.tenant.id}, "
                                               f"not tenant {acme.tenant.id}"):
        certificates.verify(resign(swapped), published())
    with pytest.raises(CertificateError, match=f"is about tenant {other.tenant.id}"):
        certificates.verify(resign({**theirs, "tenant_id": acme.tenant.id}), published())
    extra = {**ours, "evidence": evidence([*mine, their_bundles])}
    with pytest.raises(CertificateError, match="is about tenant"):
        certificates.verify(resign(extra), published())


def test_tampered_proofs_and_checkpoints_fail(issued: DeletionCertificate) -> None:
    payload = payload_of(issued.envelope)
    events = payload["evidence"]["events"]
    proved = next(i for i, event in enumerate(events) if event["proof"])
    hashes = list(events[proved]["proof"])
    raw = bytearray(base64.b64decode(hashes[0]))
    raw[0] ^= 1
    hashes[0] = base64.b64encode(bytes(raw)).decode()
    changed = [*events[:proved], {**events[proved], "proof": hashes}, *events[proved + 1:]]
    with pytest.raises(CertificateError, match=f"inclusion proof of event {events[proved]['index']}"):
        certificates.verify(resign({**payload, "evidence": {**payload["evidence"], "events": changed}}),
                            published())
    leaf = events[0]["leaf"].replace(f'"actor":"{PURGER}"', '"actor":"someone else"')
    assert leaf != events[0]["leaf"]
    forged = [{**events[0], "leaf": leaf}, *events[1:]]
    with pytest.raises(CertificateError, match=f"inclusion proof of event {events[0]['index']}"):
        certificates.verify(resign({**payload, "evidence": {**payload["evidence"], "events": forged}}),
                            published())
    note = payload["evidence"]["checkpoint"]
    lines = note.split("\n")
    for tampered in ("\n".join([lines[0], str(int(lines[1]) + 1), *lines[2:]]),
                     "\n".join([*lines[:2], base64.b64encode(b"\x00" * 32).decode(), *lines[3:]]),
                     note.replace(lines[-2], lines[-2][:-6] + "AAAAA="),
                     "\n".join(lines[:4]) + "\n"):
        with pytest.raises(CertificateError, match="checkpoint signature"):
            forged = {**payload, "evidence": {**payload["evidence"], "checkpoint": tampered}}
            certificates.verify(resign(forged), published())
    cited = {**payload, "purge_event": payload["purge_event"] + 1000}
    with pytest.raises(CertificateError, match="does not hold"):
        certificates.verify(resign(cited), published())


# --- rotation ----------------------------------------------------------------------------------


def test_after_rotation_old_certificates_verify_and_new_ones_use_the_new_key(acme: Setup,
                                                                              tmp_path: Path) -> None:
    purge(acme)
    old = certificates.issue(acme.tenant.id, "primary", actor="legal@example.com")
    old_key = keys.active_key()
    new_key = keys.rotate()
    assert new_key.key_id != old_key.key_id
    jwks = tmp_path / "keys.json"
    jwks.write_text(json.dumps(keys.jwks()))
    assert certificates.verify(old.envelope, certificates.load_public_keys(jwks))["key_id"] == old_key.key_id
    new = certificates.issue(acme.tenant.id, "primary", actor="legal@example.com")
    assert new.key_id == new_key.key_id == json.loads(new.envelope)["signatures"][0]["keyid"]
    assert certificates.verify(new.envelope, certificates.load_public_keys(jwks))["key_id"] == new_key.key_id
    # The new certificate's checkpoint is signed by the new key too: the new key alone verifies it.
    assert certificates.verify(new.envelope, {new_key.key_id: new_key.public})["certificate_id"] == new.id
    with pytest.raises(CertificateError, match="no signature by a known key"):
        certificates.verify(old.envelope, {new_key.key_id: new_key.public})


def test_a_tree_that_did_not_grow_is_signed_again_by_the_new_key(acme: Setup) -> None:
    purge(acme)
    certificates.issue(acme.tenant.id, "primary", actor="legal@example.com")
    checkpoints.checkpoint()  # the certificate.issued event too: nothing new is left to sign
    new_key = keys.rotate()
    row = certificates.issue(acme.tenant.id, "primary", actor="legal@example.com")
    assert certificates.verify(row.envelope, {new_key.key_id: new_key.public})["key_id"] == new_key.key_id


# --- the PDF -----------------------------------------------------------------------------------


def pdf_text(data: bytes) -> str:
    return " ".join("\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages).split())


def test_the_pdf_says_what_where_when_and_how_to_verify(acme: Setup) -> None:
    hold(acme, "placed", "H-7", reason="litigation hold", matter="Acme v. Globex")
    purge(acme, failed=("tickets",), remaining={"warehouse": 31})
    row = certificates.issue(acme.tenant.id, "primary", actor="legal@example.com")
    data = render_pdf(row)
    assert data == render_pdf(row)  # deterministic
    text = pdf_text(data)
    key = keys.active_key()
    fingerprint = " ".join(re.findall(".{8}", hashlib.sha256(key.public).hexdigest()))
    for expected in (row.id, row.key_id, fingerprint, "Deletion certificate", "Erased with exceptions",
                     "source crm", "source tickets", "source warehouse", "bundle store", "staging",
                     "What was deleted, where and when", "Exceptions and retained data", "litigation hold",
                     "Acme v. Globex", "connection refused", "Policy", "90 days after the account closes",
                     "Verification", "How to verify", "offboard cert verify", "/.well-known/offboard/keys",
                     "/api/v1/certificates/verify", "verify-a-certificate.md"):
        assert expected in text, expected


# --- the standalone verifier of docs/verify-a-certificate.md ---------------------------------------


def doc_block(language: str) -> str:
    [block] = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    return block


def written(directory: Path, row: DeletionCertificate, envelope: dict[str, Any] | None = None) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "certificate.json").write_text(json.dumps(envelope) if envelope else row.envelope)
    (directory / "keys.json").write_text(json.dumps(keys.jwks()))
    return directory


def test_the_documented_python_verifier_needs_only_the_standard_library_and_cryptography() -> None:
    code = doc_block("python")
    lines = [line for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 42
    imported = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"cryptography"}


def run_documented_verifier(directory: Path) -> subprocess.CompletedProcess[str]:
    script = directory / "verify.py"
    script.write_text(doc_block("python"), encoding="utf-8")
    return subprocess.run([sys.executable, "-I", str(script), "certificate.json", "keys.json"], cwd=directory,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_documented_python_verifier_says_ok_and_refuses_tampering(issued: DeletionCertificate,
                                                                      tmp_path: Path) -> None:
    done = run_documented_verifier(written(tmp_path / "good", issued))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"OK: certificate {issued.id}: primary, erased_with_exceptions, "
                                   f"tenant {issued.tenant_id}")
    envelope = json.loads(issued.envelope)
    body = bytearray(base64.b64decode(envelope["payload"]))
    body[len(body) // 2] ^= 1
    payload = payload_of(envelope)
    events = payload["evidence"]["events"]
    proof = [base64.b64encode(bytes(32)).decode(), *events[0]["proof"][1:]]
    tampered = {
        "byte": {**envelope, "payload": base64.b64encode(bytes(body)).decode()},
        "type": {**envelope, "payloadType": "application/json"},
        "proof": resign({**payload, "evidence": {**payload["evidence"],
                                                 "events": [{**events[0], "proof": proof}, *events[1:]]}}),
        "checkpoint": resign({**payload, "evidence": {
            **payload["evidence"], "checkpoint": payload["evidence"]["checkpoint"].replace("\n", "\n1", 1)}}),
        "tenant": resign({**payload, "tenant_id": payload["tenant_id"] + 1}),
    }
    for name, forged in tampered.items():
        done = run_documented_verifier(written(tmp_path / name, issued, forged))
        assert done.returncode != 0 and "OK" not in done.stdout, name


@pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("jq")), reason="needs openssl and jq")
def test_the_documented_openssl_commands_check_both_signatures(issued: DeletionCertificate,
                                                               tmp_path: Path) -> None:
    script = doc_block("sh")
    good = subprocess.run(["sh", "-c", script], cwd=written(tmp_path / "good", issued), capture_output=True,
                          text=True, timeout=60, check=False)
    if "pkeyutl" in good.stderr and "rawin" in good.stderr:
        pytest.skip("openssl older than 3.0 (no -rawin)")
    assert good.returncode == 0, good.stderr
    assert good.stdout.count("Signature Verified Successfully") == 2
    envelope = json.loads(issued.envelope)
    body = bytearray(base64.b64decode(envelope["payload"]))
    body[-3] ^= 1
    forged = {**envelope, "payload": base64.b64encode(bytes(body)).decode()}
    bad = subprocess.run(["sh", "-c", script], cwd=written(tmp_path / "bad", issued, forged),
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode != 0 and "Verification Failure" in bad.stdout + bad.stderr


def test_a_malformed_envelope_or_signed_payload_never_crashes_verify(issued: DeletionCertificate) -> None:
    """The public verify endpoint hands anything to ``verify``: it answers with the payload or with
    CertificateError, nothing else (a signed change of free text, such as ``issued_by``, may verify)."""
    rng = random.Random(20260302)
    values = [None, True, False, 0, -1, 2**53 - 1, "", "x", "source", [], {}, [0], {"a": 1}, [[]]]

    def mutate(value: Any) -> Any:
        if isinstance(value, dict | list) and value and rng.random() < 0.85:
            changed = dict(value) if isinstance(value, dict) else list(value)
            key = rng.choice(list(changed)) if isinstance(changed, dict) else rng.randrange(len(changed))
            if rng.random() < 0.15:
                del changed[key]
            else:
                changed[key] = mutate(changed[key]) if rng.random() < 0.6 else rng.choice(values)
            return changed
        return rng.choice(values)

    envelope, payload = json.loads(issued.envelope), payload_of(issued.envelope)
    refused = 0
    for _ in range(1500):
        forged = mutate(envelope) if rng.random() < 0.2 else resign(mutate(payload))
        try:
            certificates.verify(forged, published())
        except CertificateError:
            refused += 1
    assert refused > 1400
    for garbage in (b"", b"[]", b"{", b"null", "\udc80", b"\xff\xfe", 7, None):
        with pytest.raises(CertificateError):
            certificates.verify(garbage, published())  # type: ignore[arg-type]
