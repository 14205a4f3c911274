"""The message catalogue: one place for kinds, templates, subjects and what the law requires;
HTML escaped, text not; a missing value fails instead of mailing a blank."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from jinja2 import UndefinedError

from compliance import db, messages
from compliance.models import RetentionOverride, Tenant

pytestmark = pytest.mark.usefixtures("session")  # the closure reads the tenant's retention terms
CLOSED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BASE = {"public_url": "https://offboard.example", "tenant_id": 3, "request_id": 7,
        "contact": {"name": "Cara <CSM>", "email": "cara@example.com"},
        "customer": "Smith & <Sons>", "account": "acct-9", "closed_at": CLOSED}


def test_only_the_messages_the_law_requires_are_marked_required() -> None:
    required = {kind for kind, entry in messages.CATALOGUE.items() if entry.required}
    assert required == {"export_ready", "closure", "deadline_extended", "deadline_warning", "purge_completed",
                        "backups_purged"}
    assert {kind for kind, entry in messages.CATALOGUE.items() if entry.audience == "staff"} == {
        "deadline_warning", "purge_completed", "backups_purged", "winback_due"}


def test_html_is_escaped_and_text_is_not() -> None:
    composed = messages.compose("closure", **BASE, invoice_ref="INV-<1>")
    assert composed.subject == "Smith & <Sons>: your account is closed"
    assert "Smith & <Sons>" in composed.text and "INV-<1>" in composed.text
    assert "Smith &amp; &lt;Sons&gt;" in composed.html and "INV-&lt;1&gt;" in composed.html
    assert "<Sons>" not in composed.html and "Cara &lt;CSM&gt;" in composed.html


def test_the_closure_timeline_follows_the_retention_settings() -> None:
    composed = messages.compose("closure", **BASE, invoice_ref="INV-1")
    # 90 days after 2 March 2026 is 31 May 2026; backups within 12 calendar months: 2 March 2027.
    assert "until 31 May 2026, then permanently deleted" in composed.text
    assert "purged by 2 March 2027" in composed.text and "INV-1" in composed.html


def test_the_closure_timeline_follows_the_tenants_contractual_override() -> None:
    tenant = Tenant(external_ref="acct-override", name="Override Ltd", region="DE", closed_at=CLOSED)
    db.session.add(tenant)
    db.session.flush()
    db.session.add(RetentionOverride(tenant_id=tenant.id, primary_days=30, backup_months=6,
                                     reason="Contract clause 12.3", set_by="test"))
    db.session.flush()
    composed = messages.compose("closure", **{**BASE, "tenant_id": tenant.id}, invoice_ref="INV-2")
    # 30 days after 2 March 2026 is 1 April 2026; backups within 6 calendar months: 2 September 2026.
    assert "until 1 April 2026, then permanently deleted" in composed.text
    assert "purged by 2 September 2026" in composed.text
    assert composed.text.count("1 April 2026") == 2  # and "download it before" the same day


def test_a_missing_value_or_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="a closure message needs invoice_ref"):
        messages.compose("closure", **BASE)
    with pytest.raises(UndefinedError, match="account"):  # the tenant's part, had a sender built it by hand
        messages.compose("closure", **{k: v for k, v in BASE.items() if k != "account"}, invoice_ref="INV-1")
    with pytest.raises(messages.UnknownKind, match="newsletter"):
        messages.compose("newsletter", **BASE)


@pytest.mark.parametrize(("deadline", "met"), [
    ("acknowledgement", "the request is acknowledged"),
    ("export", "the export is ready for the customer"),
    ("legal", "the export is ready for the customer: it answers the request the law entitles them to"),
    ("processing", "the request is closed, at most 14 days after it was received"),
])
def test_a_deadline_warning_says_what_meets_the_deadline(deadline: str, met: str) -> None:
    composed = messages.compose("deadline_warning", **BASE, deadline=deadline, due=CLOSED, left="3 h 00 min")
    assert composed.subject == f"Request 7 (Smith & <Sons>): {deadline} due in 3 h 00 min"
    assert f"It is met when {met}." in composed.text
    assert f"It is met when {met}." in composed.html


WINBACK = {"left_on": CLOSED, "flagged_on": CLOSED + timedelta(days=3), "churn_reason": "budget_cuts",
           "survey_reason": None, "would_return": None, "note": "call <Jane>", "no_contact_since": None,
           "purged_on": None}


def test_the_winback_reminder_leaves_the_decision_to_the_owner() -> None:
    composed = messages.compose("winback_due", **BASE, **WINBACK)
    assert composed.subject == "Win-back reminder: Smith & <Sons> left on 2 March 2026"
    assert "- Why they left: budget cuts" in composed.text
    assert "- Would come back: not answered" in composed.text
    assert "- Note: call <Jane>" in composed.text and "call &lt;Jane&gt;" in composed.html
    for part in (composed.text, composed.html):
        assert "flagged on 5 March 2026" in part and "Nothing was sent to the customer" in part
        assert "Whether and how to get back in touch is your decision." in part
        assert "https://offboard.example/admin/requests/7" in part

    purged = messages.compose("winback_due", **BASE, **{**WINBACK, "note": None,
                                                          "purged_on": CLOSED + timedelta(days=90)})
    assert "purged on 31 May 2026, so this reminder names the account only" in purged.text
    assert "Note:" not in purged.text and "Would come back" not in purged.html

    with pytest.raises(ValueError, match="a winback_due message needs note"):
        messages.compose("winback_due", **BASE, **{k: v for k, v in WINBACK.items() if k != "note"})
