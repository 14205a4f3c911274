"""The customer's side of delivery, in process: ``/d/<token>`` and ``/d/<token>/bundle.zip``.

Every test starts from a ready export of a demo source (a tenant, a small demo
SourceConfig, a request acknowledged, verified and approved, POST /exports, the jobs run),
then issues links through the API and plays the customer with the test client.
Every download call goes through ``attempt``, which also checks that it wrote
exactly one ``download.*`` audit event.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from compliance import config, db
from compliance.db import Base
from compliance.models import AuditEvent, DownloadLink, Export, OutboxMessage
from exporters import crypto, delivery, keys, links
from exporters.storage import open_storage

DAY = 24 * 3600
ACCOUNT = "Download Test GmbH"
OWNER = "csm-owner@offboard.example"
RECIPIENT = "it@customer.example"
AGENT = "pytest-customer/1.0"


@dataclass(frozen=True)
class Ready:
    export_id: int
    tenant_id: int
    request_id: int
    sha256: str
    size: int
    manifest: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True)
class Link:
    id: int
    url: str
    token: str

    @property
    def page(self) -> str:
        return f"/d/{self.token}"

    @property
    def bundle(self) -> str:
        return f"/d/{self.token}/bundle.zip"


@pytest.fixture(autouse=True)
def _frozen(clock):  # type: ignore[no-untyped-def]
    """Every test runs on the frozen clock, so expiry and clock skew are exact."""
    return clock


def approved_demo_request(client: FlaskClient, headers: dict[str, str], state_dir: Path, *,
                          ref: str = "dl-acct", rows: int = 2000) -> tuple[int, int]:
    """A tenant with one small demo source and an approved request; (tenant id, request id)."""
    tenant = client.post("/api/v1/tenants", headers=headers,
                         json={"external_ref": ref, "name": ACCOUNT, "region": "DE"})
    assert tenant.status_code == 201, tenant.get_json()
    tenant_id = tenant.get_json()["id"]
    source = client.post("/api/v1/sources", headers=headers, json={
        "kind": "demo", "name": "demo-src", "tenant_id": tenant_id,
        "config": {"rows": rows, "state_dir": str(state_dir)}})
    assert source.status_code == 201, source.get_json()
    request = client.post("/api/v1/requests", headers=headers, json={
        "tenant_id": tenant_id, "requested_by": "cfo@customer.example", "channel": "email",
        "churn_reason": "price", "owner": OWNER})
    assert request.status_code == 201, request.get_json()
    request_id = request.get_json()["id"]
    for action, body in (("acknowledge", {}), ("verify", {"note": "intended"}), ("approve", {})):
        assert client.post(f"/api/v1/requests/{request_id}/{action}", headers=headers,
                           json=body).status_code == 200
    return tenant_id, request_id


@pytest.fixture
def ready(client: FlaskClient, as_role: Callable[[str], dict[str, str]], work: Callable[[], None],
          tmp_path: Path) -> Ready:
    headers = as_role("csm")
    tenant_id, request_id = approved_demo_request(client, headers, tmp_path / "demo")
    started = client.post(f"/api/v1/requests/{request_id}/exports", json={}, headers=headers)
    assert started.status_code == 202, started.get_json()
    work()
    export = client.get(f"/api/v1/exports/{started.get_json()['id']}", headers=headers).get_json()
    assert export["status"] == "ready", export
    return Ready(export["id"], tenant_id, request_id, export["bundle_sha256"], export["bundle_bytes"],
                 export["manifest"], headers)


def issue(client: FlaskClient, ready: Ready, **body: Any) -> Link:
    answer = client.post(f"/api/v1/exports/{ready.export_id}/links", headers=ready.headers,
                         json={"recipient": RECIPIENT, **body})
    assert answer.status_code == 201, answer.get_json()
    return link_of(answer.get_json())


def link_of(answer: dict[str, Any]) -> Link:
    match = re.fullmatch(re.escape(config.current().public_url) + r"/d/([^/?#]+)", answer["url"])
    assert match, answer["url"]
    return Link(answer["id"], answer["url"], match.group(1))


def download_events() -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action.like("download.%"))) or 0


def last_download_event() -> AuditEvent:
    return db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("download.%"))
                              .order_by(AuditEvent.id.desc()).limit(1)).one()


def attempt(client: FlaskClient, path: str, method: str = "GET", **headers: str) -> TestResponse:
    """One customer call, its body read to the end; it must write exactly one download.* event."""
    before = download_events()
    response = client.open(path, method=method, headers={"User-Agent": AGENT, **headers})
    response.get_data()  # stream it all: the event is committed before the first byte
    response.close()
    assert download_events() == before + 1, f"{method} {path}: not exactly one audit event"
    return response


def downloads(link_id: int) -> int:
    return db.session.scalar(select(DownloadLink.downloads).where(DownloadLink.id == link_id))  # type: ignore[return-value]


def alarms() -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == "alarm.bundle_integrity")
                                   .order_by(AuditEvent.id)))


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def assert_private(response: TestResponse) -> None:
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def cells_containing(needle: str) -> list[tuple[str, str]]:
    """Every (table, column) of the whole database whose value contains ``needle``."""
    hits = []
    for table in Base.metadata.sorted_tables:
        for row in db.session.execute(select(table)).mappings():
            for column, value in row.items():
                if value is None:
                    continue
                shown = value.hex() if isinstance(value, bytes) else (
                    json.dumps(value) if isinstance(value, dict | list) else str(value))
                if needle in shown:
                    hits.append((table.name, column))
    return hits


def sums_verify(data: bytes) -> set[str]:
    """``sha256sum -c SHA256SUMS`` on the bundle: returns the names it checked."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        names = set(archive.namelist())
        lines = archive.read("SHA256SUMS").decode().splitlines()
        checked = set()
        for line in lines:
            digest, name = line.split("  ", 1)
            assert hashlib.sha256(archive.read(name)).hexdigest() == digest, name
            checked.add(name)
    assert checked == names - {"SHA256SUMS"}
    return checked


def flip(text_: str, index: int) -> str:
    """``text_`` with one character changed (base64 alphabet, so it still decodes)."""
    replacement = "B" if text_[index] != "B" else "C"
    return text_[:index] + replacement + text_[index + 1:]


# --- issuing ------------------------------------------------------------------------------------


def test_issue_answers_the_url_once_and_the_token_is_stored_nowhere(client, ready) -> None:  # type: ignore[no-untyped-def]
    answer = client.post(f"/api/v1/exports/{ready.export_id}/links", headers=ready.headers,
                         json={"recipient": RECIPIENT, "max_downloads": 3, "expires_in": 2 * DAY})
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    link = link_of(body)
    assert f"/d/{link.token}" in body["url"]
    assert body["bundle_sha256"] == ready.sha256 and body["downloads"] == 0 and body["max_downloads"] == 3
    assert body["export_id"] == ready.export_id and body["recipient"] == RECIPIENT
    key_id, _payload, signature = link.token.split(".")

    row = db.session.get(DownloadLink, link.id)
    assert row is not None and row.signing_key_id == key_id
    assert link.token not in json.dumps({c.name: str(getattr(row, c.name)) for c in DownloadLink.__table__.c})

    # The email carries the link, in its text and HTML parts (that is how it reaches the customer) ...
    message = db.session.scalars(select(OutboxMessage).where(OutboxMessage.recipient == RECIPIENT)).one()
    assert link.url in message.body and message.meta == {"link_id": link.id} and message.status == "pending"
    assert f'href="{link.url}"' in message.html  # type: ignore[operator]
    # ... and nothing else in the database does, not even after the customer used it.
    attempt(client, link.page)
    attempt(client, link.bundle)
    attempt(client, f"/d/{flip(link.token, len(link.token) - 10)}")
    for secret in (link.token, signature):
        assert cells_containing(secret) == [("outbox_messages", "body"), ("outbox_messages", "html")], secret
    events = db.session.scalars(select(AuditEvent)).all()
    assert not any(link.token in event.canonical or signature in event.canonical for event in events)
    listed = client.get(f"/api/v1/exports/{ready.export_id}/links", headers=ready.headers).get_json()
    assert "url" not in listed["items"][0]


def test_who_may_issue_and_what_is_refused(client, ready, as_role, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = f"/api/v1/exports/{ready.export_id}/links"
    auditor = as_role("auditor")
    assert client.post(path, headers=auditor, json={"recipient": RECIPIENT}).status_code == 403
    assert client.get(path, headers=auditor).status_code == 200  # auditors may read the history
    too_long = client.post(path, headers=ready.headers,
                           json={"recipient": RECIPIENT, "expires_in": 30 * DAY + 1})
    assert too_long.status_code == 422, too_long.get_json()
    assert client.post(path, headers=ready.headers,
                       json={"recipient": RECIPIENT, "expires_in": 30 * DAY}).status_code == 201
    assert client.post(path, headers=ready.headers,
                       json={"recipient": RECIPIENT, "expires_in": 299}).status_code == 422
    assert client.post(path, headers=ready.headers,
                       json={"recipient": "not-an-email"}).status_code == 422
    for field, value in (("max_downloads", 1.5), ("expires_in", 3600.5)):  # refused, not truncated
        fractional = client.post(path, headers=ready.headers, json={"recipient": RECIPIENT, field: value})
        assert fractional.status_code == 422
        assert field in fractional.get_json()["errors"]["json"]
    assert client.post("/api/v1/exports/999999/links", headers=ready.headers,
                       json={"recipient": RECIPIENT}).status_code == 404
    assert client.post(f"/api/v1/links/{999999}/revoke", headers=ready.headers).status_code == 404
    assert client.post(f"/api/v1/links/{999999}/reissue", headers=ready.headers).status_code == 404

    # An export that has not run yet (another tenant, its export only queued) is not ready: 409.
    _, request_id = approved_demo_request(client, ready.headers, tmp_path / "demo2", ref="dl-pending", rows=5)
    pending = client.post(f"/api/v1/requests/{request_id}/exports", json={}, headers=ready.headers).get_json()
    answer = client.post(f"/api/v1/exports/{pending['id']}/links", headers=ready.headers,
                         json={"recipient": RECIPIENT})
    assert answer.status_code == 409, answer.get_json()
    assert "not ready" in answer.get_json()["message"]
    assert db.session.scalar(select(func.count()).select_from(DownloadLink)
                             .where(DownloadLink.export_id == pending["id"])) == 0


# --- the page and the bundle --------------------------------------------------------------------


def test_page_shows_the_export_and_how_to_check_it(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready, max_downloads=4)
    page = attempt(client, link.page)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert_private(page)
    html = text(page)
    assert ACCOUNT in html and ready.sha256 in html
    assert re.search(r"Downloads left</dt><dd>4 of 4</dd>", html)
    assert ready.manifest["files"] and all(f["path"] in html and f["sha256"] in html
                                           for f in ready.manifest["files"])
    assert f"/d/{link.token}/bundle.zip" in html and OWNER in html
    event = last_download_event()
    assert (event.action, event.subject_type, event.subject_id) == ("download.page", "link", str(link.id))
    assert event.data == {"outcome": "ok", "ip": "127.0.0.1", "user_agent": AGENT}
    assert event.tenant_id == ready.tenant_id and event.request_id == ready.request_id
    assert downloads(link.id) == 0  # looking at the page is not a download


def test_bundle_is_the_export_byte_for_byte_and_its_sums_verify(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready)
    response = attempt(client, link.bundle)
    assert response.status_code == 200
    assert_private(response)
    data = response.get_data()
    assert response.headers["Content-Length"] == str(len(data)) == str(ready.size)
    assert response.headers["ETag"] == f'"{ready.sha256}"'
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Content-Type"] == "application/zip"
    disposition = f'attachment; filename="dl-acct-export-{ready.export_id}.zip"'
    assert response.headers["Content-Disposition"] == disposition
    assert "Content-Range" not in response.headers
    assert hashlib.sha256(data).hexdigest() == ready.sha256
    assert {"README.txt", "manifest.json", "report.pdf"} <= sums_verify(data)
    assert downloads(link.id) == 1
    assert last_download_event().data["outcome"] == "ok"


def test_head_has_the_headers_no_body_and_does_not_count(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready, max_downloads=1)
    for _ in range(3):
        head = attempt(client, link.bundle, method="HEAD")
        assert head.status_code == 200 and head.get_data() == b""
        assert head.headers["Content-Length"] == str(ready.size)
        assert head.headers["ETag"] == f'"{ready.sha256}"' and head.headers["Accept-Ranges"] == "bytes"
        assert_private(head)
        assert last_download_event().action == "download.head"
    assert downloads(link.id) == 0
    assert attempt(client, link.bundle).status_code == 200  # the one download is still there
    assert downloads(link.id) == 1


def test_ranges_serve_exactly_the_asked_bytes_and_resumes_do_not_count(client, ready) -> None:  # type: ignore[no-untyped-def]
    # Ranges are charged to the byte budget (quota x size), so leave room for the ones below.
    link = issue(client, ready, max_downloads=9)
    whole = attempt(client, link.bundle).get_data()
    size = len(whole)
    assert size == ready.size and size > 3 * 65536 + 200  # several 64 KiB segments of ciphertext
    assert downloads(link.id) == 1

    def ranged(spec: str, **extra: str) -> TestResponse:
        return attempt(client, link.bundle, Range=spec, **extra)

    first = ranged("bytes=0-99")
    assert first.status_code == 206 and first.get_data() == whole[:100]
    assert first.headers["Content-Range"] == f"bytes 0-99/{size}" and first.headers["Content-Length"] == "100"
    assert first.headers["ETag"] == f'"{ready.sha256}"'
    assert_private(first)
    assert last_download_event().data["outcome"] == "range 0-99"

    suffix = ranged("bytes=-100")
    assert suffix.status_code == 206 and suffix.get_data() == whole[-100:]
    assert suffix.headers["Content-Range"] == f"bytes {size - 100}-{size - 1}/{size}"

    rest = ranged("bytes=100-")
    assert rest.status_code == 206 and rest.get_data() == whole[100:]
    assert rest.headers["Content-Range"] == f"bytes 100-{size - 1}/{size}"
    assert rest.headers["Content-Length"] == str(size - 100)

    across = ranged("bytes=65530-131080")  # spans two segment boundaries of the ciphertext
    assert across.status_code == 206 and across.get_data() == whole[65530:131081]

    clamped = ranged(f"bytes={size - 10}-{size + 500}")
    assert clamped.status_code == 206 and clamped.get_data() == whole[-10:]
    assert clamped.headers["Content-Range"] == f"bytes {size - 10}-{size - 1}/{size}"

    big_suffix = ranged(f"bytes=-{size + 50}")
    assert big_suffix.status_code == 206 and big_suffix.get_data() == whole

    right_etag = ranged("bytes=0-9", **{"If-Range": f'"{ready.sha256}"'})
    assert right_etag.status_code == 206 and right_etag.get_data() == whole[:10]
    assert downloads(link.id) == 1  # none of the ranges after a full download counted

    for past in (f"bytes={size}-", f"bytes={size + 1000}-{size + 2000}", "bytes=-0"):
        refused = ranged(past)
        assert refused.status_code == 416, past
        assert refused.headers["Content-Range"] == f"bytes */{size}" and refused.get_data() == b""
        assert last_download_event().data["outcome"] == "range_not_satisfiable"
    assert downloads(link.id) == 1

    stale = ranged("bytes=0-99", **{"If-Range": '"0000"'})
    assert stale.status_code == 200 and stale.get_data() == whole
    assert "Content-Range" not in stale.headers
    assert downloads(link.id) == 2  # the whole file again: that is a download

    for odd in ("bytes=0-9,20-29", "items=0-9", "bytes=50-10"):
        full = ranged(odd)
        assert full.status_code == 200 and full.get_data() == whole, odd
    assert downloads(link.id) == 5


def test_a_first_request_by_range_counts_once(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready)
    part = attempt(client, link.bundle, Range="bytes=0-999")
    assert part.status_code == 206 and downloads(link.id) == 1
    rest = attempt(client, link.bundle, Range="bytes=1000-")
    assert rest.status_code == 206 and downloads(link.id) == 1
    assert hashlib.sha256(part.get_data() + rest.get_data()).hexdigest() == ready.sha256


# --- refusals -----------------------------------------------------------------------------------


def test_tampered_and_unknown_tokens_are_404_with_one_event_each(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready)
    key_id, payload, signature = link.token.split(".")
    forged = {
        "signature": f"{key_id}.{payload}.{flip(signature, 0)}",
        "signature end": f"{key_id}.{payload}.{flip(signature, len(signature) - 2)}",
        "payload": f"{key_id}.{flip(payload, 0)}.{signature}",
        "payload nonce": f"{key_id}.{flip(payload, 30)}.{signature}",
        "key id": f"{key_id[:-1]}{'a' if key_id[-1] != 'a' else 'b'}.{payload}.{signature}",
        "key id path": f"..{key_id}.{payload}.{signature}",
        "two parts": f"{key_id}.{payload}",
        "four parts": f"{link.token}.x",
        "too long": f"{key_id}.{payload}.{signature}{'A' * 200}",
        "garbage": "hello",
        "non-ascii": f"{key_id}.{payload}.{signature[:-1]}é",
    }
    for name, token in forged.items():
        for path in (f"/d/{token}", f"/d/{token}/bundle.zip"):
            response = attempt(client, path)
            assert response.status_code == 404, (name, path)
            assert "Link not found" in text(response) and ready.sha256 not in text(response), name
            assert_private(response)
            event = last_download_event()
            assert event.subject_type is None and event.subject_id is None and event.tenant_id is None, name
            assert event.data["outcome"] in {"malformed", "unknown", "bad_signature"}, (name, event.data)
            assert event.data["ip"] == "127.0.0.1" and event.data["user_agent"] == AGENT
    assert downloads(link.id) == 0
    assert attempt(client, link.bundle).status_code == 200  # the real token still works


def test_a_validly_signed_token_for_a_link_that_does_not_exist_is_404(client, ready) -> None:  # type: ignore[no-untyped-def]
    export = db.session.get(Export, ready.export_id)
    nested = db.session.begin_nested()
    ghost = links.issue(export, recipient=RECIPIENT, expires_in=timedelta(days=1), max_downloads=1,
                        actor="test")
    ghost_id = ghost.link.id
    nested.rollback()
    assert db.session.get(DownloadLink, ghost_id) is None
    for path in (f"/d/{ghost.token}", f"/d/{ghost.token}/bundle.zip"):
        response = attempt(client, path)
        assert response.status_code == 404 and "Link not found" in text(response)
        assert last_download_event().data["outcome"] == "unknown"


def test_expired_link_is_gone(client, ready, clock) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready, expires_in=3600)
    clock.advance(timedelta(minutes=59, seconds=59))
    assert attempt(client, link.page).status_code == 200
    clock.advance(timedelta(seconds=1))
    for path in (link.page, link.bundle):
        response = attempt(client, path)
        assert response.status_code == 410, path
        assert "expired" in text(response) and OWNER in text(response)
        assert_private(response)
        assert last_download_event().data["outcome"] == "expired"
        assert last_download_event().subject_id == str(link.id)
    assert attempt(client, link.bundle, method="HEAD").status_code == 410
    assert downloads(link.id) == 0


def test_revoked_link_is_gone(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready)
    assert attempt(client, link.page).status_code == 200
    revoked = client.post(f"/api/v1/links/{link.id}/revoke", headers=ready.headers)
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"] is not None
    assert revoked.get_json()["revoked_by"].startswith("apikey:")
    for path in (link.page, link.bundle):
        response = attempt(client, path)
        assert response.status_code == 410 and "withdrawn" in text(response)
        assert last_download_event().data["outcome"] == "revoked"
    for spec in ("bytes=0-99", "bytes=-10"):
        assert attempt(client, link.bundle, Range=spec).status_code == 410
    again = client.post(f"/api/v1/links/{link.id}/revoke", headers=ready.headers).get_json()
    assert again["revoked_at"] == revoked.get_json()["revoked_at"]  # revoking twice changes nothing
    assert downloads(link.id) == 0


def test_exhausted_link_is_gone(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready, max_downloads=2)
    for left in (1, 0):
        assert attempt(client, link.bundle).status_code == 200
        assert downloads(link.id) == 2 - left
    third = attempt(client, link.bundle)
    assert third.status_code == 410 and "used up" in text(third)
    assert third.headers["Content-Type"].startswith("text/html") and b"PK" not in third.get_data()[:2]
    assert last_download_event().data["outcome"] == "exhausted"
    page = attempt(client, link.page)
    assert page.status_code == 410 and "used up" in text(page)
    assert downloads(link.id) == 2


def test_an_exhausted_link_does_not_serve_the_whole_file_by_range(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready, max_downloads=1)
    assert attempt(client, link.bundle).status_code == 200
    assert attempt(client, link.bundle).status_code == 410
    for spec in ("bytes=0-", "bytes=1-", "bytes=-1000"):
        response = attempt(client, link.bundle, Range=spec)
        assert response.status_code == 410, f"{spec}: the file again, beyond the link's byte budget"


def test_a_token_from_the_future_is_404(client, ready, clock) -> None:  # type: ignore[no-untyped-def]
    issued_at = clock.now()
    link = issue(client, ready)
    clock.freeze(issued_at - timedelta(seconds=59))  # within the allowed skew
    assert attempt(client, link.page).status_code == 200
    clock.freeze(issued_at - timedelta(minutes=1, seconds=1))
    for path in (link.page, link.bundle):
        response = attempt(client, path)
        assert response.status_code == 404 and "Link not found" in text(response)
        assert last_download_event().data["outcome"] == "future_dated"
    assert downloads(link.id) == 0


# --- integrity and deletion ---------------------------------------------------------------------


def test_a_link_whose_hash_no_longer_matches_serves_nothing_and_raises_an_alarm(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready)
    row = db.session.get(DownloadLink, link.id)
    row.bundle_sha256 = hashlib.sha256(b"another bundle").hexdigest()
    db.session.commit()
    for number, path in enumerate((link.page, link.bundle, link.bundle), start=1):
        response = attempt(client, path)
        assert response.status_code == 503, path
        assert response.headers["Content-Type"].startswith("text/html")
        assert "integrity check" in text(response) and not response.get_data().startswith(b"PK")
        assert_private(response)
        assert last_download_event().data["outcome"] == "integrity_failure"
        assert len(alarms()) == number
    alarm = alarms()[-1]
    assert (alarm.actor, alarm.subject_type, alarm.subject_id) == ("system", "export", str(ready.export_id))
    assert alarm.data == {"link_id": link.id, "expected_sha256": row.bundle_sha256}
    assert alarm.tenant_id == ready.tenant_id
    assert downloads(link.id) == 0


def test_a_swapped_stored_object_serves_nothing_and_raises_an_alarm(client, ready, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Someone re-sealed another ZIP, with the tenant's own key, under the export's storage name."""
    link = issue(client, ready)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("SHA256SUMS", "")
        archive.writestr("evil.txt", "not your data")
    sealed = tmp_path / "other.obx"
    delivery.seal(other, sealed, tenant_id=ready.tenant_id,
                  sha256=hashlib.sha256(other.read_bytes()).hexdigest(), actor="test")
    db.session.commit()
    export = db.session.get(Export, ready.export_id)
    open_storage(config.current().storage).publish(export.bundle_name, sealed)
    for path in (link.bundle, link.page):
        response = attempt(client, path)
        assert response.status_code == 503 and b"not your data" not in response.get_data()
    for spec in ("bytes=0-99", "bytes=-100"):
        assert attempt(client, link.bundle, Range=spec).status_code == 503
    assert len(alarms()) == 4
    assert downloads(link.id) == 0


def test_a_damaged_stored_object_serves_nothing_and_raises_an_alarm(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready)
    export = db.session.get(Export, ready.export_id)
    path = Path(config.current().storage) / export.bundle_name
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01  # one flipped bit in a middle segment's ciphertext
    path.write_bytes(bytes(damaged))
    status, broke = None, False
    try:
        response = client.get(link.bundle, headers={"User-Agent": AGENT})
        status = response.status_code
        response.get_data()
    except crypto.DecryptionError:
        broke = True  # the stream died after the status line and Content-Length went out
    assert (status, broke) == (503, False), f"answered {status}, stream broke: {broke}"
    assert len(alarms()) == 1 and downloads(link.id) == 0


def test_after_crypto_shredding_the_page_and_bundle_say_the_data_was_deleted(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready)
    assert attempt(client, link.page).status_code == 200
    assert keys.destroy_tenant_keys(ready.tenant_id, actor="test:retention") >= 1
    db.session.commit()
    for path, extra in ((link.page, {}), (link.bundle, {}), (link.bundle, {"Range": "bytes=0-99"})):
        response = attempt(client, path, **extra)
        assert response.status_code == 410, path
        assert "This data has been deleted" in text(response) and "permanently deleted" in text(response)
        assert not response.get_data().startswith(b"PK")
        assert last_download_event().data["outcome"] == "deleted"
    assert attempt(client, link.bundle, method="HEAD").status_code == 410
    assert downloads(link.id) == 0 and alarms() == []


def test_a_deleted_bundle_object_is_gone(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready)
    export = db.session.get(Export, ready.export_id)
    open_storage(config.current().storage).delete(export.bundle_name)
    for path in (link.page, link.bundle):
        response = attempt(client, path)
        assert response.status_code == 410 and "deleted" in text(response)


def test_downloads_are_rate_limited_per_ip_and_the_api_is_not(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready)
    for _ in range(60):
        assert attempt(client, f"/d/{flip(link.token, 50)}").status_code == 404
    before = download_events()
    limited = client.get(link.page)
    assert limited.status_code == 429 and ready.sha256 not in text(limited)
    assert_private(limited)
    assert download_events() == before  # refused before the view: no event, no database work
    other_ip = client.get(link.page, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other_ip.status_code == 200 and last_download_event().data["ip"] == "192.0.2.7"
    assert client.get(f"/api/v1/exports/{ready.export_id}/links", headers=ready.headers).status_code == 200


def test_the_rate_limit_is_shared_by_the_page_and_the_bundle(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready)
    for _ in range(60):
        assert attempt(client, f"/d/{flip(link.token, 50)}").status_code == 404
    assert client.get(link.page).status_code == 429
    assert client.get(link.bundle).status_code == 429


def test_a_token_is_accepted_only_as_issued(client, ready) -> None:  # type: ignore[no-untyped-def]
    link = issue(client, ready)
    key_id, payload, signature = link.token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    padding_bit = alphabet[alphabet.index(signature[-1]) ^ 1]  # 43 chars carry 32 bytes: 2 spare bits
    standard = signature.replace("-", "+").replace("_", "/")
    variants = {
        "stray characters": f"{key_id}.{payload}.{signature[:5]}!!{signature[5:]}",
        "spare bits": f"{key_id}.{payload}.{signature[:-1]}{padding_bit}",
        "standard alphabet": f"{key_id}.{payload}.{standard}" if "/" not in standard else None,
    }
    accepted = [name for name, token in variants.items()
                if token is not None and token != link.token and client.get(f"/d/{token}").status_code != 404]
    assert accepted == []


# --- revoke, reissue and history through the API ------------------------------------------------


def test_reissue_revokes_the_old_link_and_sends_a_working_new_one(client, ready) -> None:  # type: ignore[no-untyped-def]
    old = issue(client, ready, max_downloads=3, expires_in=2 * DAY)
    assert attempt(client, old.bundle).status_code == 200
    answer = client.post(f"/api/v1/links/{old.id}/reissue", headers=ready.headers)
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    new = link_of(body)
    assert new.id != old.id and new.token != old.token and body["replaces_id"] == old.id
    assert body["max_downloads"] == 3 and body["downloads"] == 0 and body["recipient"] == RECIPIENT
    assert body["bundle_sha256"] == ready.sha256
    old_row = db.session.get(DownloadLink, old.id)
    new_row = db.session.get(DownloadLink, new.id)
    assert old_row.revoked_at is not None
    assert new_row.expires_at - new_row.created_at == timedelta(days=2)

    assert attempt(client, old.page).status_code == 410
    assert attempt(client, old.bundle).status_code == 410
    page = attempt(client, new.page)
    assert page.status_code == 200 and "3 of 3" in text(page)
    assert hashlib.sha256(attempt(client, new.bundle).get_data()).hexdigest() == ready.sha256
    messages = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "export_ready")
                                  .order_by(OutboxMessage.id)).all()
    assert [m.meta["link_id"] for m in messages] == [old.id, new.id]
    assert new.url in messages[-1].body and old.url not in messages[-1].body
    actions = db.session.scalars(select(AuditEvent.action).where(
        AuditEvent.subject_type == "link", AuditEvent.action.like("link.%")).order_by(AuditEvent.id)).all()
    assert actions == ["link.issued", "link.revoked", "link.issued"]


def test_list_shows_each_links_history_and_never_the_token(client, ready, as_role) -> None:  # type: ignore[no-untyped-def]
    first = issue(client, ready)
    attempt(client, first.page)
    attempt(client, first.bundle)
    attempt(client, first.bundle, Range="bytes=0-9")
    attempt(client, first.bundle, method="HEAD")
    client.post(f"/api/v1/links/{first.id}/revoke", headers=ready.headers)
    attempt(client, first.page)
    second = issue(client, ready, max_downloads=1)
    attempt(client, f"/d/{flip(second.token, len(second.token) - 5)}")  # no link id: in no history

    answer = client.get(f"/api/v1/exports/{ready.export_id}/links", headers=as_role("auditor"))
    assert answer.status_code == 200
    raw = answer.get_data(as_text=True)
    assert first.token not in raw and second.token not in raw
    assert first.token.split(".")[2] not in raw and "/d/" not in raw
    items = answer.get_json()["items"]
    assert [item["id"] for item in items] == [first.id, second.id]
    assert all("url" not in item for item in items)
    history = items[0]["history"]
    assert [(h["action"], h["outcome"]) for h in history] == [
        ("download.page", "ok"), ("download.bundle", "ok"), ("download.bundle", "range 0-9"),
        ("download.head", "ok"), ("download.page", "revoked")]
    assert all(h["ip"] == "127.0.0.1" and h["user_agent"] == AGENT and h["at"] for h in history)
    assert items[0]["downloads"] == 1 and items[0]["revoked_at"] is not None
    assert items[1]["history"] == [] and items[1]["downloads"] == 0
    assert client.get("/api/v1/exports/999999/links", headers=ready.headers).status_code == 404


# --- logs ---------------------------------------------------------------------------------------


def access_lines(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "http_request"]


def test_logs_name_the_link_never_the_token(client, ready, capsys) -> None:  # type: ignore[no-untyped-def]
    from compliance.observability import configure_logging

    link = issue(client, ready)
    bad = f"/d/{flip(link.token, len(link.token) - 3)}"
    configure_logging("INFO")
    try:
        capsys.readouterr()
        attempt(client, link.page)
        attempt(client, link.bundle)
        attempt(client, link.bundle, Range="bytes=0-99")
        attempt(client, link.bundle, method="HEAD")
        attempt(client, bad)
        attempt(client, f"{bad}/bundle.zip")
        attempt(client, f"/d/{link.token}x")
        out = capsys.readouterr().out
    finally:
        with capsys.disabled():  # the handler must not keep capsys's buffer, closed after the test
            configure_logging("WARNING")
    _key_id, payload, signature = link.token.split(".")
    for secret in (link.token, payload, signature):
        assert secret not in out
    paths = [(line["method"], line["path"], line["status"]) for line in access_lines(out)]
    assert paths == [
        ("GET", f"/d/link-{link.id}", 200), ("GET", f"/d/link-{link.id}/bundle.zip", 200),
        ("GET", f"/d/link-{link.id}/bundle.zip", 206), ("HEAD", f"/d/link-{link.id}/bundle.zip", 200),
        ("GET", "/d/link-None", 404), ("GET", "/d/link-None/bundle.zip", 404), ("GET", "/d/link-None", 404)]
    # (the endpoint label, "/d/<token>", is itself rewritten by redact_secrets)
    assert {line["endpoint"] for line in access_lines(out)} == {"/d/[token]", "/d/[token]/bundle.zip"}


def test_a_token_with_a_stray_leading_space_or_quote_is_not_logged(client, ready, capsys) -> None:  # type: ignore[no-untyped-def]
    from compliance.observability import configure_logging

    link = issue(client, ready)
    key_id, payload, signature = link.token.split(".")
    leaked = []
    configure_logging("INFO")
    try:
        for mangled in (f"/d/%20{link.token}", f"/d/{key_id}.{payload}'.{signature}/bundle.zip",
                        f"/d/{key_id}.{payload}.%22{signature}"):
            capsys.readouterr()
            assert attempt(client, mangled).status_code == 404
            out = capsys.readouterr().out
            if signature in out or payload in out:
                leaked.append(mangled.replace(signature, "<signature>").replace(payload, "<payload>"))
    finally:
        with capsys.disabled():
            configure_logging("WARNING")
    assert leaked == []


def test_an_interrupted_download_of_a_one_download_link_can_be_resumed(client, ready, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The whole length is charged up front, and what never left is given back when the
    client goes away, so the resume fits in the link's byte budget."""
    monkeypatch.setattr(crypto, "READ_SEGMENTS", 1)  # pieces of one segment: the bundle is several
    link = issue(client, ready, max_downloads=1)
    response = client.get(link.bundle, buffered=False)
    assert response.status_code == 200
    stream = response.response
    first = next(iter(stream))  # the client reads a little, then the connection drops
    response.close()
    rest = attempt(client, link.bundle, Range=f"bytes={len(first)}-")
    assert rest.status_code == 206
    assert hashlib.sha256(first + rest.get_data()).hexdigest() == ready.sha256
    assert attempt(client, link.bundle, Range="bytes=0-").status_code == 410  # and no more than that
