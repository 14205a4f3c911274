"""The admin's exit feedback: the dashboard section, the CSV for product teams, the win-back form."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from sqlalchemy import func, select

from compliance import clock as clock_module
from compliance import db
from compliance.models import AuditEvent, ExitFeedback, OutboxMessage, WinbackReminder
from tests.compliance.test_feedback import closed


def add_answers() -> None:
    answers = (("too_expensive", 9000, 8, "yes"), ("too_expensive", 1000, 4, "no"),
               ("technical_issues", 500, 6, "maybe"))
    for reason, value, rating, returns in answers:
        db.session.add(ExitFeedback(month="2026-03", value_tier="standard", region="DE", reason=reason,
                                    annual_value=value, rating=rating, would_return=returns, recommend=10,
                                    could_improve="faster support"))
    db.session.commit()


def test_dashboard_shows_the_feedback_figures(staff, clock) -> None:
    add_answers()
    page = staff("auditor").get("/admin/")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="feedback">Exit feedback' in text
    row = '<th scope="row">Too expensive</th><td class="num">2</td>\n          <td class="num">10,000</td>'
    assert row in text
    assert '<dd class="stat">6.0</dd>' in text  # (8 + 4 + 6) / 3
    assert '<dd class="stat">33%</dd>' in text and "1 yes, 1 maybe, 1 no" in text
    assert '<dd class="stat">+100</dd>' in text
    assert "Exit survey: main reason" in text and "Too expensive: 2" in text  # the chart says its numbers
    assert "/admin/feedback.csv" not in text  # an auditor may not download it
    assert "/admin/feedback.csv" in staff("csm").get("/admin/").get_data(as_text=True)


def test_csv_page_for_admin_and_csm_only(staff, clock) -> None:
    add_answers()
    response = staff("csm").client.get("/admin/feedback.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv" and response.is_streamed
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [row["reason"] for row in rows] == ["too_expensive", "too_expensive", "technical_issues"]
    assert rows[0]["could_improve"] == "faster support"
    for role in ("legal", "auditor"):
        assert staff(role).get("/admin/feedback.csv").status_code == 403


def test_winback_form_creates_a_reminder_for_the_owner(staff, clock) -> None:
    request = closed(owner="owner@offboard.example")
    csm = staff("csm")
    tenant_page = csm.get(f"/admin/tenants/{request.tenant_id}").get_data(as_text=True)
    assert f'href="/admin/requests/{request.id}/winback"' in tenant_page
    form = csm.get(f"/admin/requests/{request.id}/winback")
    assert form.status_code == 200 and '<option value="12">12 months</option>' in form.get_data(as_text=True)
    outbox = db.session.scalar(select(func.count()).select_from(OutboxMessage))
    done = csm.post(f"/admin/requests/{request.id}/winback", {"months": "6", "note": "offer the new tier"})
    assert done.status_code == 302 and done.location == f"/admin/tenants/{request.tenant_id}"
    reminder = db.session.scalars(select(WinbackReminder)).one()
    assert (reminder.owner, reminder.months) == ("owner@offboard.example", 6)
    assert reminder.note == "offer the new tier"
    assert reminder.due_on == (clock_module.now() + timedelta(days=184)).date()  # 2 Mar -> 2 Sep
    assert reminder.created_by == f"user:{csm.user.id}"
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == outbox  # no customer e-mail
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "winback.flagged")) == 1
    again = csm.get(f"/admin/requests/{request.id}/winback").get_data(as_text=True)
    assert "already flagged" in again and "Create the reminder" not in again
    clock.freeze(clock_module.now() + timedelta(days=200))
    dashboard = staff("admin").get("/admin/").get_data(as_text=True)
    assert "owner@offboard.example" in dashboard and "offer the new tier" in dashboard


def test_winback_form_errors_roles_and_csrf(staff, clock) -> None:
    request = closed()
    csm = staff("csm")
    csm.get(f"/admin/requests/{request.id}/winback")
    wrong = csm.post(f"/admin/requests/{request.id}/winback", {"months": "3"})
    assert wrong.status_code == 400
    assert 'id="months-error">choose 6 to 12 months' in wrong.get_data(as_text=True)
    assert csm.post(f"/admin/requests/{request.id}/winback", {"months": "6"}, csrf=False).status_code == 400
    legal = staff("legal")
    assert legal.get(f"/admin/requests/{request.id}/winback").status_code == 403
    assert legal.post(f"/admin/requests/{request.id}/winback", {"months": "6"}).status_code == 403
    assert db.session.scalar(select(func.count()).select_from(WinbackReminder)) == 0
    assert csm.get("/admin/requests/999999/winback").status_code == 404


def test_request_page_sends_the_survey_now_once(staff, clock) -> None:
    request = closed(days_ago=0)
    csm = staff("csm")
    page = csm.get(f"/admin/requests/{request.id}").get_data(as_text=True)
    assert "Send the survey now" in page and f'href="/admin/requests/{request.id}/winback"' in page
    done = csm.post(f"/admin/requests/{request.id}/survey")
    assert done.status_code == 302 and done.location == f"/admin/requests/{request.id}"
    message = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "survey_invitation")).one()
    assert message.recipient == "cfo@kestrel.example"
    after = csm.get(f"/admin/requests/{request.id}").get_data(as_text=True)
    assert "The exit survey is on its way" in after and "The customer was invited on" in after
    assert "Send the survey now" not in after and "Exit survey sent" in after  # in the timeline too
    again = csm.post(f"/admin/requests/{request.id}/survey")
    assert again.status_code == 409 and "asked once only" in again.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)
                             .where(OutboxMessage.kind == "survey_invitation")) == 1


def test_survey_button_only_for_who_may_send_it(staff, clock) -> None:
    request = closed(days_ago=0, no_contact=True)
    csm = staff("csm")
    page = csm.get(f"/admin/requests/{request.id}").get_data(as_text=True)
    assert "No survey will be sent: the customer asked for no further contact." in page
    assert "Send the survey now" not in page
    other = closed("other", days_ago=0)
    auditor = staff("auditor")
    seen = auditor.get(f"/admin/requests/{other.id}").get_data(as_text=True)
    assert "Exit survey and win-back" in seen and "Send the survey now" not in seen
    assert auditor.post(f"/admin/requests/{other.id}/survey").status_code == 403
    assert csm.post(f"/admin/requests/{other.id}/survey", csrf=False).status_code == 400
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)
                             .where(OutboxMessage.kind == "survey_invitation")) == 0
