"""The audit API: events with filters, checkpoints on demand, proofs a client checks itself,
and the public signing keys."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import audit
from audit import keys, notes, proofs
from compliance import db

pytestmark = pytest.mark.usefixtures("session")


def b64(value: str) -> bytes:
    return base64.b64decode(value)


def seed(count: int = 12) -> None:
    for number in range(count):
        audit.record("test.event", actor="tester", tenant_id=1 + number % 2, request_id=number % 3 or None,
                     data={"n": number})
    db.session.commit()


def test_events_filtered_paginated_and_for_readers_only(client: Any, as_role: Any) -> None:
    seed()
    headers = as_role("auditor")
    url = "/api/v1/audit/events?tenant_id=2&action=test.event&limit=4"
    page = client.get(url, headers=headers).get_json()
    assert [event["data"]["n"] for event in page["items"]] == [11, 9, 7, 5]  # newest first
    rest = client.get(f"{url}&cursor={page['next_cursor']}", headers=headers).get_json()
    assert [event["data"]["n"] for event in rest["items"]] == [3, 1] and rest["next_cursor"] is None
    assert page["items"][0]["log_index"] is None  # queued until the sequencer runs
    by_request = client.get("/api/v1/audit/events?request_id=2&action=test.event",
                            headers=headers).get_json()
    assert sorted(event["data"]["n"] for event in by_request["items"]) == [2, 5, 8, 11]
    naive = client.get("/api/v1/audit/events?since=2026-01-01", headers=headers)
    assert naive.status_code == 422  # a time without its offset is ambiguous
    for role, status in (("legal", 200), ("admin", 200), ("csm", 403)):
        assert client.get("/api/v1/audit/events", headers=as_role(role)).status_code == status
    assert client.get("/api/v1/audit/events").status_code == 401


def test_checkpoint_on_demand_and_proofs_that_verify(client: Any, as_role: Any) -> None:
    headers = as_role("auditor")
    assert client.get("/api/v1/audit/checkpoints/latest", headers=headers).status_code == 404
    seed(5)
    first = client.post("/api/v1/audit/checkpoints", headers=headers)
    assert first.status_code == 201
    small = first.get_json()
    seed(9)
    created = client.post("/api/v1/audit/checkpoints", headers=headers).get_json()
    again = client.post("/api/v1/audit/checkpoints", headers=headers)
    assert again.status_code == 200 and again.get_json()["id"] == created["id"]
    latest = client.get("/api/v1/audit/checkpoints/latest", headers=headers).get_json()
    assert latest == created and latest["size"] > small["size"]

    # The client checks everything itself with the published key: note, inclusion, consistency.
    jwks = client.get("/.well-known/offboard/keys").get_json()
    published = dict(keys.public_key_from_jwk(jwk) for jwk in jwks["keys"])
    text = notes.verify_note(latest["note"], keys.note_verifiers(latest["origin"], published))
    head = notes.parse_checkpoint(text)
    assert head.size == latest["size"] and head.root == b64(latest["root_hash"])
    for index in (0, 3, latest["size"] - 1):
        answer = client.get(f"/api/v1/audit/proof/inclusion?index={index}", headers=headers).get_json()
        leaf = proofs.leaf_hash(answer["event"]["canonical"].encode())
        assert leaf == b64(answer["leaf_hash"]) and answer["event"]["log_index"] == index
        proofs.verify_inclusion(leaf, index, head.size, [b64(h) for h in answer["proof"]], head.root)
        assert answer["checkpoint"]["id"] == latest["id"]
    answer = client.get(f"/api/v1/audit/proof/consistency?from={small['size']}&to={head.size}",
                        headers=headers).get_json()
    proofs.verify_consistency(small["size"], head.size, b64(small["root_hash"]), head.root,
                              [b64(h) for h in answer["proof"]])
    assert b64(answer["from_root_hash"]) == b64(small["root_hash"])


@pytest.mark.parametrize(("query", "field"), [
    ("index=99", "index"), ("index=0&size=999", "size"), ("index=-1", "index"), ("index=x", "index"),
    ("size=3", "index"),
])
def test_inclusion_rejects_what_is_not_in_the_log(client: Any, as_role: Any, query: str, field: str) -> None:
    seed(4)
    headers = as_role("auditor")
    client.post("/api/v1/audit/checkpoints", headers=headers)
    answer = client.get(f"/api/v1/audit/proof/inclusion?{query}", headers=headers)
    assert answer.status_code == 422
    assert field in answer.get_json()["errors"]["query"]


def test_consistency_rejects_bad_sizes(client: Any, as_role: Any) -> None:
    seed(4)
    headers = as_role("auditor")
    client.post("/api/v1/audit/checkpoints", headers=headers)
    for query, field in (("from=3&to=2", "from"), ("from=0&to=2", "from"), ("from=1&to=50", "size")):
        answer = client.get(f"/api/v1/audit/proof/consistency?{query}", headers=headers)
        assert answer.status_code == 422, query
        assert field in answer.get_json()["errors"]["query"], query


def test_public_keys_are_jwks_and_survive_rotation(client: Any, settings: Any) -> None:
    before = client.get("/.well-known/offboard/keys")
    assert before.status_code == 200 and "max-age" in before.headers["Cache-Control"]
    old = before.get_json()["keys"]
    assert {(jwk["kty"], jwk["crv"], jwk["alg"]) for jwk in old} == {("OKP", "Ed25519", "EdDSA")}
    rotated = keys.rotate(settings)
    after = client.get("/.well-known/offboard/keys").get_json()["keys"]
    assert after[0]["kid"] == rotated.key_id
    assert {jwk["kid"] for jwk in old} <= {jwk["kid"] for jwk in after}
    raw = keys.public_key_from_jwk(after[0])[1]
    Ed25519PublicKey.from_public_bytes(raw).verify(rotated.private.sign(b"x"), b"x")
