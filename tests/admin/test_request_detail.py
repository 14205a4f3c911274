"""/admin/requests/<id>: facts, buttons per state and role, every form's refusals, the plan, and a
whole run from a new request to a re-issued link with real RQ jobs."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from compliance import db, workflow
from compliance.models import (
    AuditEvent,
    DownloadLink,
    Export,
    OffboardingRequest,
    OutboxMessage,
    SourceConfig,
)
from tests.admin.test_request_pages import error_beside, move, new_request, new_tenant

FORMS = re.compile(r'<form (?:class="inline" )?method="post" action="([^"]+)"')


@pytest.fixture(autouse=True)
def _frozen(clock):  # type: ignore[no-untyped-def]
    """Every test runs on the frozen clock (2 Mar 2026, 09:00 UTC), so deadlines and dates are exact."""
    return clock


def posted_forms(html: str) -> set[str]:
    """Where the page's state-changing forms post to (sign-out left aside)."""
    return set(FORMS.findall(html)) - {"/admin/sign-out"}


def events(request_id: int, action: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(
        AuditEvent.request_id == request_id, AuditEvent.action == action).order_by(AuditEvent.id)))


def status_of(request_id: int) -> str:
    return db.session.scalar(select(OffboardingRequest.status).where(OffboardingRequest.id == request_id)
                             .execution_options(populate_existing=True)) or ""


def ready_export(offboarding: OffboardingRequest) -> Export:
    """A ready export row (no real bundle): enough for the link forms' refusals."""
    move(offboarding, "acknowledge", "verify", "approve", "start_export", "mark_ready")
    export = Export(request_id=offboarding.id, formats=["csv"], status="ready", created_by="test",
                    bundle_sha256="0" * 64, bundle_bytes=10, manifest={"files": []})
    db.session.add(export)
    db.session.commit()
    return export


def test_the_page_shows_the_facts_and_only_the_buttons_allowed_now(staff) -> None:  # type: ignore[no-untyped-def]
    offboarding = new_request(new_tenant("Facts GmbH", "DE"), churn_detail="Too pricey")
    url = f"/admin/requests/{offboarding.id}"
    base = f"/admin/requests/{offboarding.id}"
    csm = staff("csm").get(url).get_data(as_text=True)
    assert f"<h1>Request #{offboarding.id} · Facts GmbH</h1>" in csm
    for fact in ("cfo@acme.example", "owner@example.com", "Price: Too pricey", "CSV, JSON, PARQUET, PDF",
                 "<dd>GDPR</dd>", "02 Apr 2026, 09:00 UTC"):
        assert fact in csm
    assert posted_forms(csm) == {f"{base}/acknowledge", f"{base}/withdraw", f"{base}/extend-deadline"}
    admin = staff("admin").get(url).get_data(as_text=True)
    assert posted_forms(admin) == {f"{base}/acknowledge", f"{base}/withdraw", f"{base}/extend-deadline"}
    auditor = staff("auditor").get(url).get_data(as_text=True)
    assert posted_forms(auditor) == set()
    assert "Nothing here is open to your role (auditor)." in auditor
    legal = staff("legal").get(url).get_data(as_text=True)
    assert posted_forms(legal) == {f"{base}/extend-deadline"}

    move(offboarding, "acknowledge")
    assert posted_forms(staff("csm", email="c1@example.com").get(url).get_data(as_text=True)) == {
        f"{base}/verify", f"{base}/withdraw", f"{base}/extend-deadline"}
    move(offboarding, "verify")
    verified = staff("csm", email="c4@example.com").get(url).get_data(as_text=True)
    assert posted_forms(verified) == {f"{base}/approve", f"{base}/save-attempts", f"{base}/withdraw",
                                      f"{base}/extend-deadline"}
    assert "No attempt" in verified and "A standard account of under two years" in verified
    assert "0 of 1 recorded" in verified
    move(offboarding, "approve")
    assert posted_forms(staff("csm", email="c2@example.com").get(url).get_data(as_text=True)) == {
        f"{base}/export", f"{base}/withdraw", f"{base}/extend-deadline"}
    move(offboarding, "start_export")
    assert posted_forms(staff("admin", email="a2@example.com").get(url).get_data(as_text=True)) == {
        f"{base}/fail", f"{base}/extend-deadline"}
    assert posted_forms(staff("csm", email="c3@example.com").get(url).get_data(as_text=True)) == {
        f"{base}/extend-deadline"}


def test_a_request_without_a_legal_deadline_offers_no_extension(staff) -> None:  # type: ignore[no-untyped-def]
    offboarding = new_request(new_tenant("Nowhere Inc", "US-NY"))
    html = staff("legal").get(f"/admin/requests/{offboarding.id}").get_data(as_text=True)
    assert posted_forms(html) == set()
    assert "<dd>None</dd>" in html
    assert staff("csm").get("/admin/requests/999999").status_code == 404


def test_transitions_change_the_request_through_the_workflow(staff) -> None:  # type: ignore[no-untyped-def]
    offboarding = new_request()
    user = staff("csm", name="Carla Customer-Success")
    base = f"/admin/requests/{offboarding.id}"
    for action, state, form in (("acknowledge", "acknowledged", {}),
                                ("verify", "verified", {"verify_note": "Confirmed by phone: the price"}),
                                ("approve", "approved", {})):
        user.get(base)
        answer = user.post(f"{base}/{action}", form)
        assert (answer.status_code, answer.headers["Location"]) == (302, base)
        assert status_of(offboarding.id) == state
        assert events(offboarding.id, f"request.{state}")[0].actor == f"user:{user.user.id}"
    page = user.get(base).get_data(as_text=True)
    assert f"Request #{offboarding.id} is approved." in page
    # The timeline names the person, says what happened in words, oldest first.
    timeline = page[page.index('<ol class="timeline">'):]
    assert re.search(r"<strong>Request received</strong> · test.*<strong>Acknowledged</strong> · Carla "
                     r"Customer-Success.*<strong>Verified</strong> · Carla Customer-Success.*"
                     r"<strong>Approved</strong> · Carla Customer-Success", timeline, re.S)
    verified = db.session.get(OffboardingRequest, offboarding.id)
    assert (verified.verified_by, verified.verification_note, verified.approved_by) == (
        f"user:{user.user.id}", "Confirmed by phone: the price", f"user:{user.user.id}")
    # A transition the state does not allow is a 409 page naming the state, and changes nothing.
    refused = user.post(f"{base}/close", {"invoice_ref": "INV-9"})
    assert refused.status_code == 409
    assert "cannot close a request in state &#39;approved&#39;" in refused.get_data(as_text=True)
    assert status_of(offboarding.id) == "approved"


def test_withdraw_needs_a_reason_shown_beside_the_box(staff) -> None:  # type: ignore[no-untyped-def]
    offboarding = new_request()
    user = staff("csm")
    base = f"/admin/requests/{offboarding.id}"
    user.get(base)
    answer = user.post(f"{base}/withdraw", {"withdraw_reason": "  "})
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert error_beside(html, "withdraw_reason") == "Give a reason."
    assert '<details class="action-form" open>' in html
    # Each action's box says what it is for: several sit on one page, each in its own <details>.
    assert '<label for="withdraw_reason">Why the request is withdrawn</label>' in html
    assert status_of(offboarding.id) == "received"
    user.post(f"{base}/withdraw", {"withdraw_reason": "Customer stays after all"})
    assert status_of(offboarding.id) == "withdrawn"
    assert events(offboarding.id, "request.withdrawn")[0].data["reason"] == "Customer stays after all"
    html = user.get(base).get_data(as_text=True)
    assert posted_forms(html) == set() and "Nothing more to do" in html
    assert "Withdrawn: no deadline applies" in html


def test_legal_extends_the_deadline_once(staff) -> None:  # type: ignore[no-untyped-def]
    offboarding = new_request(new_tenant("Extend SARL", "FR"))
    user = staff("legal")
    base = f"/admin/requests/{offboarding.id}"
    user.get(base)
    refused = user.post(f"{base}/extend-deadline", {}).get_data(as_text=True)
    assert error_beside(refused, "extend_reason") == "Give a reason."
    assert '<label for="extend_reason">Why the deadline is extended</label>' in refused
    answer = user.post(f"{base}/extend-deadline", {"extend_reason": "Complex request: 40 systems"})
    assert answer.status_code == 302
    db.session.expire_all()
    extended = db.session.get(OffboardingRequest, offboarding.id)
    assert extended.legal_deadline == datetime(2026, 6, 2, 9, 0, tzinfo=UTC)  # GDPR: two more months
    event = events(offboarding.id, "request.deadline_extended")[0]
    assert (event.actor, event.data["reason"]) == (f"user:{user.user.id}", "Complex request: 40 systems")
    html = user.get(base).get_data(as_text=True)
    assert "The legal deadline is now 02 Jun 2026, 09:00 UTC." in html
    assert posted_forms(html) == set()  # the one extension is used
    assert "Complex request: 40 systems" in html


def refusal_cases(offboarding: OffboardingRequest, export: Export,
                  link: DownloadLink) -> list[tuple[str, dict[str, str], str]]:
    """(url, form, a role that may not post it)."""
    base = f"/admin/requests/{offboarding.id}"
    return [
        (f"{base}/acknowledge", {}, "legal"),
        (f"{base}/approve", {}, "auditor"),
        (f"{base}/close", {"invoice_ref": "INV-9"}, "legal"),
        (f"{base}/verify", {"verify_note": "x"}, "auditor"),
        (f"{base}/save-attempts", {"offered": "no"}, "legal"),
        (f"{base}/reduce-access", {}, "auditor"),
        (f"{base}/collect-feedback", {}, "legal"),
        (f"{base}/withdraw", {"withdraw_reason": "x"}, "auditor"),
        (f"{base}/fail", {"fail_reason": "x"}, "csm"),
        (f"{base}/extend-deadline", {"extend_reason": "x"}, "auditor"),
        (f"{base}/export", {}, "legal"),
        (f"/admin/exports/{export.id}/retry", {}, "auditor"),
        (f"/admin/exports/{export.id}/links", {"recipient": "a@b.example", "expires_in_days": "7",
                                               "max_downloads": "5"}, "legal"),
        (f"/admin/links/{link.id}/revoke", {}, "auditor"),
        (f"/admin/links/{link.id}/reissue", {}, "legal"),
    ]


def snapshot(offboarding: OffboardingRequest) -> tuple[Any, ...]:
    db.session.expire_all()
    return (status_of(offboarding.id), db.session.scalar(select(func.count()).select_from(AuditEvent)),
            db.session.scalar(select(func.count()).select_from(DownloadLink)),
            db.session.scalar(select(func.count()).select_from(Export)),
            db.session.scalar(select(DownloadLink.revoked_at).where(DownloadLink.revoked_at.is_not(None))))


def test_every_form_is_refused_without_its_token_or_its_role(staff) -> None:  # type: ignore[no-untyped-def]
    offboarding = new_request(new_tenant("Guarded BV", "NL"))
    export = ready_export(offboarding)
    link = workflow_link(export)
    people = {role: staff(role) for role in ("admin", "csm", "legal", "auditor")}
    for person in people.values():
        person.get(f"/admin/requests/{offboarding.id}")  # a page with a token, as a browser would have
    before = snapshot(offboarding)
    for url, form, outsider in refusal_cases(offboarding, export, link):
        without = people["admin"].post(url, form, csrf=False)
        assert without.status_code == 400, url
        assert "security token" in without.get_data(as_text=True)
        forbidden = people[outsider].post(url, form)
        assert forbidden.status_code == 403, (url, outsider)
        assert snapshot(offboarding) == before, url


def workflow_link(export: Export) -> DownloadLink:
    from exporters import links

    issued = links.issue(export, recipient="cfo@acme.example", expires_in=timedelta(days=7), max_downloads=3,
                         actor="test")
    db.session.commit()
    return issued.link


def test_link_form_errors_stand_beside_their_fields(staff) -> None:  # type: ignore[no-untyped-def]
    offboarding = new_request()
    export = ready_export(offboarding)
    user = staff("csm")
    user.get(f"/admin/requests/{offboarding.id}")
    answer = user.post(f"/admin/exports/{export.id}/links",
                       {"recipient": "not-mail", "expires_in_days": "45", "max_downloads": "0"})
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert error_beside(html, "recipient") == "Not a valid email address."
    assert error_beside(html, "expires_in_days") == "Enter a whole number of days from 1 to 30."
    assert "greater than or equal to 1" in error_beside(html, "max_downloads")
    assert 'value="not-mail"' in html and 'value="45"' in html
    assert db.session.scalar(select(func.count()).select_from(DownloadLink)) == 0


def test_the_plan_is_dated_from_the_request_and_marks_today(staff, clock) -> None:  # type: ignore[no-untyped-def]
    offboarding = new_request()  # received Mon 2 Mar 2026, 09:00 UTC
    phases = workflow.plan(offboarding.received_at, date(2026, 3, 6))
    assert [(p.name, p.first_day, p.last_day, p.starts, p.ends, p.current) for p in phases] == [
        ("export", 1, 3, date(2026, 3, 2), date(2026, 3, 4), False),
        ("knowledge_transfer", 4, 7, date(2026, 3, 5), date(2026, 3, 8), True),
        ("access_reduction", 8, 14, date(2026, 3, 9), date(2026, 3, 15), False),
        ("final_billing_and_closure", 15, 15, date(2026, 3, 16), date(2026, 3, 16), False),
        ("deactivated", 16, None, date(2026, 3, 17), None, False),
    ]
    assert [p.current for p in workflow.plan(offboarding.received_at, date(2026, 3, 16))] == [
        False, False, False, True, False]
    assert workflow.plan(offboarding.received_at, date(2027, 1, 1))[-1].current
    clock.freeze(datetime(2026, 3, 6, 12, 0, tzinfo=UTC))
    html = staff("auditor").get(f"/admin/requests/{offboarding.id}").get_data(as_text=True)
    plan = html[html.index('<table class="plan">'):]
    assert re.search(r'<tr class="current" aria-current="step">\s*<th scope="row">Knowledge transfer '
                     r'<span class="badge badge-ok">Now</span></th>\s*<td>4\u20137</td>\s*'
                     r"<td>Thu 05 Mar 2026 \u2013 Sun 08 Mar 2026</td>", plan)
    assert "<td>Tue 17 Mar 2026 onwards</td>" in plan and plan.count('aria-current="step"') == 1


def test_the_api_answers_the_plan(client, as_role, clock) -> None:  # type: ignore[no-untyped-def]
    offboarding = new_request()
    clock.freeze(datetime(2026, 3, 3, 8, 0, tzinfo=UTC))
    answer = client.get(f"/api/v1/requests/{offboarding.id}", headers=as_role("auditor")).get_json()
    assert answer["plan"][0] == {"name": "export", "first_day": 1, "last_day": 3, "starts": "2026-03-02",
                                 "ends": "2026-03-04", "current": True}
    assert answer["plan"][-1] == {"name": "deactivated", "first_day": 16, "last_day": None,
                                  "starts": "2026-03-17", "ends": None, "current": False}


@pytest.fixture
def demo_tenant(tmp_path: Path) -> Any:
    tenant = new_tenant("Demo Run GmbH", "DE", contact_email="it@demo-run.example")
    db.session.add(SourceConfig(tenant_id=tenant.id, kind="demo", name="demo",
                                config={"rows": 300, "seed": 0, "state_dir": str(tmp_path / "demo")}))
    db.session.commit()
    return tenant


def test_a_whole_run_from_the_pages(staff, work, demo_tenant) -> None:  # type: ignore[no-untyped-def]
    user = staff("csm", name="Carla Customer-Success")
    user.get("/admin/requests/new")
    created = user.post("/admin/requests/new", {
        "tenant_id": str(demo_tenant.id), "requested_by": "cfo@demo-run.example", "channel": "email",
        "churn_reason": "switched_to_competitor", "formats": ["csv", "json", "parquet", "pdf"],
        "owner": user.user.email})
    assert created.status_code == 302
    page_url = created.headers["Location"]
    request_id = int(page_url.rsplit("/", 1)[1])
    for action, form in (("acknowledge", {}), ("verify", {"verify_note": "Intended: they moved to a rival"}),
                         ("approve", {})):
        user.get(page_url)
        assert user.post(f"{page_url}/{action}", form).status_code == 302
    user.get(page_url)
    started = user.post(f"{page_url}/export")
    assert (started.status_code, started.headers["Location"]) == (302, f"{page_url}#export")
    running = user.get(page_url).get_data(as_text=True)
    assert f'data-live="{page_url}/progress"' in running and 'data-live-render="exportProgress"' in running
    assert status_of(request_id) == "exporting"
    progress = user.get(f"{page_url}/progress").get_json()
    assert (progress["finished"], progress["export"]["status"]) == (False, "pending")

    work()

    progress = user.get(f"{page_url}/progress").get_json()
    assert progress["finished"] is True and progress["request_status"] == "export_ready"
    assert progress["export"]["status"] == "ready"
    tasks = progress["export"]["tasks"]
    assert len(tasks) == 5 and all(t["percent"] == 100.0 and t["status"] == "done" for t in tasks)
    assert {t["source"] for t in tasks} == {"demo"} and sum(t["rows"] for t in tasks) > 300

    page = user.get(page_url).get_data(as_text=True)
    assert "data-live=" not in page  # finished: nothing left to poll
    assert page.count('aria-valuenow="100"') == 5 and page.count(">100 %<") == 5
    export = db.session.scalars(select(Export).where(Export.request_id == request_id)).one()
    bundle = page[page.index('id="bundle"'):]
    for file in export.manifest["files"]:
        assert file["path"] in bundle and file["sha256"] in bundle
    assert "report.pdf" in bundle and export.bundle_sha256 in bundle
    assert f"/admin/requests/{request_id}/reduce-access" in posted_forms(page)

    # Issue: the URL is in this answer only, never in a redirect or the session cookie.
    issued = user.post(f"/admin/exports/{export.id}/links",
                       {"recipient": "it@demo-run.example", "expires_in_days": "3", "max_downloads": "2"})
    assert issued.status_code == 201
    html = issued.get_data(as_text=True)
    url = re.search(r'<input id="issued-url" type="text" readonly value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    assert "/d/" in url
    assert url not in "".join(issued.headers.getlist("Set-Cookie"))
    link = db.session.scalars(select(DownloadLink).where(DownloadLink.export_id == export.id)).one()
    assert (link.recipient, link.max_downloads) == ("it@demo-run.example", 2)
    assert link.created_by == f"user:{user.user.id}"
    assert link.expires_at - link.created_at == timedelta(days=3)
    event = events(request_id, "link.issued")[0]
    assert (event.actor, event.data["recipient"]) == (f"user:{user.user.id}", "it@demo-run.example")
    mail = db.session.scalars(select(OutboxMessage).where(OutboxMessage.recipient == link.recipient,
                                                          OutboxMessage.kind == "export_ready")).one()
    told = db.session.scalars(select(OutboxMessage.kind).where(OutboxMessage.request_id == request_id)
                              .order_by(OutboxMessage.id)).all()
    assert told == ["acknowledgement", "plan", "export_ready"]
    assert url in mail.body
    again = user.get(page_url).get_data(as_text=True)
    assert url not in again  # shown once
    assert "it@demo-run.example" in again and "0 of 2" in again and ">never<" in again

    # The customer downloads once: the link's history shows it.
    token_path = url[url.index("/d/"):]
    customer = user.client.application.test_client()
    assert customer.get(token_path + "/bundle.zip").status_code == 200
    history = user.get(page_url).get_data(as_text=True)
    assert "1 of 2" in history and "1 attempt" in history and "bundle · ok" in history

    revoked = user.post(f"/admin/links/{link.id}/revoke")
    assert (revoked.status_code, revoked.headers["Location"]) == (302, f"{page_url}#links")
    db.session.expire_all()
    assert db.session.get(DownloadLink, link.id).revoked_at is not None
    assert events(request_id, "link.revoked")[0].actor == f"user:{user.user.id}"
    assert customer.get(token_path).status_code == 410
    assert 'class="status status-revoked"' in user.get(page_url).get_data(as_text=True)

    reissued = user.post(f"/admin/links/{link.id}/reissue")
    assert reissued.status_code == 201
    fresh_url = re.search(r'readonly value="([^"]+)"', reissued.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    assert fresh_url != url
    fresh = db.session.scalars(select(DownloadLink).where(DownloadLink.replaces_id == link.id)).one()
    assert (fresh.recipient, fresh.max_downloads, fresh.expires_at - fresh.created_at) == (
        "it@demo-run.example", 2, timedelta(days=3))
    assert customer.get(fresh_url[fresh_url.index("/d/"):]).status_code == 200

    user.get(page_url)
    assert user.post(f"{page_url}/reduce-access").status_code == 302
    assert status_of(request_id) == "access_reduced"
    missing = user.post(f"{page_url}/close", {"invoice_ref": " "})
    assert missing.status_code == 400 and error_beside(missing.get_data(as_text=True), "invoice_ref")
    assert user.post(f"{page_url}/close", {"invoice_ref": "INV-2026-0107"}).status_code == 302
    assert status_of(request_id) == "closed"
    db.session.expire_all()
    assert db.session.get(OffboardingRequest, request_id).tenant.closed_at is not None
    closure = db.session.scalars(select(OutboxMessage).where(OutboxMessage.request_id == request_id,
                                                             OutboxMessage.kind == "closure")).one()
    assert closure.recipient == "it@demo-run.example" and "INV-2026-0107" in closure.body
    closed = user.get(page_url).get_data(as_text=True)
    assert re.search(r"Acknowledge · met.*Export · met.*Legal GDPR · met", closed, re.S)


def test_failed_parts_are_retried_from_the_page(staff, work, demo_tenant, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from exporters.sources.demo import DemoSource

    offboarding = new_request(demo_tenant)
    move(offboarding, "acknowledge", "verify", "approve")
    user = staff("csm")
    base = f"/admin/requests/{offboarding.id}"
    user.get(base)
    real_read = DemoSource.read

    def broken(self: Any, dataset: Any, scope: Any, batch_rows: int) -> Any:
        if dataset.name == "usage_daily":
            raise RuntimeError("the usage store is down")
        return real_read(self, dataset, scope, batch_rows)

    monkeypatch.setattr(DemoSource, "read", broken)
    user.post(f"{base}/export")
    work()
    export = db.session.scalars(select(Export).where(Export.request_id == offboarding.id)).one()
    progress = user.get(f"{base}/progress").get_json()
    assert progress["finished"] is True and progress["export"]["status"] == "failed"
    failed = [t for t in progress["export"]["tasks"] if t["status"] == "failed"]
    assert [t["dataset"] for t in failed] == ["usage_daily"] and "usage store is down" in failed[0]["error"]
    page = user.get(base).get_data(as_text=True)
    assert f"/admin/exports/{export.id}/retry" in posted_forms(page)
    assert "the usage store is down" in page

    monkeypatch.setattr(DemoSource, "read", real_read)
    retried = user.post(f"/admin/exports/{export.id}/retry")
    assert (retried.status_code, retried.headers["Location"]) == (302, f"{base}#export")
    assert events(offboarding.id, "export.retried")[0].actor == f"user:{user.user.id}"
    work()
    progress = user.get(f"{base}/progress").get_json()
    assert progress["export"]["status"] == "ready" and progress["request_status"] == "export_ready"


def test_the_save_attempt_form_shows_the_rule_and_an_accepted_offer_withdraws(staff) -> None:  # type: ignore[no-untyped-def]
    offboarding = new_request(new_tenant("Keep Us AG", "DE", value_tier="strategic"))
    move(offboarding, "acknowledge", "verify")
    user = staff("csm")
    base = f"/admin/requests/{offboarding.id}"
    html = user.get(base).get_data(as_text=True)
    assert "Attempt advised" in html
    assert "A strategic account leaving for a reason an offer can address" in html
    assert "0 of 2 recorded (strategic account)" in html
    refused = user.post(f"{base}/save-attempts", {"offered": "yes", "outcome": "declined"})
    assert refused.status_code == 400
    assert error_beside(refused.get_data(as_text=True), "offer") == "Required when a save was offered."
    assert user.post(f"{base}/save-attempts", {"offered": "yes", "offer": "A year at 20% off",
                                               "outcome": "declined"}).status_code == 302
    assert "1 of 2 recorded" in user.get(base).get_data(as_text=True)
    assert user.post(f"{base}/save-attempts", {"offered": "yes", "offer": "Two years at 30% off",
                                               "outcome": "accepted"}).status_code == 302
    assert status_of(offboarding.id) == "withdrawn"
    page = user.get(base).get_data(as_text=True)
    assert "the customer accepted: the request is withdrawn" in page and "saved: Two years at 30% off" in page
    assert len(events(offboarding.id, "request.save_attempted")) == 2
    kinds = db.session.scalars(select(OutboxMessage.kind)
                               .where(OutboxMessage.request_id == offboarding.id)).all()
    assert kinds.count("save_invitation") == 2


def test_an_enterprise_request_needs_a_second_person_to_approve(staff) -> None:  # type: ignore[no-untyped-def]
    offboarding = new_request(new_tenant("Big Co", "DE", value_tier="enterprise"))
    move(offboarding, "acknowledge")
    verifier = staff("csm", email="verifier@example.com")
    base = f"/admin/requests/{offboarding.id}"
    verifier.get(base)
    assert verifier.post(f"{base}/verify", {"verify_note": "Called back: intended"}).status_code == 302
    verifier.get(base)
    refused = verifier.post(f"{base}/approve")
    assert refused.status_code == 409 and "someone other than its verifier" in refused.get_data(as_text=True)
    other = staff("csm", email="approver@example.com")
    other.get(base)
    assert other.post(f"{base}/approve").status_code == 302
    assert status_of(offboarding.id) == "approved"
    db.session.expire_all()
    assert db.session.get(OffboardingRequest, offboarding.id).approved_by == f"user:{other.user.id}"
