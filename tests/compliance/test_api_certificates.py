"""Deletion certificates through the API: legal asks for one (409 naming what is missing until
the purge's evidence is in the log), fetches it as its envelope and as a PDF, and anyone has an
envelope verified against the published keys."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from pypdf import PdfReader

import audit
from compliance import db
from compliance.models import SourceConfig, Tenant

pytestmark = pytest.mark.usefixtures("session")
WHEN = "2026-06-01T02:00:00+00:00"


def tenant_with_source() -> tuple[int, int]:
    tenant = Tenant(external_ref="cert-api", name="Cert API GmbH", region="DE")
    db.session.add(tenant)
    db.session.flush()
    source = SourceConfig(tenant_id=tenant.id, kind="sql", name="crm", config={})
    db.session.add(source)
    db.session.commit()
    return tenant.id, source.id


def purged(tenant_id: int, source_id: int) -> None:
    """The events the retention purge writes (built in the retention issue)."""
    for action, data in (
        ("purge.source_erased", {"source_id": source_id, "source": "crm", "kind": "sql",
                                 "categories": ["account"], "started_at": WHEN, "finished_at": WHEN,
                                 "removed": {"accounts": 12}, "remaining": {"accounts": 0}}),
        ("purge.bundles_deleted", {"objects": 2, "bytes": 4096, "started_at": WHEN, "finished_at": WHEN}),
        ("purge.staging_deleted", {"files": 1, "started_at": WHEN, "finished_at": WHEN}),
        ("purge.completed", {"kind": "primary"}),
    ):
        audit.record(action, actor="system:purge", tenant_id=tenant_id, data=data)
    db.session.commit()


def test_issue_fetch_and_verify(client: Any, as_role: Any) -> None:
    tenant_id, source_id = tenant_with_source()
    legal = as_role("legal")
    url = f"/api/v1/tenants/{tenant_id}/certificates"

    early = client.post(url, json={"kind": "primary"}, headers=legal)
    assert early.status_code == 409
    missing = early.get_json()["errors"]["missing"]
    assert any("crm" in item for item in missing) and "yet" in early.get_json()["message"]

    purged(tenant_id, source_id)
    issued = client.post(url, json={"kind": "primary"}, headers=legal)
    assert issued.status_code == 201, issued.get_json()
    certificate = issued.get_json()
    assert (certificate["kind"], certificate["status"]) == ("primary", "erased")
    assert certificate["tenant_id"] == tenant_id
    assert certificate["envelope"]["payloadType"].startswith(
        "application/vnd.offboard.deletion-certificate+json")

    listed = client.get(url, headers=as_role("auditor")).get_json()["items"]
    assert [item["id"] for item in listed] == [certificate["id"]]
    envelope = client.get(f"/api/v1/certificates/{certificate['id']}", headers=legal)
    assert envelope.status_code == 200 and envelope.mimetype == "application/json"
    assert json.loads(envelope.data) == certificate["envelope"]
    assert "attachment" in envelope.headers["Content-Disposition"]
    pdf = client.get(f"/api/v1/certificates/{certificate['id']}?format=pdf", headers=legal)
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.data)).pages)
    assert certificate["id"] in text and certificate["key_id"] in text
    by_accept = client.get(f"/api/v1/certificates/{certificate['id']}",
                           headers={**legal, "Accept": "application/pdf"})
    assert by_accept.data == pdf.data

    # Anyone can have it verified, no key needed; one changed byte is refused, saying why.
    checked = client.post("/api/v1/certificates/verify", data=envelope.data,
                          content_type="application/json")
    body = checked.get_json()
    assert checked.status_code == 200
    assert (body["valid"], body["certificate_id"], body["status"]) == (True, certificate["id"], "erased")
    forged = json.loads(envelope.data)
    forged["payloadType"] += "x"
    refused = client.post("/api/v1/certificates/verify", json=forged)
    assert refused.status_code == 422 and "does not verify" in refused.get_json()["message"]


@pytest.mark.parametrize(("path", "status"), [
    ("/api/v1/certificates/not-a-uuid", 404),
    ("/api/v1/certificates/00000000-0000-4000-8000-000000000000", 404),
    ("/api/v1/certificates/00000000-0000-4000-8000-000000000000?format=doc", 422),
])
def test_fetch_refuses_what_is_not_there(client: Any, as_role: Any, path: str, status: int) -> None:
    assert client.get(path, headers=as_role("legal")).status_code == status


def test_issue_refuses_bad_input(client: Any, as_role: Any) -> None:
    tenant_id, _ = tenant_with_source()
    legal = as_role("legal")
    url = f"/api/v1/tenants/{tenant_id}/certificates"
    assert client.post(url, json={"kind": "weekly"}, headers=legal).status_code == 422
    assert client.post(url, json={"kind": "primary", "request_id": 999999}, headers=legal).status_code == 422
    assert client.post("/api/v1/tenants/999999/certificates", json={"kind": "primary"},
                       headers=legal).status_code == 404
    assert client.post(url, json={"kind": "primary"}, headers=as_role("csm")).status_code == 403
    assert client.post("/api/v1/certificates/verify", data=b"{not json",
                       content_type="application/json").status_code == 422
