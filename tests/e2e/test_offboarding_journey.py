"""A whole professional exit against the real service (web, worker and scheduler in subprocesses)
sending its mail to a real SMTP server this test runs (aiosmtpd): the request comes in through
the API, a CSM works it in the admin pages (acknowledge, extend, verify, a declined save offer,
approve, export, link, reduce access, close, the exit survey, the win-back flag), the customer
downloads the bundle and answers the survey in a browser, and every message the customer is
owed arrives, once, with the right content and links that work. The dashboard then shows the
reason (by count and by revenue) and the timings."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser

from compliance.clock import add_months
from tests.compliance.test_notify import Mailbox, free_port
from tests.e2e.conftest import PHONE, answer_survey, check_page

pytestmark = pytest.mark.e2e
MAIL_FROM = "Offboard at Example <offboard@example.test>"
CUSTOMER = "it@heron.example"
OWNER = "csm@offboard.example"  # the CSM the `people` fixture signs in, "Csm Person"
ANNUAL_VALUE = 36_000
SUBJECTS = {  # every message the customer is owed on this path, by kind
    "acknowledgement": "We have received your request to close Heron Analytics",
    "deadline_extended": "Heron Analytics: we need more time for your request",
    "plan": "Your offboarding plan for Heron Analytics, with dates",
    "save_invitation": "Before Heron Analytics leaves: can we talk?",
    "export_ready": "Your Heron Analytics data export is ready",
    "closure": "Heron Analytics: your account is closed",
    "survey_invitation": "Would you tell us why Heron Analytics left?",
}
URL = re.compile(r"https?://\S+")


class Inbox:
    """What the SMTP server on ``port`` accepted, waited on by subject."""

    def __init__(self, mailbox: Mailbox, port: int) -> None:
        self.mailbox, self.port = mailbox, port

    def all(self) -> list[tuple[str, list[str], EmailMessage]]:
        return list(self.mailbox.received)

    def wait_for(self, subject: str, timeout: float = 60) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [message for _sender, _to, message in self.all() if message["Subject"] == subject]
            if found:
                assert len(found) == 1, f"{subject!r} arrived {len(found)} times"
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"no message {subject!r}; got {[m['Subject'] for _s, _t, m in self.all()]}")


def text_of(message: EmailMessage) -> str:
    """The plain part, after checking the HTML part links to every URL the plain part names."""
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    text = plain.get_content()
    for url in URL.findall(text):
        assert f'href="{url}"' in html.get_content(), url
    return text


def day(value: datetime) -> str:
    return f"{value.day} {value:%B %Y}"


def at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield Inbox(mailbox, port)
    controller.stop()


@pytest.fixture
def service_env(service_env: dict[str, str], inbox: Inbox) -> dict[str, str]:
    """The service mails through the test's SMTP server; its links name the address it serves on."""
    return {**service_env, "SMTP_URL": f"smtp://127.0.0.1:{inbox.port}?timeout=10",
            "OFFBOARD_MAIL_FROM": MAIL_FROM, "OFFBOARD_PUBLIC_URL": f"http://127.0.0.1:{service_env['PORT']}"}


def test_a_full_offboarding_from_request_to_feedback(service: Any, people: Any, browser: Browser,
                                                     inbox: Inbox, shots: Path, tmp_path: Path) -> None:
    csm = people("csm")  # Csm Person, csm@offboard.example: the request's owner and the named contact
    page = csm.page

    # The request arrives through the API, for a premium account with its yearly value.
    status, tenant = service.api("POST", "/tenants", {
        "external_ref": "heron-7", "name": "Heron Analytics", "region": "DE", "value_tier": "premium",
        "contact_email": CUSTOMER, "annual_value": ANNUAL_VALUE})
    assert status == 201, tenant
    status, source = service.api("POST", "/sources", {
        "kind": "demo", "name": "product-db", "tenant_id": tenant["id"],
        "config": {"rows": 40, "state_dir": str(tmp_path / "demo")}})
    assert status == 201, source
    status, request = service.api("POST", "/requests", {
        "tenant_id": tenant["id"], "requested_by": "cfo@heron.example", "channel": "email",
        "churn_reason": "price", "owner": OWNER})
    assert status == 201, request
    request_path = f"/admin/requests/{request['id']}"

    # The CSM acknowledges in the admin page; the customer hears at once.
    csm.open(request_path, "journey-received")
    page.get_by_role("button", name="Acknowledge", exact=True).click()
    acknowledgement = text_of(inbox.wait_for(SUBJECTS["acknowledgement"]))
    assert f"Its reference is request {request['id']}" in acknowledgement
    assert "Csm Person looks after your request" in acknowledgement
    assert f"by {day(at(request['legal_deadline']))} at the latest" in acknowledgement

    # Ten years of history: the one extension the law allows, with its reason, told to the customer.
    page.get_by_text("Extend the legal deadline…").click()
    page.locator("#extend_reason").fill("ten years of history across four systems")
    page.get_by_role("button", name="Extend the deadline").click()
    extended = text_of(inbox.wait_for(SUBJECTS["deadline_extended"]))
    status, request = service.api("GET", f"/requests/{request['id']}")
    assert "ten years of history across four systems" in extended
    assert f"now be completed by {day(at(request['legal_deadline']))}" in extended

    # Verified: the plan goes out with its dates; the save rule advises an offer, which is declined.
    page.get_by_label("Verification note").fill("Called the CFO: the price rise, the decision is final")
    page.get_by_role("button", name="Verify", exact=True).click()
    plan = text_of(inbox.wait_for(SUBJECTS["plan"]))
    received = at(request["received_at"])
    assert f"Export of all of your data: {day(received)} to {day(received + timedelta(days=2))}" in plan
    assert f"Final billing and closure: {day(received + timedelta(days=14))}" in plan
    assert "Attempt advised" in page.locator("#save-title").locator("..").inner_text()
    page.get_by_label("What was offered").fill("two months free on the annual plan")
    page.get_by_label("Outcome").select_option("declined")
    page.get_by_role("button", name="Record the save attempt").click()
    save = text_of(inbox.wait_for(SUBJECTS["save_invitation"]))
    assert f"write to me at {OWNER}" in save and f"request {request['id']} goes ahead" in save
    csm.check("journey-verified")

    # A premium account: the CSM approves, starts the export and issues the link from the page.
    page.get_by_role("button", name="Approve", exact=True).click()
    page.get_by_role("button", name="Start the export", exact=True).click()
    page.locator("[data-live-announce]").get_by_text("The export is ready").wait_for(timeout=90_000)
    csm.open(request_path, "journey-exported")
    sha256 = page.locator("#bundle code").first.inner_text().strip()
    page.get_by_label("Recipient email").fill(CUSTOMER)
    page.get_by_role("button", name="Issue and e-mail the link").click()
    ready = text_of(inbox.wait_for(SUBJECTS["export_ready"]))
    [link] = [url for url in URL.findall(ready) if "/d/" in url]
    assert link == page.locator("input[readonly]").first.input_value() and sha256 in ready

    # The customer follows the e-mailed link on a phone and gets the bundle the manifest names.
    customer = browser.new_context(viewport=PHONE, accept_downloads=True, bypass_csp=True)
    phone = customer.new_page()
    opened = phone.goto(link)
    assert opened is not None and opened.status == 200
    check_page(phone, shots, "journey-download")
    with phone.expect_download() as started:
        phone.get_by_role("link", name="Download the bundle").click()
    saved = tmp_path / started.value.suggested_filename
    started.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == sha256

    # Access reduced, then closed with the final invoice: the closure names the deletion timeline.
    page.get_by_role("button", name="Reduce access", exact=True).click()
    page.get_by_label("Final invoice reference").fill("INV-2026-1187")
    page.get_by_role("button", name="Close the request").click()
    closure = text_of(inbox.wait_for(SUBJECTS["closure"]))
    status, request = service.api("GET", f"/requests/{request['id']}")
    closed = at(request["closed_at"])
    assert request["status"] == "closed" and "Final invoice: INV-2026-1187" in closure
    assert f"kept, unused, until {day(closed + timedelta(days=90))}" in closure
    assert f"purged by {day(add_months(closed, 12))}" in closure

    # No day's wait for the survey: the CSM sends it now, and the customer answers once.
    page.get_by_role("button", name="Send the survey now").click()
    invitation = text_of(inbox.wait_for(SUBJECTS["survey_invitation"]))
    [survey] = [url for url in URL.findall(invitation) if "/survey/" in url]
    phone.goto(survey)
    check_page(phone, shots, "journey-survey")
    answer_survey(phone, reason="Too expensive", better="A cheaper plan for five seats", rating=7,
                  come_back="Yes", recommend=8)
    assert phone.locator("h1").inner_text() == "Thank you"
    customer.close()

    # A departure on good terms: the CSM flags it for the owner's follow-up, on a phone-sized page.
    csm.page.set_viewport_size(PHONE)
    csm.open(request_path, "journey-feedback-collected")
    assert "Answered" in page.locator("#exit-title").locator("..").inner_text()
    page.get_by_role("link", name="Flag for a win-back follow-up…").click()
    csm.check("journey-winback")
    page.get_by_label("Follow up in").select_option("9")
    page.get_by_label("Note for the owner").fill("They liked the reports; offer the five-seat plan")
    page.get_by_role("button", name="Create the reminder").click()
    assert "will be reminded on" in page.locator("main").inner_text()

    # Every message the customer is owed arrived once, from the service, and nothing else was sent.
    time.sleep(2)  # anything queued by the last steps (nothing should be) has had its chance to go
    received = inbox.all()
    assert sorted(message["Subject"] for _s, _t, message in received) == sorted(SUBJECTS.values())
    for sender, recipients, message in received:
        assert recipients == [CUSTOMER] and message["To"] == CUSTOMER and message["From"] == MAIL_FROM
        assert sender == "offboard@example.test" and message["Auto-Submitted"] == "auto-generated"
        assert message["Message-ID"] and "Csm Person <csm@offboard.example>" in text_of(message)
    status, after = service.api("GET", f"/requests/{request['id']}")
    assert after["status"] == "feedback_collected", after

    # The dashboard: the reason by count and revenue, the rating, and how long each step took.
    status, report = service.api("GET", "/reports/dashboard")
    assert status == 200, report
    reasons = report["feedback"]["reasons"]["too_expensive"]
    assert (reasons["count"], reasons["revenue"]) == (1, ANNUAL_VALUE), report["feedback"]
    assert report["to_export"]["count"] >= 1 and report["to_closure"]["count"] >= 1
    board = csm.open("/admin/", "journey-dashboard").locator("main").inner_text()
    assert "Too expensive" in board and "36,000" in board
