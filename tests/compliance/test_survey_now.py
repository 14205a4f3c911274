"""A CSM sends the exit survey right after the closure (``POST /api/v1/requests/<id>/survey``)
instead of waiting for the cron job's delay: once, to a closed request only, and the link is for
the customer's eyes only (it is in the e-mail, never in the answer)."""

from __future__ import annotations

from sqlalchemy import select

from compliance import db
from compliance.models import AuditEvent, OutboxMessage, SurveyInvitation
from tests.compliance.test_feedback import answer, closed, survey_path


def test_a_csm_sends_the_survey_now_and_the_customer_answers(client, as_role, clock) -> None:
    request = closed(days_ago=0)  # the cron job would wait a day
    sent = client.post(f"/api/v1/requests/{request.id}/survey", headers=as_role("csm"))
    assert sent.status_code == 201, sent.get_json()
    body = sent.get_json()
    invitation = db.session.scalars(select(SurveyInvitation)).one()
    assert body["id"] == invitation.id and body["request_id"] == request.id
    assert body["expires_at"] == invitation.expires_at.isoformat()
    assert "url" not in body and "token" not in str(body)
    message = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "survey_invitation")).one()
    assert (message.recipient, message.status) == ("cfo@kestrel.example", "pending")
    [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "feedback.invited"))
    assert event.actor.startswith("apikey:") and event.request_id == request.id

    done = answer(client, survey_path(request.id), reason="missing_features", rating="7",
                  would_return="maybe", recommend="8")
    assert done.status_code == 200 and "Thank you" in done.get_data(as_text=True)


def test_the_survey_is_refused_with_its_reason(client, as_role, clock) -> None:
    headers = as_role("csm")
    request = closed(days_ago=0)
    assert client.post(f"/api/v1/requests/{request.id}/survey", headers=headers).status_code == 201
    again = client.post(f"/api/v1/requests/{request.id}/survey", headers=headers)
    assert again.status_code == 409 and "asked once only" in again.get_json()["message"]

    silent = closed("silent", days_ago=0, no_contact=True)
    refused = client.post(f"/api/v1/requests/{silent.id}/survey", headers=headers)
    assert refused.status_code == 409 and "no further contact" in refused.get_json()["message"]

    open_one = closed("open", days_ago=0)
    open_one.status = "access_reduced"
    db.session.commit()
    early = client.post(f"/api/v1/requests/{open_one.id}/survey", headers=headers)
    assert early.status_code == 409 and "this request is access reduced" in early.get_json()["message"]

    assert client.post("/api/v1/requests/999999/survey", headers=headers).status_code == 404
    auditor = client.post(f"/api/v1/requests/{open_one.id}/survey", headers=as_role("auditor"))
    assert auditor.status_code == 403
    assert db.session.scalar(select(SurveyInvitation.request_id).where(
        SurveyInvitation.request_id != request.id)) is None  # only the first one was invited
