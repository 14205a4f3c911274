"""Exit feedback: the invitation job, the survey page, the CSV, anonymisation after the primary
purge, win-back through the API, and the dashboard's figures."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from compliance import clock as clock_module
from compliance import db, feedback, reports, workflow
from compliance.models import (
    AuditEvent,
    ExitFeedback,
    OffboardingRequest,
    OutboxMessage,
    SurveyInvitation,
    WinbackReminder,
)
from retention import purge

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SURVEY_URL = re.compile(r"http://[^/\s]+(/survey/[A-Za-z0-9_.\-]+)")


def closed(ref: str = "kestrel", *, days_ago: int = 2, no_contact: bool = False,
           annual_value: int | None = None, owner: str | None = "owner@offboard.example",
           tier: str = "premium") -> OffboardingRequest:
    """A tenant whose request closed ``days_ago`` days before the clock's now."""
    tenant = workflow.register_tenant(actor="test", external_ref=ref, name=f"{ref.title()} Labs", region="DE",
                                      value_tier=tier, contact_email=f"cfo@{ref}.example",
                                      annual_value=annual_value)
    request = workflow.open_request(tenant, actor="test", requested_by=f"cfo@{ref}.example", channel="email",
                                    churn_reason="price", formats=["csv"], owner=owner)
    when = clock_module.now() - timedelta(days=days_ago)
    request.status, request.closed_at, tenant.closed_at = "closed", when, when
    if no_contact:
        tenant.no_contact_since = when
    db.session.commit()
    return request


def survey_path(request_id: int) -> str:
    message = db.session.scalars(select(OutboxMessage).where(OutboxMessage.request_id == request_id,
                                                             OutboxMessage.kind == "survey_invitation")).one()
    found = SURVEY_URL.search(message.body)
    assert found is not None, message.body
    assert found.group(1) in message.html
    return found.group(1)


def answer(client, path: str, **fields: str):  # type: ignore[no-untyped-def]
    page = client.get(path)
    token = CSRF.search(page.get_data(as_text=True))
    assert token is not None
    return client.post(path, data={"csrf_token": token.group(1), **fields})


@pytest.fixture
def invited(session, redis, clock):  # type: ignore[no-untyped-def]
    request = closed(annual_value=12000)
    assert feedback.invite_due() == 1
    return request


def test_invitation_job_invites_each_closed_request_once(session, redis, clock) -> None:
    recent, due = closed("recent", days_ago=0), closed("due", days_ago=2)
    silent = closed("silent", days_ago=3, no_contact=True)
    assert feedback.invite_due() == 2  # not the one closed an hour ago
    assert feedback.invite_due() == 0  # idempotent: once per request
    kinds = dict(db.session.execute(select(OutboxMessage.request_id, OutboxMessage.status)
                                    .where(OutboxMessage.kind == "survey_invitation")).all())
    assert kinds == {due.id: "pending", silent.id: "suppressed"}  # no-contact: not sent
    invitation = db.session.scalars(select(SurveyInvitation)
                                    .where(SurveyInvitation.request_id == due.id)).one()
    assert invitation.expires_at == clock_module.now() + timedelta(days=30)
    assert len(invitation.token_sha256) == 64 and invitation.token_sha256 not in survey_path(due.id)
    assert recent.id not in kinds


def test_the_link_in_the_message_opens_the_form(client, invited) -> None:
    page = client.get(survey_path(invited.id))
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Why did you leave?" in text and 'name="reason" value="too_expensive"' in text
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_one_submission_moves_the_request_to_feedback_collected(client, invited) -> None:
    path = survey_path(invited.id)
    done = answer(client, path, reason="too_expensive", could_improve="Ask Jane Roe about pricing",
                  rating="7", would_return="maybe", recommend="9")
    assert done.status_code == 200 and "Thank you" in done.get_data(as_text=True)
    row = db.session.scalars(select(ExitFeedback)).one()
    assert (row.reason, row.rating, row.would_return, row.recommend) == ("too_expensive", 7, "maybe", 9)
    assert (row.annual_value, row.value_tier, row.region, row.month) == (12000, "premium", "DE", "2026-03")
    assert db.session.get(type(invited), invited.id, populate_existing=True).status == "feedback_collected"
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "feedback.submitted")).one()
    assert event.actor == "customer:survey" and "Jane" not in str(event.data)
    assert event.data["free_text"] == ["could_improve"]
    token = CSRF.search(client.get("/admin/sign-in").get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    again = client.post(path, data={"csrf_token": token, "reason": "other"})
    assert again.status_code == 410 and "already answered" in again.get_data(as_text=True)
    assert client.get(path).status_code == 410
    assert db.session.scalar(select(func.count()).select_from(ExitFeedback)) == 1


def test_altered_token_and_missing_csrf_are_refused(client, invited) -> None:
    path = survey_path(invited.id)
    altered = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    assert client.get(altered).status_code == 404
    assert client.get("/survey/nothing-here").status_code == 404
    client.get(path)
    forged = client.post(path, data={"reason": "other"})
    assert forged.status_code == 400 and "security token" in forged.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(ExitFeedback)) == 0


def test_expired_link_is_gone(client, invited, clock) -> None:
    path = survey_path(invited.id)
    clock.freeze(clock_module.now() + timedelta(days=31))
    answer_page = client.get(path)
    assert answer_page.status_code == 410 and "closed" in answer_page.get_data(as_text=True)


def test_answers_are_checked_with_messages_beside_the_fields(client, invited) -> None:
    path = survey_path(invited.id)
    refused = answer(client, path, reason="boredom", rating="11", recommend="x", could_improve="keep me")
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400
    assert 'id="reason-error">Choose one of the reasons listed.' in text
    assert 'id="rating-error">Give a number from 1 to 10.' in text
    assert 'id="recommend-error">Give a whole number from 0 to 10.' in text
    assert ">keep me</textarea>" in text  # what was typed stays
    assert db.session.scalar(select(func.count()).select_from(ExitFeedback)) == 0
    assert answer(client, path).status_code == 200  # every answer is optional


def test_purge_keeps_feedback_only_anonymised(client, invited, clock) -> None:
    answer(client, survey_path(invited.id), reason="other", reason_other="John Smith left us",
           could_improve="call me", rating="3", would_return="no", recommend="2")
    clock.freeze(clock_module.now() + timedelta(days=120))
    result = purge.purge_tenant(invited.tenant_id)
    assert result["status"] == "purged", result
    row = db.session.scalars(select(ExitFeedback).execution_options(populate_existing=True)).one()
    assert (row.reason_other, row.could_improve, row.request_id, row.tenant_id) == (None, None, None, None)
    assert (row.reason, row.rating, row.would_return, row.recommend) == ("other", 3, "no", 2)
    assert row.month == "2026-03"
    assert (row.value_tier, row.region, row.annual_value) == ("premium", "DE", 12000)
    assert row.anonymised_at == clock_module.now()
    assert feedback.anonymise(invited.tenant_id) == 0  # idempotent
    lines = list(csv.reader(io.StringIO("".join(feedback.csv_lines()))))
    assert "John" not in str(lines) and lines[1][-1] == "yes"


def test_csv_through_the_api_streams_a_header_and_rows(client, invited, as_role) -> None:
    answer(client, survey_path(invited.id), reason="missing_features", could_improve="=HYPERLINK(1)",
           rating="8")
    response = client.get("/api/v1/feedback.csv", headers=as_role("csm"))
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(rows[0]) == list(feedback.COLUMNS)
    assert len(rows) == 1 and rows[0]["reason"] == "missing_features" and rows[0]["rating"] == "8"
    assert rows[0]["could_improve"] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet
    assert rows[0]["request_id"] == str(invited.id)
    for role, status in (("legal", 403), ("auditor", 403), ("admin", 200)):
        assert client.get("/api/v1/feedback.csv", headers=as_role(role)).status_code == status


def test_csv_is_written_in_batches(session, redis, clock, monkeypatch) -> None:
    monkeypatch.setattr(feedback, "CSV_BATCH", 2)
    for index in range(5):
        db.session.add(ExitFeedback(month="2026-03", value_tier="standard", region="DE", rating=index + 1))
    db.session.commit()
    chunks = list(feedback.csv_lines())
    assert [chunk.count("\n") for chunk in chunks] == [1, 2, 2, 1]


def test_winback_through_the_api_reminds_the_owner_only(client, as_role, session, clock) -> None:
    request = closed(owner="owner@offboard.example")
    before = db.session.scalar(select(func.count()).select_from(OutboxMessage))
    answered = client.post(f"/api/v1/requests/{request.id}/winback", json={"months": 9, "note": "new plan"},
                           headers=as_role("csm"))
    assert answered.status_code == 201, answered.json
    assert answered.json["owner"] == "owner@offboard.example" and answered.json["due_on"] == "2026-12-02"
    reminder = db.session.scalars(select(WinbackReminder)).one()
    assert reminder.months == 9 and reminder.note == "new plan"
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == before  # nobody e-mailed
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "winback.flagged")) == 1
    again = client.post(f"/api/v1/requests/{request.id}/winback", json={"months": 9}, headers=as_role("csm"))
    assert again.status_code == 409 and "already flagged" in again.json["message"]
    wrong = client.post(f"/api/v1/requests/{request.id}/winback", json={"months": 3}, headers=as_role("csm"))
    assert wrong.status_code == 422 and "months" in str(wrong.json)
    refused = client.post(f"/api/v1/requests/{request.id}/winback", json={"months": 6},
                          headers=as_role("legal"))
    assert refused.status_code == 403
    clock.freeze(clock_module.now() + timedelta(days=300))
    assert [due.id for due in reports.dashboard().winback_due] == [reminder.id]


def test_no_winback_for_no_contact_or_open_requests(client, as_role, session, clock) -> None:
    silent = closed("silent", no_contact=True)
    answered = client.post(f"/api/v1/requests/{silent.id}/winback", json={"months": 6},
                           headers=as_role("csm"))
    assert answered.status_code == 409 and "no further contact" in answered.json["message"]
    db.session.get(type(silent), silent.id).status = "export_ready"
    db.session.commit()
    answered = client.post(f"/api/v1/requests/{silent.id}/winback", json={"months": 6},
                           headers=as_role("csm"))
    assert answered.status_code == 409 and "only a closed account" in answered.json["message"]


def test_dashboard_figures_from_known_answers(client, as_role, session, redis, clock) -> None:
    rows = [("too_expensive", 10000, 8, "yes", 10), ("too_expensive", 5000, 6, "maybe", 9),
            ("missing_features", None, 3, "no", 2), ("missing_features", 2500, None, "yes", 7),
            (None, 700, 10, None, None)]
    for reason, value, rating, returns, recommend in rows:
        db.session.add(ExitFeedback(month="2026-03", value_tier="standard", region="DE", reason=reason,
                                    annual_value=value, rating=rating, would_return=returns,
                                    recommend=recommend))
    db.session.add(ExitFeedback(month="2024-01", value_tier="standard", region="DE", reason="other",
                                rating=1, submitted_at=clock_module.now() - timedelta(days=800)))
    db.session.commit()
    figures = reports.dashboard().feedback
    assert figures.answered == 5
    assert (figures.reasons["too_expensive"].count, figures.reasons["too_expensive"].revenue) == (2, 15000)
    missing = figures.reasons["missing_features"]
    assert (missing.count, missing.revenue) == (2, 2500)
    assert figures.reasons["other"].count == 0  # the old answer is outside the window
    assert figures.ratings == [0, 0, 1, 0, 0, 1, 0, 1, 0, 1]
    assert figures.rating_average == pytest.approx(27 / 4)
    assert figures.would_return == {"yes": 2, "maybe": 1, "no": 1} and figures.would_return_share == 0.5
    assert figures.recommend_score == pytest.approx(100 * (2 - 1) / 4)
    answer_json = client.get("/api/v1/reports/dashboard", headers=as_role("auditor")).json["feedback"]
    assert answer_json["reasons"]["too_expensive"] == {"count": 2, "revenue": 15000}
    assert answer_json["rating_average"] == 6.75 and answer_json["would_return_share"] == 0.5
    assert answer_json["recommend_score"] == 25.0 and answer_json["answered"] == 5


def test_revenue_by_reason_adds_values_past_32_bits(client, as_role, session, redis) -> None:
    """A contract in yen or won outgrows 2^31; PostgreSQL then sums as NUMERIC (a Decimal)."""
    for value in (10**15, 10**15 - 1):
        db.session.add(ExitFeedback(month="2026-03", value_tier="strategic", region="JP",
                                    reason="too_expensive", annual_value=value))
    db.session.commit()
    revenue = reports.dashboard().feedback.reasons["too_expensive"].revenue
    assert revenue == 2 * 10**15 - 1 and type(revenue) is int
    answer_json = client.get("/api/v1/reports/dashboard", headers=as_role("auditor")).json["feedback"]
    assert answer_json["reasons"]["too_expensive"] == {"count": 2, "revenue": 2 * 10**15 - 1}
