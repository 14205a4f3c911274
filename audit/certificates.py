"""Deletion certificates: a signed statement, built only from audit events, of how a tenant's data
was erased from every system in scope, that anyone checks offline with the public key alone.

A certificate is a DSSE envelope (github.com/secure-systems-lab/dsse): Ed25519 over the PAE of
``PAYLOAD_TYPE`` and the payload, the payload being the RFC 8785 canonical JSON of the
certificate. It carries its own evidence: for every event it rests on, the event's leaf (its
canonical JSON), the leaf's inclusion proof, and the signed checkpoint they lead to.

Issuing and verifying derive every claim (each system's entry, what was retained, the status,
the exceptions) with the same functions from the same leaves, so ``verify`` checks not only that
we signed but that the certificate says what its events say: it cannot read ``erased`` where the
evidence shows a failure or a hold. What no offline check can see is an event left out (a source
in scope the certificate does not list): ``offboard audit verify`` over the whole log answers that.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import or_, select

from audit import checkpoints, keys, log, notes, proofs
from compliance import clock, config, db
from compliance.models import AuditEvent, AuditLeaf, DeletionCertificate, SourceConfig

PAYLOAD_TYPE = "application/vnd.offboard.deletion-certificate+json; version=1"
KINDS = ("primary", "backups")
POLICY = {
    "primary": "Customer data is deleted from every system that holds it 90 days after the account closes.",
    "backups": "Backups holding customer data are purged, or made unreadable by destroying the tenant's "
               "encryption keys, within 12 months after the account closes.",
}
HOLD_BASIS = "establishment, exercise or defence of legal claims (GDPR Art. 17(3)(e))"
_ACTIONS = {"source": ("purge.source_erased", "purge.source_failed"),
            "bundle_store": ("purge.bundles_deleted",), "staging": ("purge.staging_deleted",),
            "backups": ("backups.purged", "tenant_key.destroyed", "tenant_key.created")}
_ANCHORS = {"primary": ("purge.completed",), "backups": ("backups.purged", "tenant_key.destroyed")}
_HOLDS = ("hold.placed", "hold.released")
_NAMES = {"bundle_store": "bundle store", "staging": "staging", "backups": "backups"}
_COUNTS = ("objects", "bytes", "files", "snapshots")  # what the erase events of non-sources count
_FIELDS = {"certificate_id": str, "kind": str, "status": str, "issued_at": str, "issuer": str,
           "issued_by": str, "key_id": str, "tenant_id": int, "request_id": (int, type(None)),
           "policy": str, "data_categories": list, "systems": list, "retained": list, "exceptions": list,
           "purge_event": int, "purged_at": str, "evidence": dict}

Event = tuple[int, dict[str, Any]]  # (log index, the event as its leaf says)
Cited = list[tuple[dict[str, Any], list[Event]]]  # (a system in scope, the events it rests on)


class CertificateError(ValueError):
    """A certificate that does not verify; the message names what failed."""


class MissingEvidence(Exception):
    """The audit log does not (yet) hold what a certificate must rest on; ``missing`` says what."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__("; ".join(missing))
        self.missing = missing


# --- issuing -----------------------------------------------------------------------------------


def issue(tenant_id: int, kind: str, *, actor: str, request_id: int | None = None) -> DeletionCertificate:
    """Sign and store a ``kind`` certificate for the tenant from the events in the audit log.

    Runs its own transactions (call it outside any): the log is sequenced and its head signed
    first, so every event the certificate cites has an inclusion proof.
    """
    if kind not in KINDS:
        raise ValueError(f"a certificate kind is one of {', '.join(KINDS)}, not {kind!r}")
    settings = config.current()
    key = keys.active_key(settings)
    _sign_head(key.key_id)
    with db.transaction() as session:
        head = checkpoints.latest()
        size = head.size if head is not None else 0
        leaves = _leaves(tenant_id, size)
        sources = _sources(tenant_id) if kind == "primary" else []
        cited, anchor, holds = _select(kind, tenant_id, sources,
                                       [(index, json.loads(text)) for index, text in leaves.items()])
        body = _assess(kind, cited, anchor, holds)
        indices = sorted({anchor[0], *(i for _, events in cited for i, _ in events), *(i for i, _ in holds)})
        issued_at = clock.now().replace(microsecond=0)
        payload = {
            "certificate_id": str(uuid.uuid4()), "kind": kind, "issued_at": issued_at.isoformat(),
            "issuer": settings.audit_origin, "issued_by": actor, "key_id": key.key_id,
            "tenant_id": tenant_id,
            "request_id": anchor[1]["request_id"] if request_id is None else request_id,
            "policy": POLICY[kind], **body,
            "evidence": {"checkpoint": head.note, "events": [
                {"index": index, "leaf": leaves[index],
                 "proof": [_b64encode(value) for value in proofs.inclusion_proof(index, size, log.fetch)]}
                for index in indices]},
        }
        body_bytes = rfc8785.dumps(payload)
        signature = {"keyid": key.key_id, "sig": _b64encode(key.private.sign(_pae(PAYLOAD_TYPE, body_bytes)))}
        envelope = rfc8785.dumps({"payload": _b64encode(body_bytes), "payloadType": PAYLOAD_TYPE,
                                  "signatures": [signature]}).decode()
        verify(envelope, keys.public_keys(settings))  # never hand out what does not verify
        row = DeletionCertificate(id=payload["certificate_id"], tenant_id=tenant_id, kind=kind,
                                  request_id=payload["request_id"], status=body["status"],
                                  issued_at=issued_at, issued_by=actor, key_id=key.key_id, envelope=envelope)
        session.add(row)
        log.record("certificate.issued", actor=actor, tenant_id=tenant_id, request_id=row.request_id,
                   subject=("certificate", row.id),
                   data={"kind": kind, "status": row.status, "key_id": key.key_id})
        return row


def _sign_head(key_id: str) -> None:
    """Sequence every committed event and sign the tree, with the certificate's key: one public key
    then checks both signatures (after a rotation, a tree that did not grow is signed again)."""
    if checkpoints.checkpoint() is not None:
        return
    with db.transaction():
        head = checkpoints.latest()
    if head is not None and head.key_id != key_id:
        checkpoints.checkpoint(force=True)


def _sources(tenant_id: int) -> list[SourceConfig]:
    """The sources in the tenant's scope: its own and every shared one."""
    mine = or_(SourceConfig.tenant_id == tenant_id, SourceConfig.tenant_id.is_(None))
    return list(db.session.scalars(select(SourceConfig).where(mine).order_by(SourceConfig.id)))


def _leaves(tenant_id: int, size: int) -> dict[int, str]:
    """Index -> leaf (canonical JSON) of the tenant's events a certificate may rest on, among the
    first ``size`` of the log."""
    actions = {action for group in (*_ACTIONS.values(), *_ANCHORS.values(), _HOLDS) for action in group}
    rows = db.session.execute(
        select(AuditLeaf.log_index, AuditEvent.canonical).join(AuditEvent)
        .where(AuditEvent.tenant_id == tenant_id, AuditEvent.action.in_(actions), AuditLeaf.log_index < size)
        .order_by(AuditLeaf.log_index))
    return {index: text for index, text in rows}


def _select(kind: str, tenant_id: int, sources: list[SourceConfig],
            events: list[Event]) -> tuple[Cited, Event, list[Event]]:
    """What the certificate rests on: each system in scope with its latest erase events, the event
    that ends the purge, and the holds active then. MissingEvidence naming every gap otherwise."""
    found: dict[str, list[Event]] = defaultdict(list)
    for index, event in events:
        found[event["action"]].append((index, event))
    missing, cited = [], []
    if kind == "primary":
        runs = [e for e in found["purge.completed"] if e[1]["data"].get("kind") == "primary"]
        anchor = runs[-1] if runs else None
        if anchor is None:
            missing.append(f"the primary purge of tenant {tenant_id} has not completed (no purge.completed)")
        erases = sorted(found["purge.source_erased"] + found["purge.source_failed"])
        for source in sources:
            latest = [e for e in erases if e[1]["data"].get("source_id") == source.id][-1:]
            if not latest:
                missing.append(f"source {source.name} (id {source.id}): no purge.source_erased or "
                               "purge.source_failed event")
            cited.append(({"system": "source", "source_id": source.id}, latest))
        for system in ("bundle_store", "staging"):
            action = _ACTIONS[system][0]
            if not found[action]:
                missing.append(f"{_NAMES[system]}: no {action} event")
            cited.append(({"system": system}, found[action][-1:]))
    else:
        purged, shredded = found["backups.purged"][-1:], found["tenant_key.destroyed"]
        anchor = (purged or shredded or [None])[-1]
        if anchor is None:
            missing.append("backups: no backups.purged or tenant_key.destroyed event")
        cited.append(({"system": "backups"}, sorted(purged + shredded + found["tenant_key.created"])))
    if missing or anchor is None:
        raise MissingEvidence(missing)
    holds = [(index, event) for index, event in found["hold.placed"] if index < anchor[0] and not any(
        index < later < anchor[0] and other["data"].get("hold_id") == event["data"].get("hold_id")
        for later, other in found["hold.released"])]
    return cited, anchor, holds


# --- what the events say (the same code issues and verifies) --------------------------------------


def _assess(kind: str, cited: Cited, anchor: Event, holds: list[Event]) -> dict[str, Any]:
    """The certificate's claims from its events. It is ``erased`` only when every system is;
    ``failed`` when nothing was erased; otherwise ``erased_with_exceptions``, each said in words."""
    action = anchor[1]["action"]
    if action not in _ANCHORS[kind] or (kind == "primary" and anchor[1]["data"].get("kind") != kind):
        raise CertificateError(f"event {anchor[0]} ({action}) does not end a {kind} purge")
    systems = [_system(head, events) for head, events in cited]
    retained = [_retained(hold, anchor[0], systems) for hold in holds]
    exceptions = [s["exception"] for s in systems if s["exception"]] + [r["exception"] for r in retained]
    erased = [s for s in systems if s["status"] != "failed" and s["method"] != "not held"]
    if not exceptions and all(s["status"] == "erased" for s in systems):
        status = "erased"
    elif not erased and any(s["status"] == "failed" for s in systems):
        status = "failed"
    else:
        status = "erased_with_exceptions"
    categories = sorted({c for s in systems if s["status"] != "failed" for c in s.get("categories", [])})
    return {"status": status, "data_categories": categories, "systems": systems, "retained": retained,
            "exceptions": exceptions, "purge_event": anchor[0], "purged_at": anchor[1]["occurred_at"]}


def _system(head: dict[str, Any], cited: list[Event]) -> dict[str, Any]:
    system = head["system"]
    if not cited or any(event["action"] not in _ACTIONS.get(system, ()) for _, event in cited):
        raise CertificateError(f"the {system} entry does not rest on its own erase events")
    if system == "backups":
        return {**head, "name": "backups", **_backups(cited), "events": [i for i, _ in cited]}
    if len(cited) != 1:
        raise CertificateError(f"the {system} entry rests on {len(cited)} events, not on its latest erase")
    [(index, event)] = cited
    data = event["data"]
    entry = {**head, "name": _NAMES.get(system) or f"source {data['source']}"}
    if system == "source":
        if data["source_id"] != head["source_id"]:
            raise CertificateError(f"the entry of source {head['source_id']} cites event {index}, "
                                   f"about source {data['source_id']}")
        entry |= {"source_kind": data["kind"], "categories": sorted(data.get("categories", []))}
    return {**entry, **_erase(entry["name"], event), "events": [index]}


def _erase(name: str, event: dict[str, Any]) -> dict[str, Any]:
    data = event["data"]
    if event["action"] == "purge.source_failed":
        return {"method": "deleted", "started_at": None, "finished_at": event["occurred_at"], "removed": {},
                "verification": {"remaining": None}, "status": "failed",
                "exception": f"{name}: the erase failed after {data.get('attempts')} attempts: "
                             f"{data.get('error')}"}
    removed = data["removed"] if "removed" in data else {k: data[k] for k in _COUNTS if k in data}
    remaining = data.get("remaining", {})
    left = {dataset: count for dataset, count in sorted(remaining.items()) if count}
    held = left or any(count for what, count in removed.items() if what != "bytes")
    return {"method": "deleted" if held else "not held", "started_at": data.get("started_at"),
            "finished_at": data.get("finished_at"), "removed": removed,
            "verification": {"remaining": remaining},
            "status": "erased_with_exceptions" if left else "erased",
            "exception": f"{name}: {sum(left.values())} records remain after the erase ("
                         + ", ".join(f"{dataset}: {count}" for dataset, count in left.items()) + ")"
            if left else None}


def _backups(cited: list[Event]) -> dict[str, Any]:
    """Deleted when the snapshots were purged; else crypto-shredded once every tenant key is destroyed."""
    purged = [event for _, event in cited if event["action"] == "backups.purged"]
    if purged:
        return _erase("backups", purged[-1])
    shredded = [event for _, event in cited if event["action"] == "tenant_key.destroyed"]
    created = {event["data"]["version"] for _, event in cited if event["action"] == "tenant_key.created"}
    live = sorted(created - {event["data"]["version"] for event in shredded})
    times = sorted(event["occurred_at"] for event in shredded)
    return {"method": "crypto-shredded", "started_at": times[0], "finished_at": times[-1],
            "removed": {"keys": len(shredded)}, "verification": {"remaining": {"keys": len(live)}},
            "status": "erased_with_exceptions" if live else "erased",
            "exception": f"backups: tenant key versions {', '.join(map(str, live))} were never destroyed, "
                         "so backups encrypted with them stay readable" if live else None}


def _retained(hold: Event, anchor: int, systems: list[dict[str, Any]]) -> dict[str, Any]:
    index, event = hold
    if event["action"] != "hold.placed" or index >= anchor:
        raise CertificateError(f"event {index} is not a legal hold placed before the purge")
    data = event["data"]
    hold, reason, matter = data["hold_id"], data.get("reason"), data.get("matter")
    where = [s["name"] for s in systems if s["status"] != "erased"]
    return {"why": "legal hold", "hold_id": hold, "reason": reason, "matter": matter,
            "legal_basis": data.get("legal_basis") or HOLD_BASIS, "placed_at": event["occurred_at"],
            "systems": where, "events": [index],
            "exception": f"data in {', '.join(where) or 'the systems in scope'} was retained under legal "
                         f"hold {hold} (reason: {reason}; matter: {matter})"}


# --- verifying (offline: no database, no network, no configuration) -------------------------------


def verify(envelope: str | bytes | Mapping[str, Any], public_keys: Mapping[str, bytes]) -> dict[str, Any]:
    """The certificate's payload once its signature, its checkpoint, every inclusion proof and every
    claim check out against ``public_keys`` (key id -> raw Ed25519 key); CertificateError naming
    the first thing that does not."""
    if not isinstance(envelope, str | bytes | Mapping):
        raise CertificateError(f"an envelope is JSON text or an object, not {type(envelope).__name__}")
    document = envelope if isinstance(envelope, Mapping) else _json(envelope, "the envelope", canonical=False)
    if not isinstance(document, Mapping) or set(document) != {"payload", "payloadType", "signatures"}:
        raise CertificateError("the envelope is not a DSSE envelope (payload, payloadType, signatures)")
    if document["payloadType"] != PAYLOAD_TYPE:
        raise CertificateError(f"payload type {document['payloadType']!r} is not {PAYLOAD_TYPE!r}")
    body = _b64decode(document["payload"], "the payload")
    signers = _check_signatures(document["signatures"], _pae(PAYLOAD_TYPE, body), public_keys)
    payload = _json(body, "the payload")
    for name, kind in _FIELDS.items():
        if not isinstance(payload, dict) or name not in payload or not isinstance(payload[name], kind) \
                or isinstance(payload[name], bool):
            raise CertificateError(f"payload field {name} is missing or of the wrong type")
    if set(payload) != set(_FIELDS):
        raise CertificateError(f"payload fields {sorted(set(payload) - set(_FIELDS))} are unknown")
    if payload["kind"] not in KINDS or payload["key_id"] not in signers:
        raise CertificateError(f"payload field kind {payload['kind']!r} or key_id {payload['key_id']} is "
                               f"wrong: signed by key {', '.join(signers)}")
    try:
        uuid.UUID(payload["certificate_id"])
        datetime.fromisoformat(payload["issued_at"])
    except ValueError:
        raise CertificateError("payload field certificate_id is not a UUID, or issued_at not an ISO 8601 "
                               "time") from None
    leaves = _check_evidence(payload, public_keys)
    try:
        _check_claims(payload, leaves)
    except CertificateError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise CertificateError(f"a payload field is malformed: {error!r}") from None
    return payload


def _check_signatures(signatures: object, pae: bytes, public_keys: Mapping[str, bytes]) -> list[str]:
    """The ids of the keys that signed: every signature by a known key must verify, one at least."""
    if not isinstance(signatures, list) or not all(isinstance(s, dict) for s in signatures):
        raise CertificateError("the envelope's signatures are not a list of signatures")
    good = []
    for item in signatures:
        if not isinstance(item.get("keyid"), str) or item["keyid"] not in public_keys:
            continue  # another party's signature: not ours to judge
        try:
            Ed25519PublicKey.from_public_bytes(public_keys[item["keyid"]]).verify(
                _b64decode(item.get("sig"), "a signature"), pae)
        except (InvalidSignature, ValueError):
            raise CertificateError(f"bad signature by key {item['keyid']}") from None
        good.append(item["keyid"])
    if not good:
        signers = [s.get("keyid") for s in signatures]
        raise CertificateError(f"no signature by a known key (signed by {signers}; known: "
                               f"{', '.join(public_keys) or 'none'})")
    return good


def _check_evidence(payload: dict[str, Any], public_keys: Mapping[str, bytes]) -> dict[int, dict[str, Any]]:
    """Index -> event of every evidence event, each proved in the signed checkpoint and about the
    certificate's tenant."""
    evidence = payload["evidence"]
    if set(evidence) != {"checkpoint", "events"} or not isinstance(evidence["events"], list):
        raise CertificateError("payload field evidence must hold exactly checkpoint and events")
    try:
        head = notes.parse_checkpoint(
            notes.verify_note(evidence["checkpoint"], keys.note_verifiers(payload["issuer"], public_keys)))
    except ValueError as error:
        raise CertificateError(f"the checkpoint signature does not verify: {error}") from None
    if head.origin != payload["issuer"]:
        raise CertificateError(f"the checkpoint is of log {head.origin!r}, not of {payload['issuer']!r}")
    leaves: dict[int, dict[str, Any]] = {}
    for item in evidence["events"]:
        if not isinstance(item, dict) or set(item) != {"index", "leaf", "proof"} \
                or type(item["index"]) is not int or item["index"] in leaves \
                or not isinstance(item["leaf"], str) or not isinstance(item["proof"], list):
            raise CertificateError("an evidence event is not one {index, leaf, proof} of an index of its own")
        index = item["index"]
        try:
            leaf = item["leaf"].encode()
            path = [_b64decode(value, "a proof hash") for value in item["proof"]]
            proofs.verify_inclusion(proofs.leaf_hash(leaf), index, head.size, path, head.root)
        except ValueError as error:  # ProofError, CertificateError, UnicodeEncodeError
            raise CertificateError(f"the inclusion proof of event {index} does not verify against the "
                                   f"checkpoint of {head.size} events: {error}") from None
        event = _json(leaf, f"the leaf of event {index}")
        if not isinstance(event, dict) or not isinstance(event.get("data"), dict) \
                or not isinstance(event.get("action"), str):
            raise CertificateError(f"the leaf of event {index} is not an audit event")
        if type(event.get("tenant_id")) is not int or event["tenant_id"] != payload["tenant_id"]:
            raise CertificateError(f"event {index} is about tenant {event.get('tenant_id')}, not tenant "
                                   f"{payload['tenant_id']}")
        leaves[index] = event
    return leaves


def _check_claims(payload: dict[str, Any], leaves: dict[int, dict[str, Any]]) -> None:
    """Rebuild every claim from the events each cites: it must be exactly what the payload says."""
    used: set[int] = set()

    def cited(indices: list[int], what: str) -> list[Event]:
        if not isinstance(indices, list) or not indices or any(index not in leaves for index in indices):
            raise CertificateError(f"{what} cites events {indices!r} its evidence does not hold")
        used.update(indices)
        return [(index, leaves[index]) for index in indices]

    kind, systems = payload["kind"], []
    for entry in payload["systems"]:
        head = {"system": entry["system"]}
        if entry["system"] == "source":
            head["source_id"] = entry["source_id"]
        systems.append((head, cited(entry["events"], f"the {entry['system']} entry")))
    types = sorted(head["system"] for head, _ in systems if head["system"] != "source" or kind == "backups")
    sources = [head["source_id"] for head, _ in systems if head["system"] == "source"]
    if types != (["backups"] if kind == "backups" else ["bundle_store", "staging"]) \
            or len(set(sources)) != len(sources):
        raise CertificateError(f"the systems of a {kind} certificate must be the backups, or the bundle "
                               "store, staging and each source once")
    holds = [cited(entry["events"], "a retained entry") for entry in payload["retained"]]
    if any(len(events) != 1 for events in holds):
        raise CertificateError("each retained entry must rest on the one event that placed its hold")
    claims = _assess(kind, systems, cited([payload["purge_event"]], "the purge")[0], [e for [e] in holds])
    for name, value in claims.items():
        if rfc8785.dumps(payload[name]) != rfc8785.dumps(value):
            raise CertificateError(f"payload field {name} is not what the events it cites say")
    if used != set(leaves):
        raise CertificateError(f"evidence events {sorted(set(leaves) - used)} are cited by nothing")


def load_public_keys(path: Path) -> dict[str, bytes]:
    """Key id -> raw public key from a JWKS file (as served at /.well-known/offboard/keys), a JWK,
    or a PEM Ed25519 public key; ValueError naming what is wrong."""
    data = Path(path).read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path} does not hold an Ed25519 public key")
        raw = key.public_bytes_raw()
        return {keys.key_id_of(raw): raw}
    document = _json(data, str(path), canonical=False)
    found = document.get("keys") if isinstance(document, dict) and "keys" in document else [document]
    if not isinstance(found, list) or not found:
        raise ValueError(f"{path} holds no keys")
    return dict(keys.public_key_from_jwk(jwk) for jwk in found)


# --- encodings ---------------------------------------------------------------------------------


def _pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature is over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64decode(value: object, what: str) -> bytes:
    """Standard base64, canonical only, so one byte string has one accepted spelling."""
    try:
        decoded = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except (binascii.Error, ValueError):
        decoded = None
    if decoded is None or _b64encode(decoded) != value:
        raise CertificateError(f"{what} is not canonical base64")
    return decoded


def _json(data: str | bytes, what: str, *, canonical: bool = True) -> Any:
    """Parsed JSON with no repeated key; with ``canonical``, exactly its RFC 8785 form too, so that
    it has one reading and one spelling."""
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({name for name, _ in pairs}) != len(pairs):
            raise CertificateError(f"{what} repeats a key")
        return dict(pairs)

    try:
        value = json.loads(data, object_pairs_hook=unique)
        exact = not canonical or rfc8785.dumps(value) == (data if isinstance(data, bytes) else data.encode())
    except CertificateError:
        raise
    except (ValueError, UnicodeError, RecursionError) as error:
        raise CertificateError(f"{what} is not valid JSON: {error}") from None
    if not exact:
        raise CertificateError(f"{what} is not canonical (RFC 8785) JSON")
    return value
