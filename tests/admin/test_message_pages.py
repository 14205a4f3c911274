"""The messages pages: the outbox with its filters, and the preview of every kind of message,
personalised from a request (or a sample), HTML only inside a sandboxed frame."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from compliance import clock, db, messages, notify, winback, workflow
from compliance.models import OffboardingRequest, OutboxMessage, Tenant, User

pytestmark = pytest.mark.usefixtures("clock")
OWNER = ("Cara Mendes", "cara.mendes@offboard.example")


def offboarding(name: str = "Kestrel <Labs>", ref: str = "kestrel-9") -> OffboardingRequest:
    if db.session.scalar(select(User).where(User.email == OWNER[1])) is None:
        db.session.add(User(email=OWNER[1], name=OWNER[0], role="csm", password_hash="-"))
    tenant = Tenant(external_ref=ref, name=name, region="DE", contact_email="it@kestrel.example")
    db.session.add(tenant)
    db.session.flush()
    request = workflow.open_request(tenant, actor="test", requested_by="cfo@kestrel.example", channel="email",
                                    churn_reason="price", formats=["csv"], owner=OWNER[1])
    db.session.commit()
    return request


def text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def srcdoc(page: str) -> str:
    found = re.search(r'<iframe class="mail-preview" sandbox srcdoc="([^"]*)"', page)
    assert found, page
    return html.unescape(found.group(1))


# --- the outbox ---------------------------------------------------------------------------------------


def test_the_outbox_lists_messages_and_filters_by_status_and_request(staff: Any) -> None:
    first, second = offboarding(), offboarding("Globex", "globex-1")
    for request, kind in ((first, "acknowledgement"), (second, "save_invitation")):
        notify.send(kind, {}, recipient="it@kestrel.example", actor="test", tenant_id=request.tenant_id,
                    request_id=request.id)
    db.session.get_one(Tenant, second.tenant_id).no_contact_since = clock.now()
    notify.send("plan", {"phases": workflow.plan(second.received_at, second.received_at.date())},
                recipient="it@globex.example", actor="test", tenant_id=second.tenant_id, request_id=second.id)
    db.session.commit()

    auditor = staff("auditor")
    page = text(auditor.get("/admin/messages"))
    assert "<h1>Messages</h1>" in page and page.count('<td data-label="Recipient">') == 3
    assert "We have received your request to close Kestrel &lt;Labs&gt;" in page
    assert 'class="status status-suppressed"' in page and "it@globex.example" in page
    assert "Preview a message" not in page  # auditors may list, not preview

    suppressed = text(auditor.get("/admin/messages?status=suppressed"))
    assert "it@globex.example" in suppressed and suppressed.count('<td data-label="Recipient">') == 1
    of_first = text(auditor.get(f"/admin/messages?request_id={first.id}"))
    assert of_first.count('<td data-label="Recipient">') == 1 and "Acknowledgement" in of_first

    refused = auditor.get("/admin/messages?status=lost&request_id=x")
    assert refused.status_code == 400
    assert 'aria-invalid="true"' in refused.get_data(as_text=True) and "Must be one of" in text(refused)


# --- the preview ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(messages.CATALOGUE))
def test_every_kind_previews_personalised_from_the_request(staff: Any, kind: str) -> None:
    request = offboarding()

    answer = staff("csm").get(f"/admin/messages/preview?kind={kind}&request_id={request.id}")

    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    mail = srcdoc(page)
    plain = html.unescape(re.search(r'<pre class="mail-text" tabindex="0">(.*?)</pre>', page, re.S).group(1))  # type: ignore[union-attr]
    assert mail.startswith("<!doctype html>") and "Kestrel &lt;Labs&gt;" in mail and "kestrel-9" in mail
    assert "Kestrel <Labs>" in plain and "kestrel-9" in plain and f"request {request.id}" in plain
    if messages.CATALOGUE[kind].audience == "customer":
        assert OWNER[0] in mail and OWNER[1] in mail and OWNER[0] in plain and OWNER[1] in plain
    assert "<Labs>" not in page  # the page itself escapes everything
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0  # a preview queues nothing


def test_the_preview_names_what_is_a_sample_and_what_the_law_requires(staff: Any) -> None:
    request = offboarding()
    legal = staff("legal")

    closure = text(legal.get(f"/admin/messages/preview?kind=closure&request_id={request.id}"))
    assert "Required by law</dt><dd>Yes" in closure and "invoice_ref, closed_at: the sender fills" in closure
    plan = text(legal.get(f"/admin/messages/preview?kind=plan&request_id={request.id}"))
    assert "Required by law</dt><dd>No" in plan and "none: everything comes from the request" in plan
    assert "Export of all of your data" in plan and "2 March 2026 to 4 March 2026" in plan

    sample = legal.get("/admin/messages/preview?kind=survey_invitation")
    assert sample.status_code == 200
    page = text(sample)
    assert "Example Customer Ltd" in page and legal.user.name in page  # the signed-in person as contact
    assert "customer, account, request, contact, survey_url: the sender fills" in page


def test_the_html_is_shown_only_in_a_sandboxed_frame_under_the_admin_csp(staff: Any) -> None:
    request = offboarding(name='Evil "><script>alert(1)</script>')
    answer = staff("admin").get(f"/admin/messages/preview?kind=acknowledgement&request_id={request.id}")
    page = answer.get_data(as_text=True)
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in srcdoc(page)  # escaped in the mail, then in the frame
    assert answer.headers["Content-Security-Policy"].startswith("default-src 'self'")


def test_who_may_preview_and_what_is_refused(staff: Any) -> None:
    request = offboarding()
    preview = f"/admin/messages/preview?kind=plan&request_id={request.id}"
    assert staff("auditor").get(preview).status_code == 403
    csm = staff("csm")
    form = csm.get("/admin/messages/preview")
    assert form.status_code == 200 and "<iframe" not in form.get_data(as_text=True)
    unknown = csm.get("/admin/messages/preview?kind=newsletter")
    assert unknown.status_code == 400 and "Must be one of" in text(unknown)
    missing = csm.get("/admin/messages/preview?kind=plan&request_id=999999")
    assert missing.status_code == 404 and "there is no request 999999" in text(missing)


def test_the_winback_preview_uses_the_requests_reminder_when_it_has_one(staff: Any) -> None:
    request = offboarding()
    csm = staff("csm")
    preview = f"/admin/messages/preview?kind=winback_due&request_id={request.id}"

    sample = text(csm.get(preview))  # no reminder yet: what the job would fill is a sample
    assert "SAMPLE NOTE: offer the new team plan" in sample and "Required by law</dt><dd>No" in sample
    assert "left_on, flagged_on, churn_reason, survey_reason, would_return, note" in sample

    closing = db.session.get_one(OffboardingRequest, request.id)
    closing.status, closing.closed_at = "closed", clock.now()
    winback.flag(request.id, months=9, note="ask about the new region", actor="user:csm")
    db.session.commit()
    real = text(csm.get(preview))
    assert "ask about the new region" in real and "SAMPLE NOTE" not in real
    assert "none: everything comes from the request" in real
