"""The admin pages in a real browser (Debian's Chromium, driven by Playwright) against the real
service (web + worker + scheduler in subprocesses, real database and Redis).

A CSM signs in, opens a request, watches the export's progress bars reach 100 % without a
reload, issues a link, and the customer downloads the bundle in a second browser context;
legal places a hold and sees the purge blocked; an auditor sees no button that changes
anything, and a form posted anyway is refused. Every page is checked with axe-core (no
serious or critical violation), at 375 px without sideways scrolling, and screenshotted
under ``test-output/screenshots/<backend>/`` (``OFFBOARD_TEST_OUTPUT`` moves it).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser
from sqlalchemy import text

from tests.e2e.conftest import DEMO_TENANT_ID, PHONE, database

pytestmark = pytest.mark.e2e
CHECKS_ONLY = {"/admin/audit/verify", "/admin/certificates/verify"}  # forms that verify and change nothing


def test_a_csm_runs_an_offboarding_and_the_customer_downloads(service: Any, people: Any, browser: Browser,
                                                               tmp_path: Path) -> None:
    csm = people("csm")
    page = csm.page
    csm.check("dashboard")

    # A new request for the demo account: first a mistake, shown beside its field.
    csm.open("/admin/requests/new", "request-new")
    page.get_by_label("Existing account").select_option(str(DEMO_TENANT_ID))
    page.get_by_role("button", name="Open the request").click()
    assert page.locator("#requested_by-error").is_visible()
    csm.check("request-new-errors")
    page.get_by_label("Requested by").fill("cfo@demo-customer.example")
    page.get_by_label("Channel").select_option("email")
    page.get_by_label("Churn reason").select_option("price")
    page.get_by_role("button", name="Open the request").click()
    assert re.search(r"/admin/requests/\d+$", page.url), page.url
    request_path = page.url.removeprefix(service.base)

    page.get_by_role("button", name="Acknowledge", exact=True).click()
    page.get_by_label("Verification note").fill("Confirmed on the phone: the price, no save wanted")
    page.get_by_role("button", name="Verify", exact=True).click()
    assert page.url.endswith(request_path), page.url
    csm.check("request-verified")
    # The demo account is enterprise: a second person approves (the admin, on a phone).
    phone = people("admin", PHONE)
    phone.open(request_path, "request-to-approve").get_by_role("button", name="Approve", exact=True).click()
    assert phone.page.url.endswith(request_path), phone.page.url
    page.reload()
    page.get_by_role("button", name="Start the export", exact=True).click()
    assert page.url.endswith(request_path) or request_path in page.url
    # The bars fill while the page stays put: a marker set now survives only without a reload.
    page.evaluate("window.stayedHere = true")
    bars = page.get_by_role("progressbar")
    page.locator("[data-live-announce]").get_by_text("The export is ready").wait_for(timeout=90_000)
    assert page.evaluate("window.stayedHere") is True
    assert bars.count() >= 1
    assert all(bars.nth(i).get_attribute("aria-valuenow") == "100" for i in range(bars.count()))
    csm.check("request-exported")

    csm.open(request_path, "request-ready")
    sha256 = page.locator("#bundle code").first.inner_text().strip()
    page.get_by_label("Recipient email").fill("it@demo-customer.example")
    page.get_by_role("button", name="Issue and e-mail the link").click()
    url = page.locator("input[readonly]").first.input_value()
    assert "/d/" in url, url
    csm.check("link-issued")

    customer = browser.new_context(viewport=PHONE, accept_downloads=True)
    shop = customer.new_page()
    assert shop.goto(url).status == 200
    with shop.expect_download() as started:
        shop.get_by_role("link", name="Download the bundle").click()
    saved = tmp_path / started.value.suggested_filename
    started.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == sha256
    customer.close()

    csm.open(request_path, "request-downloaded")
    assert "1 of 5" in page.locator("#links").inner_text()  # the download is counted on the page
    for path, name in (("/admin/requests", "requests"), (f"/admin/tenants/{DEMO_TENANT_ID}", "tenant"),
                       ("/admin/tenants", "tenants")):
        csm.open(path, name)
    for path, name in (("/admin/", "dashboard"), ("/admin/requests", "requests"), (request_path, "request"),
                       ("/admin/requests/new", "request-new"), ("/admin/tenants", "tenants"),
                       (f"/admin/tenants/{DEMO_TENANT_ID}", "tenant"), ("/admin/legal", "legal"),
                       ("/admin/audit", "audit")):
        phone.open(path, name)


def test_legal_places_a_hold_and_the_purge_is_blocked(service: Any, service_env: dict[str, str],
                                                      people: Any) -> None:
    # The demo account closed 100 days ago: its primary purge is 10 days overdue.
    closed = datetime.now(UTC) - timedelta(days=100)
    engine = database(service_env)
    with engine.begin() as connection:
        connection.execute(text("UPDATE tenants SET closed_at = :at WHERE id = :id"),
                           {"at": closed, "id": DEMO_TENANT_ID})
    legal = people("legal")
    page = legal.open("/admin/legal", "legal")
    place = page.locator("form", has=page.get_by_role("button", name="Place legal hold"))
    place.get_by_label("Tenant").select_option(str(DEMO_TENANT_ID))
    place.get_by_label("Matter reference").fill("MAT-2026-17")
    place.get_by_label("Reason").fill("Litigation hold: pending dispute over invoices")
    place.get_by_role("button", name="Place legal hold").click()
    assert "MAT-2026-17" in page.locator("main").inner_text()
    legal.check("legal-held")

    status, run = service.api("POST", "/retention/runs", {"dry_run": False})
    assert status in (200, 201, 202), run
    assert DEMO_TENANT_ID in run["report"]["held"]
    page = legal.open("/admin/legal", "legal-after-run")
    assert "blocked by hold mat-2026-17" in page.locator("#purges").inner_text().lower()
    page = legal.open(f"/admin/tenants/{DEMO_TENANT_ID}", "tenant-held")
    assert "MAT-2026-17" in page.locator("main").inner_text()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT purged_at FROM tenants WHERE id = :id"),
                                  {"id": DEMO_TENANT_ID}).scalar() is None
    engine.dispose()


def test_an_auditor_sees_no_button_and_a_posted_form_is_refused(service: Any, people: Any) -> None:
    export = service.ready_export()
    request_path = f"/admin/requests/{export['request_id']}"
    auditor = people("auditor")
    for path, name in (("/admin/", "auditor-dashboard"), ("/admin/requests", "auditor-requests"),
                       (request_path, "auditor-request"), ("/admin/tenants", "auditor-tenants"),
                       (f"/admin/tenants/{DEMO_TENANT_ID}", "auditor-tenant"),
                       ("/admin/legal", "auditor-legal"),
                       ("/admin/audit", "auditor-audit")):
        page = auditor.open(path, name)
        changing = page.locator("main form[method=post]")
        allowed = [changing.nth(i).get_attribute("action") for i in range(changing.count())]
        assert set(allowed) <= CHECKS_ONLY, (path, allowed)
    token = auditor.page.locator("header input[name=csrf_token]").input_value()
    for action in (f"{request_path}/close", f"/admin/exports/{export['id']}/links"):
        form = {"csrf_token": token, "recipient": "someone@example.com", "expires_in_days": "7",
                "max_downloads": "5"}
        refused = auditor.page.request.post(f"{service.base}{action}", form=form)
        assert refused.status == 403 and "You may not do this" in refused.text()
    status, after = service.api("GET", f"/requests/{export['request_id']}")
    assert status == 200 and after["status"] == "export_ready"
    status, listed = service.api("GET", f"/exports/{export['id']}/links")
    assert listed["items"] == []
