"""The dashboard page: the reports' figures in words and numbers, and charts that are SVG images
with a title and a description saying every number they draw."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import pytest

from compliance import db, winback
from compliance.admin import charts
from compliance.models import ROLES
from tests.compliance.test_api_reports import known_data
from tests.compliance.test_feedback import closed

SVG = "{http://www.w3.org/2000/svg}"


def svgs(page: str) -> dict[str, ET.Element]:
    """Every inline chart of the page, parsed as XML (so each is well-formed), by its title."""
    found = {}
    for text in re.findall(r"<svg\b.*?</svg>", page, flags=re.S):
        svg = ET.fromstring(text)
        found[svg.findtext(f"{SVG}title")] = svg
    return found


def cells(page: str, header: str) -> list[str]:
    """The cells of the table row whose header cell says ``header``."""
    row = re.search(rf"<tr><th scope=\"row\"[^>]*>(?:<a [^>]*>)?{re.escape(header)}(?:</a>)?</th>(.*?)</tr>",
                    page, flags=re.S)
    assert row, f"no row {header!r}"
    return [cell.strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), flags=re.S)]


@pytest.mark.parametrize("role", ROLES)
def test_every_role_sees_the_dashboard(staff: Any, role: str) -> None:
    page = staff(role).get("/admin/")
    assert page.status_code == 200 and "<h1>Dashboard</h1>" in page.get_data(as_text=True)


def test_the_figures_of_known_data(staff: Any, clock: Any) -> None:
    known_data()
    page = staff("csm").get("/admin/").get_data(as_text=True)
    words = " ".join(page.split())
    assert "Figures at 02 Mar 2026, 09:00 UTC" in words and "received since Tue 01 Apr 2025" in words
    stats = dict(re.findall(r'<dt class="stat-label">([^<]+)</dt>\s*<dd class="stat">([^<]+)</dd>', page))
    assert stats == {"Open requests": "8", "Overdue": "8", "Exports delivered within 72 h": "64%",
                     "Purges due within 30 days": "3", "Surveys answered": "0",  # exit feedback: none yet
                     "Average rating (1\u201310)": "—", "Would come back": "—", "Recommend score (NPS)": "—"}
    assert "7 of 11" in page
    assert cells(page, "Acknowledgement") == ["11", "5.0 h", "9.0 h"]
    assert cells(page, "Export delivered") == ["10", "50.0 h", "90.0 h"]
    assert cells(page, "Closure") == ["4", "7.0 d", "20.0 d"]
    assert cells(page, "Export ready") == ["6"] and cells(page, "Failed") == ["0"]
    assert '<a href="/admin/requests?status=export_ready">Export ready</a>' in page
    assert '<a href="/admin/requests?overdue=true">8 overdue</a>' in page
    # churn: one row per month, one column per reason that occurs, and the total
    assert ">Price</th>" in page and ">Budget cuts</th>" in page and ">Acquired</th>" not in page
    assert cells(page, "Feb 2026") == ["6", "5", "1", "0", "12"]
    assert cells(page, "Jan 2026") == ["0", "0", "0", "1", "1"]
    assert cells(page, "Apr 2025") == ["0", "0", "0", "0", "0"]
    purges = re.findall(r'<a href="/admin/tenants/\d+">([^<]+)</a></td>\s*<td>([^<]+)</td>', page)
    assert purges == [("Held AG", "Primary data"), ("Soon Ltd", "Primary data"), ("Backups SA", "Backups")]
    held_row = page[page.index("Held AG"):page.index("Soon Ltd")]
    assert "due now" in held_row and "held" in held_row


def test_charts_are_titled_images_whose_description_says_every_number(staff: Any, clock: Any) -> None:
    known_data()
    page = staff("legal").get("/admin/").get_data(as_text=True)
    found = svgs(page)
    assert set(found) == {"Open requests by state", "Churn reasons per month", "Exit survey: main reason",
                          "Exit survey: overall rating"}
    for svg in found.values():
        assert svg.get("role") == "img"
        labelled = svg.get("aria-labelledby", "").split()
        assert [svg.find(f"{SVG}title").get("id"), svg.find(f"{SVG}desc").get("id")] == labelled
    states = found["Open requests by state"]
    assert ("Received: 1; Acknowledged: 0; Verified: 0; Approved: 0; Exporting: 1; Export ready: 6; "
            "Access reduced: 0; Failed: 0.") \
        in states.findtext(f"{SVG}desc")
    assert [text.text for text in states.iter(f"{SVG}text")][:2] == ["Received", "1"]
    widths = [float(rect.get("width").rstrip("%")) for rect in states.iter(f"{SVG}rect")]
    assert widths[5] == charts.PLOT  # export ready: the longest bar
    assert widths[0] == pytest.approx(charts.PLOT / 6, abs=0.01)
    churn = found["Churn reasons per month"]
    assert "Feb 2026: 12 (Price 6, Budget cuts 5, Missing features 1); Mar 2026: 0." \
        in churn.findtext(f"{SVG}desc")
    assert {rect.findtext(f"{SVG}title") for rect in churn.iter(f"{SVG}rect")} == {
        "Jan 2026, Other: 1", "Feb 2026, Price: 6", "Feb 2026, Budget cuts: 5",
        "Feb 2026, Missing features: 1"}
    legend = re.findall(r'<li><i style="background: (#[0-9a-f]{6})" aria-hidden="true"></i>([^<]+)</li>',
                        page)
    assert [name for _, name in legend] == ["Price", "Budget cuts", "Missing features", "Other"]
    assert len({colour for colour, _ in legend}) == 4


def test_an_empty_service_shows_dashes_and_plain_words(staff: Any, clock: Any) -> None:
    page = staff("auditor").get("/admin/").get_data(as_text=True)
    assert cells(page, "Acknowledgement") == cells(page, "Export delivered") == ["0", "—", "—"]
    assert "No purge is due in the next 30 days." in page
    assert "No request was received in the last 12 months." in page
    assert "Open requests by state" in svgs(page)


def test_the_winback_list_says_whether_the_owner_was_emailed(staff: Any, clock: Any) -> None:
    request = closed(owner="owner@offboard.example")
    winback.flag(request.id, months=6, note="new plan", actor="user:csm")
    db.session.commit()
    clock.freeze(datetime(2026, 9, 2, 8, 30, tzinfo=UTC))
    reader = staff("auditor")
    due = r"<td>owner@offboard.example</td><td>Wed 02 Sep 2026</td><td>new plan</td>\s*<td>{}</td>"

    assert re.search(due.format("not yet"), reader.get("/admin/").get_data(as_text=True))
    winback.notify_due()
    assert re.search(due.format("02 Sep 2026, 08:30 UTC"), reader.get("/admin/").get_data(as_text=True))


def test_signed_out_the_dashboard_asks_to_sign_in(client: Any) -> None:
    answer = client.get("/admin/")
    assert answer.status_code == 302 and "/admin/sign-in" in answer.headers["Location"]
