"""The end of an offboarding in a real browser (Debian's Chromium, driven by Playwright) against
the real service: the request is closed with its invoice reference, the customer answers the
exit survey on a phone, once, and the answers reach the dashboard's figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.e2e.conftest import PHONE, answer_survey, check_page

pytestmark = pytest.mark.e2e
# What the hourly job does a day after closure, now: create the link and queue the invitation.
INVITE = """
import sys
from compliance import config, db, feedback
config.use(config.load())
db.configure(config.current().database_url)
with db.transaction():
    invited = feedback.invite(int(sys.argv[1]), actor="test")
print(invited.url)
"""


def test_the_customer_answers_the_exit_survey_once(service: Any, service_env: dict[str, str],
                                                   browser: Browser, shots: Path) -> None:
    request_id = service.ready_export()["request_id"]
    for action, body in (("reduce-access", None), ("close", {"final_invoice_ref": "INV-2026-0042"})):
        status, answer = service.api("POST", f"/requests/{request_id}/{action}", body)
        assert status == 200, answer
    made = subprocess.run([sys.executable, "-c", INVITE, str(request_id)], env=service_env,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    survey = service.base + "/survey/" + made.stdout.strip().rsplit("/survey/", 1)[1]

    context = browser.new_context(viewport=PHONE, bypass_csp=True)  # axe is injected
    page = context.new_page()
    opened = page.goto(survey)
    assert opened is not None and opened.status == 200
    assert opened.headers["cache-control"] == "no-store"
    assert opened.headers["referrer-policy"] == "no-referrer"
    check_page(page, shots, "survey")
    answer_survey(page, reason="Too expensive", better="Cheaper seats for small teams", rating=8,
                  come_back="Maybe", recommend=9)
    assert page.locator("h1").inner_text() == "Thank you"
    check_page(page, shots, "survey-thanks")

    status, after = service.api("GET", f"/requests/{request_id}")
    assert status == 200 and after["status"] == "feedback_collected", after
    assert after["final_invoice_ref"] == "INV-2026-0042"
    again = page.goto(survey)  # one set of answers per link
    assert again is not None and again.status == 410
    check_page(page, shots, "survey-answered")
    context.close()

    status, report = service.api("GET", "/reports/dashboard")
    assert status == 200, report
    figures = report["feedback"]
    assert figures["reasons"]["too_expensive"]["count"] == 1, figures
    assert service.stop() == 0, service.output
