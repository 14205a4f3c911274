"""The legal page: holds placed and released through it (audited, as the API does), the purges due
soon and the holds blocking them, and deletion certificates viewed, downloaded, issued and verified
from an upload; every form refused without its CSRF token and for roles without the right."""

from __future__ import annotations

import base64
import io
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

import audit
from audit import certificates, keys
from compliance import config, db, workflow
from compliance.models import AuditEvent, DeletionCertificate, LegalHold, SourceConfig, Tenant

pytestmark = pytest.mark.usefixtures("clock")
WHEN = "2026-02-01T02:00:00+00:00"


def tenant(ref: str, name: str, closed_at: datetime | None = None, **extra: Any) -> Tenant:
    row = Tenant(external_ref=ref, name=name, region="DE", closed_at=closed_at, **extra)
    db.session.add(row)
    db.session.commit()
    return row


def hold(tenant_id: int, matter: str) -> LegalHold:
    row = LegalHold(tenant_id=tenant_id, reason="litigation", matter=matter, placed_by="test")
    db.session.add(row)
    db.session.commit()
    return row


def text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def events(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)))


def count(model: Any) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def purged_tenant() -> Tenant:
    """A tenant whose primary purge left its evidence in the audit log (as in the API's tests)."""
    row = tenant("cert-page", "Cert Page GmbH", datetime(2025, 11, 1, tzinfo=UTC),
                 purged_at=datetime(2026, 2, 1, 2, tzinfo=UTC))
    source = SourceConfig(tenant_id=row.id, kind="sql", name="crm", config={})
    db.session.add(source)
    db.session.flush()
    for action, data in (
        ("purge.source_erased", {"source_id": source.id, "source": "crm", "kind": "sql",
                                 "categories": ["account"], "started_at": WHEN, "finished_at": WHEN,
                                 "removed": {"accounts": 12}, "remaining": {"accounts": 0}}),
        ("purge.bundles_deleted", {"objects": 2, "bytes": 4096, "started_at": WHEN, "finished_at": WHEN}),
        ("purge.staging_deleted", {"files": 1, "started_at": WHEN, "finished_at": WHEN}),
        ("purge.completed", {"kind": "primary"}),
    ):
        audit.record(action, actor="system:purge", tenant_id=row.id, data=data)
    db.session.commit()
    return row


def issued(staff: Any) -> tuple[Any, DeletionCertificate]:
    row = purged_tenant()
    legal = staff("legal")
    legal.get(f"/admin/tenants/{row.id}")
    answer = legal.post("/admin/certificates", {"tenant_id": row.id, "kind": "primary",
                                                "back": "tenant"})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    [certificate] = db.session.scalars(select(DeletionCertificate)
                                       .where(DeletionCertificate.tenant_id == row.id))
    assert answer.location.endswith(f"/admin/certificates/{certificate.id}")
    return legal, certificate


# --- the page ---------------------------------------------------------------------------------------


def test_due_and_upcoming_purges_with_the_holds_that_block_them(staff: Any) -> None:
    due = tenant("due-1", "Due Ltd", datetime(2025, 11, 1, 9, tzinfo=UTC))  # due 30 Jan 2026
    soon = tenant("soon-1", "Soon Ltd", datetime(2025, 12, 15, 9, tzinfo=UTC))  # due 15 Mar 2026
    tenant("later-1", "Later Ltd", datetime(2026, 2, 1, 9, tzinfo=UTC))  # due 2 May 2026: not listed
    tenant("open-1", "Open Ltd")
    backups = tenant("bak-1", "Backups Ltd", datetime(2025, 3, 10, 9, tzinfo=UTC),
                     purged_at=datetime(2025, 6, 8, tzinfo=UTC))  # backups due 10 Mar 2026
    held = tenant("held-1", "Held Ltd", datetime(2025, 11, 5, 9, tzinfo=UTC))
    hold(held.id, "Case 2026-17")

    page = text(staff("legal").get("/admin/legal"))
    assert "<h1>Legal</h1>" in page
    purges = page[page.index("Due and upcoming purges"):page.index("Active legal holds")]
    rows = {name: re.search(rf"{name}</a>.*?</tr>", purges).group(0)
            for name in ("Due Ltd", "Soon Ltd", "Backups Ltd", "Held Ltd")}
    assert "Later Ltd" not in purges and "Open Ltd" not in purges
    assert "Primary data" in rows["Due Ltd"] and "due now" in rows["Due Ltd"]
    assert "the sweep will purge it" in rows["Due Ltd"]
    assert "Sun 15 Mar 2026" in rows["Soon Ltd"] and "in 13 d" in rows["Soon Ltd"]
    assert "Backups" in rows["Backups Ltd"] and "Tue 10 Mar 2026" in rows["Backups Ltd"]
    assert "Blocked by hold Case 2026-17" in rows["Held Ltd"] and "due now" in rows["Held Ltd"]
    assert purges.index("Due Ltd") < purges.index("Held Ltd") < purges.index("Backups Ltd") \
        < purges.index("Soon Ltd")  # soonest first
    assert f'<option value="{due.id}">Due Ltd (due-1)</option>' in page  # the hold picker
    assert soon.id and backups.id


def test_who_sees_the_legal_page_and_its_forms(staff: Any) -> None:
    held = tenant("h-1", "Held", datetime(2025, 11, 5, tzinfo=UTC))
    hold(held.id, "Case 1")
    assert staff("csm").get("/admin/legal").status_code == 403
    auditor = text(staff("auditor").get("/admin/legal"))
    assert "Case 1" in auditor and "Verify a certificate" in auditor
    assert "Place legal hold" not in auditor and "Release hold" not in auditor
    assert "Issue certificate" not in auditor
    for role in ("legal", "admin"):
        page = text(staff(role, email=f"{role}-2@example.com").get("/admin/legal"))
        assert "Place legal hold" in page and "Release hold" in page and "Issue certificate" in page


# --- holds ------------------------------------------------------------------------------------------


def test_legal_places_and_releases_a_hold_from_the_legal_page(staff: Any) -> None:
    row = tenant("acme", "Acme", datetime(2025, 12, 1, tzinfo=UTC))
    legal = staff("legal")
    legal.get("/admin/legal")
    placed = legal.post("/admin/holds", {"tenant_id": row.id, "matter": "Case 99", "reason": "subpoena"})
    assert placed.status_code == 302 and placed.location.endswith("/admin/legal#holds")
    [held] = db.session.scalars(select(LegalHold).where(LegalHold.tenant_id == row.id))
    assert (held.matter, held.reason, held.placed_by, held.released_at) == (
        "Case 99", "subpoena", f"user:{legal.user.id}", None)
    [event] = events("hold.placed")
    assert event.actor == f"user:{legal.user.id}" and event.tenant_id == row.id
    assert event.data == {"hold_id": held.id, "reason": "subpoena", "matter": "Case 99"}
    page = text(legal.get("/admin/legal"))
    assert f"Legal hold {held.id} (Case 99) placed on Acme" in page
    assert "Test Legal" in page  # placed by, by name

    released = legal.post(f"/admin/holds/{held.id}/release", {"reason": "case settled", "back": "legal"})
    assert released.status_code == 302
    held = db.session.get(LegalHold, held.id)
    assert held.released_by == f"user:{legal.user.id}" and held.release_reason == "case settled"
    assert held.released_at is not None
    [event] = events("hold.released")
    assert event.data == {"hold_id": held.id, "reason": "case settled"}
    assert "No legal hold is active." in text(legal.get("/admin/legal"))


def test_admin_places_and_releases_from_the_tenant_page(staff: Any) -> None:
    row = tenant("acme", "Acme")  # open: holds are placed from the tenant's page
    admin = staff("admin")
    admin.get(f"/admin/tenants/{row.id}")
    placed = admin.post("/admin/holds", {"tenant_id": row.id, "matter": "M-7", "reason": "audit",
                                         "back": "tenant"})
    assert placed.location.endswith(f"/admin/tenants/{row.id}#holds")
    [held] = db.session.scalars(select(LegalHold).where(LegalHold.tenant_id == row.id))
    page = text(admin.get(placed.location))
    assert "M-7" in page and "Under legal hold" in page and f"Release hold {held.id}" in page
    released = admin.post(f"/admin/holds/{held.id}/release", {"reason": "done", "back": "tenant"})
    assert released.location.endswith(f"/admin/tenants/{row.id}#holds")
    assert db.session.get(LegalHold, held.id).released_at is not None
    assert len(events("hold.placed")) == len(events("hold.released")) == 1


def test_hold_validation_errors_stand_beside_their_fields(staff: Any) -> None:
    row = tenant("acme", "Acme", datetime(2025, 12, 1, tzinfo=UTC))
    legal = staff("legal")
    legal.get("/admin/legal")
    empty = legal.post("/admin/holds", {"tenant_id": "", "matter": "", "reason": ""})
    body = empty.get_data(as_text=True)
    assert empty.status_code == 400 and "<h1>Legal</h1>" in body
    assert 'id="hold-tenant-error">Choose a tenant.' in body
    assert 'id="matter-error">Missing data for required field.' in body
    assert 'id="reason-error">Missing data for required field.' in body
    too_long = legal.post("/admin/holds", {"tenant_id": row.id, "matter": "x" * 201, "reason": "why"})
    assert too_long.status_code == 400 and 'id="matter-error">Length must be between 1 and 200.' in \
        too_long.get_data(as_text=True)
    assert 'value="why"' not in too_long.get_data(as_text=True)  # a textarea keeps it as text
    assert ">why</textarea>" in too_long.get_data(as_text=True)

    assert legal.post("/admin/holds", {"tenant_id": row.id, "matter": "M", "reason": "r"}).status_code == 302
    again = legal.post("/admin/holds", {"tenant_id": row.id, "matter": "M", "reason": "r",
                                        "back": "tenant"})
    assert again.status_code == 409 and f"<h1>{row.name}</h1>" in again.get_data(as_text=True)
    assert re.search(r'id="matter-error">Hold \d+ for this matter is already active',
                     again.get_data(as_text=True))
    [held] = db.session.scalars(select(LegalHold).where(LegalHold.tenant_id == row.id))

    no_reason = legal.post(f"/admin/holds/{held.id}/release", {"reason": " ", "back": "tenant"})
    body = no_reason.get_data(as_text=True)
    assert no_reason.status_code == 400 and f"<h1>{row.name}</h1>" in body
    assert f'id="release-{held.id}-error">Missing data for required field.' in body
    assert db.session.get(LegalHold, held.id).released_at is None
    assert legal.post("/admin/holds/999999/release", {"reason": "x"}).status_code == 404
    assert legal.post("/admin/holds", {"tenant_id": 999999, "matter": "M", "reason": "r"}).status_code == 400
    assert len(events("hold.placed")) == 1 and events("hold.released") == []


@pytest.mark.parametrize("role", ["csm", "auditor"])
def test_roles_without_the_right_change_no_hold(staff: Any, role: str) -> None:
    row = tenant("acme", "Acme", datetime(2025, 12, 1, tzinfo=UTC))
    held = hold(row.id, "Case 3")
    person = staff(role)
    page = person.get(f"/admin/tenants/{row.id}").get_data(as_text=True)
    assert "Place legal hold" not in page and "Release hold" not in page
    for url, form in (("/admin/holds", {"tenant_id": row.id, "matter": "M", "reason": "r"}),
                      (f"/admin/holds/{held.id}/release", {"reason": "r"})):
        refused = person.post(url, form)
        assert refused.status_code == 403 and "You may not do this" in refused.get_data(as_text=True)
    assert count(LegalHold) == 1 and db.session.get(LegalHold, held.id).released_at is None
    assert events("hold.placed") == events("hold.released") == []


def test_hold_forms_without_csrf_are_refused(staff: Any) -> None:
    row = tenant("acme", "Acme", datetime(2025, 12, 1, tzinfo=UTC))
    held = hold(row.id, "Case 3")
    legal = staff("legal")
    for url, form in (("/admin/holds", {"tenant_id": row.id, "matter": "M", "reason": "r"}),
                      (f"/admin/holds/{held.id}/release", {"reason": "r"})):
        refused = legal.post(url, form, csrf=False)
        assert refused.status_code == 400 and "security token" in refused.get_data(as_text=True)
    assert count(LegalHold) == 1 and db.session.get(LegalHold, held.id).released_at is None
    assert events("hold.placed") == events("hold.released") == []


# --- certificates -----------------------------------------------------------------------------------


def test_issue_view_and_download_a_certificate(staff: Any, client: Any, as_role: Any) -> None:
    legal, certificate = issued(staff)
    page = text(legal.get(f"/admin/certificates/{certificate.id}"))
    assert f"Certificate {certificate.id} issued (primary, erased)." in page
    assert "Valid" in page and "Erased: every system in scope was erased" in page
    assert "Primary systems (the purge 90 days after closure)" in page and "Cert Page GmbH" in page
    assert "source crm" in page and "accounts: 12" in page and "None: every system in scope" in page
    assert "Audit log checkpoint" in page and config.current().audit_origin in page
    assert f"Issued by</dt><dd>{legal.user.name}" in page

    pdf = legal.client.get(f"/admin/certificates/{certificate.id}/pdf")  # bytes, no form to read
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    assert pdf.headers["Content-Disposition"] == \
        f'attachment; filename="deletion-certificate-{certificate.id}.pdf"'
    envelope = legal.get(f"/admin/certificates/{certificate.id}/json")
    assert envelope.mimetype == "application/json" and "attachment" in envelope.headers["Content-Disposition"]
    payload = certificates.verify(json.loads(envelope.data), keys.public_keys(config.current()))
    assert payload["certificate_id"] == certificate.id
    api = as_role("auditor")
    assert envelope.data == client.get(f"/api/v1/certificates/{certificate.id}", headers=api).data
    assert pdf.data == client.get(f"/api/v1/certificates/{certificate.id}?format=pdf", headers=api).data

    listed = text(legal.get("/admin/legal"))
    assert f"/admin/certificates/{certificate.id}/pdf" in listed and "Cert Page GmbH" in listed
    tenant_page = text(legal.get(f"/admin/tenants/{certificate.tenant_id}"))
    assert f"/admin/certificates/{certificate.id}" in tenant_page
    [event] = events("certificate.issued")
    assert event.actor == f"user:{legal.user.id}"


def test_a_certificate_is_refused_until_the_evidence_is_there(staff: Any) -> None:
    row = tenant("early", "Early", datetime(2025, 11, 1, tzinfo=UTC))
    other = tenant("other", "Other")
    db.session.add(SourceConfig(tenant_id=row.id, kind="sql", name="crm", config={}))
    db.session.commit()
    admin = staff("admin")
    admin.get("/admin/legal")
    early = admin.post("/admin/certificates", {"tenant_id": row.id, "kind": "primary", "back": "tenant"})
    body = text(early)
    assert early.status_code == 409 and "<h1>Early</h1>" in body
    assert "cannot issue a primary deletion certificate for tenant" in body and "crm" in body
    request = workflow.open_request(other, actor="test", requested_by="x", channel="email",
                                    churn_reason="price", formats=["csv"])
    db.session.commit()
    wrong = admin.post("/admin/certificates", {"tenant_id": row.id, "kind": "primary",
                                               "request_id": request.id})
    assert wrong.status_code == 422
    assert f'id="request_id-error">request {request.id} is not a request of tenant {row.id}' in \
        wrong.get_data(as_text=True)
    bad = admin.post("/admin/certificates", {"tenant_id": "", "kind": "weekly"})
    assert bad.status_code == 400 and 'id="kind-error">Must be one of' in bad.get_data(as_text=True)
    assert 'id="issue-tenant-error">Choose a tenant.' in bad.get_data(as_text=True)
    assert count(DeletionCertificate) == 0


@pytest.mark.parametrize("role", ["csm", "auditor"])
def test_roles_without_the_right_issue_nothing(staff: Any, role: str) -> None:
    row = purged_tenant()
    person = staff(role)
    refused = person.post("/admin/certificates", {"tenant_id": row.id, "kind": "primary"})
    assert refused.status_code == 403
    csrf_less = staff("legal").post("/admin/certificates", {"tenant_id": row.id, "kind": "primary"},
                                    csrf=False)
    assert csrf_less.status_code == 400
    assert count(DeletionCertificate) == 0


def test_the_csm_may_not_see_certificates(staff: Any) -> None:
    legal, certificate = issued(staff)
    csm = staff("csm")
    for suffix in ("", "/pdf", "/json"):
        assert csm.get(f"/admin/certificates/{certificate.id}{suffix}").status_code == 403
    assert legal.get("/admin/certificates/not-a-uuid").status_code == 404


def upload(person: Any, content: bytes, name: str = "certificate.json", csrf: bool = True) -> Any:
    person.get("/admin/legal")
    return person.post("/admin/certificates/verify", {"certificate": (io.BytesIO(content), name)},
                       csrf=csrf, content_type="multipart/form-data")


def test_verify_an_uploaded_certificate(staff: Any) -> None:
    _, certificate = issued(staff)
    auditor = staff("auditor")
    good = upload(auditor, certificate.envelope.encode())
    page = text(good)
    assert good.status_code == 200 and "Valid." in page and certificate.id in page

    envelope = json.loads(certificate.envelope)
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["status"] = "failed"  # a claim changed: the signature no longer matches
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    tampered = upload(auditor, json.dumps(envelope).encode())
    page = text(tampered)
    assert tampered.status_code == 422 and "Does not verify." in page and "Bad signature by key" in page
    assert "Valid." not in page


@pytest.mark.parametrize(("content", "name", "message"), [
    (b"", "", "Choose the certificate&#39;s JSON file."),
    (b"   ", "empty.json", "The file is empty."),
    (b"%PDF-1.7 not json", "certificate.pdf", "The file is not JSON."),
    (b"{" + b" " * (600 * 1024) + b"}", "huge.json", "The file is larger than 512 KB"),
])
def test_a_bad_upload_is_answered_beside_the_field(staff: Any, content: bytes, name: str,
                                                  message: str) -> None:
    answer = upload(staff("legal"), content, name)
    body = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert re.search(r'id="certificate-error">' + re.escape(message), body), body[-3000:]
    assert 'aria-invalid="true"' in body and "Does not verify" not in body


def test_verify_without_csrf_is_refused(staff: Any) -> None:
    refused = upload(staff("legal"), b"{}", csrf=False)
    assert refused.status_code == 400 and "security token" in refused.get_data(as_text=True)
