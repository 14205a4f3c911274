"""The outbox against a real SMTP server (aiosmtpd on a free port): what arrives, headers and both
parts, links that open, retries with backoff, failure, no double send, and no-contact tenants."""

from __future__ import annotations

import dataclasses
import email
import re
import socket
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from flask.testing import FlaskClient
from sqlalchemy import select

from compliance import clock, config, db, messages, notify, workflow
from compliance.models import AuditEvent, OffboardingRequest, OutboxMessage, User

MAIL_FROM = "Offboard Tests <offboard@example.test>"
CUSTOMER = "it@kestrel.example"
OWNER = ("Cara Mendes", "cara.mendes@offboard.example")
LEGAL = "legal@offboard.example"
CERTIFICATE = "cert-4f1e"


class Mailbox:
    """An SMTP handler that keeps what it accepts; ``answers`` are replies to DATA to give first,
    ``refused`` recipients get 550 at RCPT."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], EmailMessage]] = []
        self.answers: list[str] = []
        self.refused: set[str] = set()
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if address in self.refused:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.answers:
            return self.answers.pop(0)
        parsed = email.message_from_bytes(envelope.content, policy=default_policy)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))  # type: ignore[arg-type]
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        self.logins.append((data.login, data.password))
        return AuthResult(success=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mailbox(settings: config.Settings, session: None, clock: Any) -> Iterator[Mailbox]:
    """A real SMTP server, with the service's SMTP_URL pointing at it for this test."""
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, authenticator=box.authenticate,
                            auth_require_tls=False)
    controller.start()
    smtp = config.load({"SMTP_URL": f"smtp://127.0.0.1:{port}?timeout=5",
                        "OFFBOARD_INSTANCE_DIR": str(settings.instance_dir)}).smtp
    config.use(dataclasses.replace(settings, mail_from=MAIL_FROM, smtp=smtp))
    yield box
    config.use(settings)
    controller.stop()


def offboarding(no_contact: bool = False) -> OffboardingRequest:
    """A tenant (asked for no contact, or not) with a request owned by a named CSM."""
    db.session.add(User(email=OWNER[1], name=OWNER[0], role="csm", password_hash="-"))
    tenant = workflow.register_tenant(actor="test", external_ref=f"kestrel-{no_contact}", name="Kestrel Labs",
                                      region="DE", contact_email=CUSTOMER)
    tenant.no_contact_since = clock.now() if no_contact else None
    request = workflow.open_request(tenant, actor="test", requested_by="cfo@kestrel.example", channel="email",
                                    churn_reason="price", formats=["csv"], owner=OWNER[1])
    db.session.commit()
    return request


def contexts(request: OffboardingRequest) -> dict[str, dict[str, Any]]:
    """What each kind's caller passes on top of the tenant's and request's personalisation."""
    return {
        "acknowledgement": {}, "save_invitation": {},
        "plan": {"phases": workflow.plan(request.received_at, date(2026, 3, 2))},
        "export_ready": {"url": "https://offboard.example/d/abc", "expires_at": request.export_due,
                         "max_downloads": 3, "sha256": "5e" * 32},
        "survey_invitation": {"survey_url": "https://offboard.example/survey/xyz"},
        "closure": {"closed_at": request.received_at, "invoice_ref": "INV-2026-0042"},
        "deadline_extended": {"previous_deadline": request.legal_deadline,
                              "reason": "the export of ten years of history takes longer"},
        "deadline_warning": {"deadline": "acknowledgement", "due": request.acknowledgement_due,
                             "left": "5 h 00 min"},
        "purge_completed": {"status": "purged", "certificate": {"id": CERTIFICATE, "status": "erased"},
                            "systems": {"source crm": {"status": "erased", "error": None}}},
        "backups_purged": {"snapshots": 2, "keys": 1,
                           "certificate": {"id": CERTIFICATE, "status": "erased"}},
        "winback_due": {"left_on": request.received_at, "flagged_on": request.received_at,
                        "churn_reason": "price", "survey_reason": "too_expensive", "would_return": "maybe",
                        "note": "offer the new team plan", "no_contact_since": None, "purged_on": None},
    }


def queue(request: OffboardingRequest, kind: str, recipient: str = CUSTOMER) -> OutboxMessage:
    with db.transaction():
        message = notify.send(kind, contexts(request)[kind], recipient=recipient, actor="test",
                              tenant_id=request.tenant_id, request_id=request.id)
    return message


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def events(action: str) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
    return list(db.session.scalars(query))


def row(message: OutboxMessage) -> OutboxMessage:
    db.session.expire_all()
    return db.session.get_one(OutboxMessage, message.id)


def test_a_message_arrives_with_its_headers_and_both_parts(mailbox: Mailbox, clock: Any) -> None:
    request = offboarding()
    queued = queue(request, "acknowledgement")

    assert notify.deliver_pending() == 1

    [(sender, recipients, message)] = mailbox.received
    assert (sender, recipients) == ("offboard@example.test", [CUSTOMER])
    assert message["From"] == MAIL_FROM and message["To"] == CUSTOMER
    assert message["Subject"] == "We have received your request to close Kestrel Labs"
    assert message["Date"] == "Mon, 02 Mar 2026 09:00:00 +0000"
    # a long Message-ID is folded onto its own line; receivers unfold it
    assert message["Message-ID"].strip() == queued.message_id and queued.message_id.endswith("@example.test>")
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    sent = row(queued)
    assert (sent.status, sent.attempts, sent.sent_at, sent.error) == ("sent", 1, clock.now(), None)
    [event] = events("message.sent")
    assert event.data == {"kind": "acknowledgement", "recipient": CUSTOMER, "attempt": 1,
                          "message_id": queued.message_id, "answer": "250 2.0.0 Ok: queued as Q1"}
    assert "Kestrel" not in event.canonical  # the audit trail names the message, never its content


def test_the_download_link_in_the_mail_opens_the_customers_page(
        mailbox: Mailbox, client: FlaskClient, as_role: Callable[[str], dict[str, str]],
        work: Callable[[], None], tmp_path: Path) -> None:
    headers = as_role("csm")
    facts = {"external_ref": "kestrel-dl", "name": "Kestrel Labs", "region": "DE"}
    tenant = client.post("/api/v1/tenants", headers=headers, json=facts).get_json()
    client.post("/api/v1/sources", headers=headers, json={
        "kind": "demo", "name": "demo", "tenant_id": tenant["id"],
        "config": {"rows": 50, "state_dir": str(tmp_path / "demo")}})
    request_id = client.post("/api/v1/requests", headers=headers, json={
        "tenant_id": tenant["id"], "requested_by": "cfo@kestrel.example", "channel": "email",
        "churn_reason": "price"}).get_json()["id"]
    for action, body in (("acknowledge", {}), ("verify", {"note": "intended"}), ("approve", {})):
        client.post(f"/api/v1/requests/{request_id}/{action}", headers=headers, json=body)
    export = client.post(f"/api/v1/requests/{request_id}/exports", json={}, headers=headers).get_json()
    work()
    issued = client.post(f"/api/v1/exports/{export['id']}/links", headers=headers,
                         json={"recipient": CUSTOMER, "max_downloads": 2}).get_json()

    work()  # the delivery run each commit that wrote a message queued (notify.kick)

    # the acknowledgement, the plan (on verification), the link: nothing is left for the cron run
    assert len(mailbox.received) == 3 and notify.deliver_pending() == 0

    [(_sender, recipients, message)] = [mail for mail in mailbox.received
                                        if "export is ready" in str(mail[2]["Subject"])]
    text, html = parts(message)
    [url] = [line for line in text.splitlines() if "/d/" in line]
    assert recipients == [CUSTOMER] and url == issued["url"] and f'href="{url}"' in html
    assert "for 2 downloads" in text and issued["bundle_sha256"] in text and "sha256sum -c SHA256SUMS" in text
    page = client.get(url.removeprefix(config.current().public_url))
    assert page.status_code == 200 and "Data export for Kestrel Labs" in page.get_data(as_text=True)


def test_a_refusal_is_retried_with_backoff_then_sent_with_the_same_message_id(mailbox: Mailbox,
                                                                               clock: Any) -> None:
    queued = queue(offboarding(), "save_invitation")
    mailbox.answers = ["451 4.3.0 mailbox busy, try again later"]

    assert notify.deliver_pending() == 0
    waiting = row(queued)
    assert (waiting.status, waiting.attempts) == ("pending", 1)
    assert waiting.next_attempt_at == clock.now() + timedelta(minutes=1)
    assert waiting.error == "SMTPDataError: 451 4.3.0 mailbox busy, try again later"
    [deferred] = events("message.deferred")
    assert deferred.data["error"] == waiting.error and deferred.data["attempt"] == 1

    assert notify.deliver_pending() == 0  # not due yet: nothing is tried
    assert row(queued).attempts == 1 and mailbox.received == []
    clock.advance(timedelta(minutes=1))
    assert notify.deliver_pending() == 1
    [(_sender, _recipients, message)] = mailbox.received
    assert message["Message-ID"].strip() == queued.message_id
    assert (row(queued).status, row(queued).attempts, row(queued).error) == ("sent", 2, None)


def test_after_the_last_attempt_the_message_has_failed(mailbox: Mailbox, clock: Any) -> None:
    queued = queue(offboarding(), "plan")
    mailbox.answers = ["421 4.7.0 too busy"] * 10
    waits = []
    for _ in range(notify.MAX_ATTEMPTS):
        assert notify.deliver_pending() == 0
        message = row(queued)
        if message.next_attempt_at is None:
            break
        waits.append(message.next_attempt_at - clock.now())
        clock.advance(waits[-1])

    assert waits == [timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2)]
    failed = row(queued)
    assert (failed.status, failed.attempts, failed.sent_at) == ("failed", 5, None)
    assert len(events("message.deferred")) == 4
    [event] = events("message.failed")
    assert event.data["attempt"] == 5 and "421 4.7.0 too busy" in event.data["error"]
    clock.advance(timedelta(days=1))
    assert notify.deliver_pending() == 0 and row(queued).attempts == 5 and mailbox.received == []


def test_a_recipient_refused_for_good_fails_at_once_and_the_next_message_still_goes(mailbox: Mailbox) -> None:
    request = offboarding()
    gone = queue(request, "acknowledgement", recipient="gone@kestrel.example")
    other = queue(request, "save_invitation")
    mailbox.refused = {"gone@kestrel.example"}

    assert notify.deliver_pending() == 1

    assert (row(gone).status, row(gone).attempts) == ("failed", 1)
    assert row(gone).error == "recipient refused: 550 5.1.1 no such mailbox here"
    assert row(other).status == "sent" and [r for _s, r, _m in mailbox.received] == [[CUSTOMER]]


def test_no_message_is_sent_twice(mailbox: Mailbox, clock: Any) -> None:
    request = offboarding()
    first, second = queue(request, "acknowledgement"), queue(request, "plan")
    # Another worker has claimed the second message and is talking to the server: its claim holds.
    with db.transaction():
        claimed = db.session.get_one(OutboxMessage, second.id)
        claimed.attempts, claimed.next_attempt_at = 1, clock.now() + notify.LEASE

    assert notify.deliver_pending() == 1
    assert notify.deliver_pending() == 0  # a second run finds nothing
    assert [m["Message-ID"].strip() for _s, _r, m in mailbox.received] == [first.message_id]

    # That worker died before recording the send: once its claim lapses the message goes again,
    # with the same Message-ID, so a receiver that got it already can drop it.
    clock.advance(notify.LEASE)
    assert notify.deliver_pending() == 1
    sent = [m["Message-ID"].strip() for _s, _r, m in mailbox.received]
    assert sent == [first.message_id, second.message_id]
    assert row(second).attempts == 2
    clock.advance(timedelta(days=30))
    assert notify.deliver_pending() == 0 and len(mailbox.received) == 2  # sent is final


def test_a_customer_who_asked_for_no_contact_gets_only_what_the_law_requires(mailbox: Mailbox) -> None:
    request = offboarding(no_contact=True)
    queued = {kind: queue(request, kind, LEGAL if messages.CATALOGUE[kind].audience == "staff" else CUSTOMER)
              for kind in messages.CATALOGUE}

    assert {kind for kind, message in queued.items() if message.status == "suppressed"} == {
        "acknowledgement", "save_invitation", "plan", "survey_invitation"}
    suppressed = events("message.suppressed")
    assert sorted(event.data["kind"] for event in suppressed) == [
        "acknowledgement", "plan", "save_invitation", "survey_invitation"]
    assert suppressed[0].data["no_contact_since"] == "2026-03-02T09:00:00+00:00"

    assert notify.deliver_pending() == 7
    arrived = {message["Subject"]: recipients for _sender, recipients, message in mailbox.received}
    assert arrived == {"Your Kestrel Labs data export is ready": [CUSTOMER],
                       "Kestrel Labs: your account is closed": [CUSTOMER],
                       "Kestrel Labs: we need more time for your request": [CUSTOMER],
                       f"Request {request.id} (Kestrel Labs): acknowledgement due in 5 h 00 min": [LEGAL],
                       f"Primary purge of tenant {request.tenant_id} (Kestrel Labs): purged": [LEGAL],
                       f"Backups of tenant {request.tenant_id} (Kestrel Labs) purged": [LEGAL],
                       "Win-back reminder: Kestrel Labs left on 2 March 2026": [LEGAL]}
    assert {row(message).status for message in queued.values()} == {"sent", "suppressed"}


@pytest.mark.parametrize("kind", list(messages.CATALOGUE))
def test_every_template_arrives_personalised_in_both_parts(mailbox: Mailbox, kind: str) -> None:
    request = offboarding()
    recipient = LEGAL if messages.CATALOGUE[kind].audience == "staff" else CUSTOMER
    queue(request, kind, recipient)

    assert notify.deliver_pending() == 1

    [(_sender, recipients, message)] = mailbox.received
    assert recipients == [recipient]
    text, html = parts(message)
    for part in (text, html):
        assert "Kestrel Labs" in part and "kestrel-False" in part and f"request {request.id}" in part
        if recipient == CUSTOMER:  # a named contact and the dates that matter to the customer
            assert OWNER[0] in part and OWNER[1] in part
            assert re.search(r"\b\d{1,2} (March|April|May|June) 202[67]\b", part), part
        elif kind == "deadline_warning":  # the deadline, when it falls, the time left and the request
            assert "acknowledgement" in part and "3 March 2026, 09:00 UTC" in part and "5 h 00 min" in part
            assert f"/admin/requests/{request.id}" in part
        elif kind == "winback_due":  # when and why they left, the survey, the note; the owner decides
            assert "2 March 2026" in part and "too expensive" in part and "offer the new team plan" in part
            assert "Nothing was sent to the customer" in part and f"/admin/requests/{request.id}" in part
        else:
            assert CERTIFICATE in part and f"/admin/certificates/{CERTIFICATE}" in part
    assert "<html" not in text and html.lstrip().startswith("<!doctype html>")


def test_login_uses_the_urls_credentials_and_no_record_shows_the_password(
        mailbox: Mailbox, settings: config.Settings) -> None:
    smtp = config.current().smtp
    assert smtp is not None
    with_login = config.load({"SMTP_URL": f"smtp://mailer:s%3Acret-pw@127.0.0.1:{smtp.port}",
                              "OFFBOARD_INSTANCE_DIR": str(settings.instance_dir)}).smtp
    config.use(dataclasses.replace(config.current(), smtp=with_login))
    queue(offboarding(), "acknowledgement")

    assert notify.deliver_pending() == 1

    assert mailbox.logins == [(b"mailer", b"s:cret-pw")]
    assert "s:cret-pw" not in repr(config.current())
    assert not [event for event in db.session.scalars(select(AuditEvent)) if "cret-pw" in event.canonical]


def test_without_smtp_url_messages_are_written_as_eml_files(settings: config.Settings, session: None,
                                                            clock: Any) -> None:
    assert settings.smtp is None
    queued = queue(offboarding(), "acknowledgement")

    assert notify.deliver_pending() == 1

    path = notify.mail_dir() / f"{queued.id:08d}-acknowledgement.eml"
    written = email.message_from_bytes(path.read_bytes(), policy=default_policy)
    assert written["Message-ID"].strip() == queued.message_id
    assert written.get_content_type() == "multipart/alternative"
    assert path.stat().st_mode & 0o777 == 0o600
    assert events("message.sent")[0].data["answer"] == f"written to {path.name}"
    path.unlink()
