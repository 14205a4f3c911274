"""The message catalogue: one place for kinds, templates, subjects and what the law requires;
HTML escaped, text not; a missing value fails instead of mailing a blank."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from jinja2 import UndefinedError

from compliance import messages

pytestmark = pytest.mark.usefixtures("app")  # the test settings: the closure reads the retention policy
CLOSED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BASE = {"public_url": "https://offboard.example", "tenant_id": 3, "request_id": 7,
        "contact": {"name": "Cara <CSM>", "email": "cara@example.com"},
        "customer": "Smith & <Sons>", "account": "acct-9", "closed_at": CLOSED}


def test_only_the_messages_the_law_requires_are_marked_required() -> None:
    required = {kind for kind, entry in messages.CATALOGUE.items() if entry.required}
    assert required == {"export_ready", "closure", "deadline_extended", "deadline_warning", "purge_completed",
                        "backups_purged"}
    assert {kind for kind, entry in messages.CATALOGUE.items() if entry.audience == "staff"} == {
        "deadline_warning", "purge_completed", "backups_purged"}


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


def test_a_missing_value_or_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="a closure message needs invoice_ref"):
        messages.compose("closure", **BASE)
    with pytest.raises(UndefinedError, match="account"):  # the tenant's part, had a sender built it by hand
        messages.compose("closure", **{k: v for k, v in BASE.items() if k != "account"}, invoice_ref="INV-1")
    with pytest.raises(messages.UnknownKind, match="newsletter"):
        messages.compose("newsletter", **BASE)
