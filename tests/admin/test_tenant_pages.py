"""The tenant pages: the list with its search and pages, one tenant's facts, sources and their
check button, requests, retention dates, holds and certificates, the form that edits the
account's facts (and the annual value reaching the exit feedback figures), and who may press what."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from compliance import db, feedback, reports, workflow
from compliance.admin import tenant_pages
from compliance.models import AuditEvent, LegalHold, RetentionOverride, RetentionRun, SourceConfig, Tenant
from exporters.sources import registry
from tests.admin.test_request_pages import error_beside

pytestmark = pytest.mark.usefixtures("clock")
CLOSED = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def tenant(ref: str, name: str, *, closed_at: datetime | None = None, **extra: Any) -> Tenant:
    row = Tenant(external_ref=ref, name=name, region="DE", closed_at=closed_at, **extra)
    db.session.add(row)
    db.session.commit()
    return row


def source(tenant_id: int | None, kind: str, name: str, config: dict[str, Any]) -> SourceConfig:
    row = SourceConfig(tenant_id=tenant_id, kind=kind, name=name, config=registry.get(kind).validate(config))
    db.session.add(row)
    db.session.commit()
    return row


def checks(source_id: int) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "source.checked", AuditEvent.subject_id == str(source_id))))


def text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


# --- the list ---------------------------------------------------------------------------------------


def test_the_list_shows_status_open_request_and_holds(staff: Any) -> None:
    open_one = tenant("acme-1", "Acme Open")
    closed = tenant("globex-2", "Globex Closed", closed_at=CLOSED)
    purged = tenant("initech-3", "Initech Purged", closed_at=CLOSED,
                    purged_at=datetime(2026, 2, 1, tzinfo=UTC))
    request = workflow.open_request(open_one, actor="test", requested_by="csm@example.com", channel="email",
                                    churn_reason="price", formats=["csv"])
    db.session.add(LegalHold(tenant_id=closed.id, reason="litigation", matter="M-1", placed_by="test"))
    db.session.commit()

    page = text(staff("auditor").get("/admin/tenants"))
    assert "<h1>Tenants</h1>" in page
    row = {t.name: re.search(rf"{t.name}</a>.*?</tr>", page).group(0) for t in (open_one, closed, purged)}
    assert "Open" in row["Acme Open"] and f'href="/admin/requests/{request.id}"' in row["Acme Open"]
    assert "Closed Thu 01 Jan 2026" in row["Globex Closed"] and "1 hold" in row["Globex Closed"]
    assert "Purged Sun 01 Feb 2026" in row["Initech Purged"] and "acme" not in row["Initech Purged"]
    assert f'href="/admin/tenants/{closed.id}"' in page


def test_search_by_name_and_pages(staff: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for number in range(5):
        tenant(f"north-{number}", f"Northwind {number}")
    tenant("south-1", "Southwind")
    monkeypatch.setattr(tenant_pages, "PAGE_SIZE", 2)
    csm = staff("csm")

    first = text(csm.get("/admin/tenants?q=northwind"))
    assert "Northwind 4" in first and "Northwind 3" in first and "Northwind 2" not in first
    assert "Southwind" not in first
    next_url = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = text(csm.get(next_url))
    assert "Northwind 2" in second and "Northwind 1" in second and "Northwind 4" not in second
    assert "First page" in second
    last = text(csm.get(re.search(r'href="([^"]+)" rel="next"', second).group(1).replace("&amp;", "&")))
    assert "Northwind 0" in last and 'rel="next"' not in last
    assert "No tenant matches “nobody”" in text(csm.get("/admin/tenants?q=nobody"))


def test_a_bad_search_is_answered_beside_the_field(staff: Any) -> None:
    page = staff("csm").get("/admin/tenants?region=germany")
    assert page.status_code == 400
    assert re.search(r'id="region-error">region must be an ISO 3166 code', page.get_data(as_text=True))
    assert 'aria-invalid="true"' in page.get_data(as_text=True)


# --- one tenant -------------------------------------------------------------------------------------


def test_the_tenant_page_shows_facts_sources_requests_retention_and_holds(staff: Any, tmp_path: Path) -> None:
    row = tenant("umbrella-9", "Umbrella Corp", closed_at=CLOSED, contact_email="it@umbrella.example")
    own = source(row.id, "demo", "crm-demo", {"rows": 5, "state_dir": str(tmp_path / "demo")})
    shared = source(None, "demo", "shared-demo", {"rows": 5, "state_dir": str(tmp_path / "demo")})
    source(tenant("other-1", "Other").id, "demo", "not-mine", {"rows": 5, "state_dir": str(tmp_path)})
    request = workflow.open_request(row, actor="test", requested_by="csm@example.com", channel="email",
                                    churn_reason="budget_cuts", formats=["csv"])
    db.session.add_all([LegalHold(tenant_id=row.id, reason="a subpoena", matter="Case 42", placed_by="test"),
                        LegalHold(tenant_id=row.id, reason="audit", matter="Old matter", placed_by="test",
                                  released_at=CLOSED, released_by="test", release_reason="settled")])
    db.session.commit()

    page = text(staff("csm").get(f"/admin/tenants/{row.id}"))
    assert "<h1>Umbrella Corp</h1>" in page and "umbrella-9" in page and "GDPR" in page
    assert "it@umbrella.example" in page
    assert "crm-demo" in page and "shared-demo" in page and "not-mine" not in page
    assert "Shared by every tenant" in page and "never checked" in page
    assert f'href="/admin/requests/{request.id}"' in page and "Budget cuts" in page
    # retention as GET /api/v1/tenants/<id>/retention: 90 days after closing, 12 months for backups
    assert "Primary purge due</dt><dd>01 Apr 2026, 09:00 UTC" in page
    assert "Backup purge due</dt><dd>01 Jan 2027, 09:00 UTC" in page
    assert "status-held" in page and "Under legal hold" in page
    assert "Case 42" in page and "a subpoena" in page and "Old matter" in page and "settled" in page
    # a CSM sees the check buttons, not the legal forms nor the certificates
    assert f"/admin/tenants/{row.id}/sources/{own.id}/check" in page
    assert f"/admin/tenants/{row.id}/sources/{shared.id}/check" in page
    assert "Place legal hold" not in page and "Release hold" not in page
    assert "Deletion certificates" not in page


def test_retention_shows_the_override_its_reason_and_the_last_run(staff: Any) -> None:
    row = tenant("wayne-1", "Wayne Enterprises", closed_at=CLOSED)
    db.session.add_all([
        RetentionOverride(tenant_id=row.id, primary_days=30, reason="Contract clause 12.3", set_by="test"),
        RetentionRun(kind="primary", as_of=CLOSED, dry_run=True, requested_by="test", status="done",
                     report={"due": [row.id], "plans": [{"tenant_id": row.id}]},
                     started_at=datetime(2026, 2, 1, 3, tzinfo=UTC)),
    ])
    db.session.commit()
    page = text(staff("legal").get(f"/admin/tenants/{row.id}"))
    assert "Primary purge due</dt><dd>31 Jan 2026, 09:00 UTC" in page  # 30 days, not 90
    assert "Kept for</dt><dd>30 days (primary), 12 months (backups)" in page
    assert "Primary data kept 30 days. Reason: Contract clause 12.3" in page
    assert "status-due" in page and "The primary purge is due" in page
    assert re.search(r"Run \d+ \(primary, dry run\), started 01 Feb 2026, 03:00 UTC: .*?Planned", page)
    assert re.search(r"Next sweep</dt><dd>\d\d \w{3} 2026", page)


def test_unknown_tenant_is_the_404_page(staff: Any) -> None:
    page = staff("csm").get("/admin/tenants/999999")
    assert page.status_code == 404 and "tenant 999999 not found" in page.get_data(as_text=True)


def test_the_auditor_sees_everything_and_no_button(staff: Any, tmp_path: Path) -> None:
    row = tenant("soylent-1", "Soylent", closed_at=CLOSED)
    source(row.id, "demo", "crm-demo", {"state_dir": str(tmp_path)})
    db.session.add(LegalHold(tenant_id=row.id, reason="r", matter="Case 7", placed_by="test"))
    db.session.commit()
    page = text(staff("auditor").get(f"/admin/tenants/{row.id}"))
    assert "crm-demo" in page and "Case 7" in page and "Deletion certificates" in page
    assert "<button" not in page.replace('<button type="submit" class="button quiet">Sign out</button>', "")


# --- the check button -------------------------------------------------------------------------------


def test_the_check_of_a_demo_source_passes(staff: Any, tmp_path: Path) -> None:
    row = tenant("hooli-1", "Hooli", closed_at=CLOSED)
    demo = source(row.id, "demo", "crm-demo", {"state_dir": str(tmp_path / "state")})
    csm = staff("csm")
    csm.get(f"/admin/tenants/{row.id}")
    answer = csm.post(f"/admin/tenants/{row.id}/sources/{demo.id}/check")
    assert answer.status_code == 302 and answer.location.endswith(f"/admin/tenants/{row.id}#sources")
    [event] = checks(demo.id)
    assert event.data == {"ok": True, "error": None} and event.actor == f"user:{csm.user.id}"
    page = text(csm.get(answer.location))
    assert "Source crm-demo answered: the check passed." in page
    assert re.search(r"crm-demo</th>.*?Passed.*?02 Mar 2026, 09:00 UTC", page)


def test_the_check_of_a_broken_sql_source_shows_its_error(staff: Any, tmp_path: Path) -> None:
    row = tenant("pied-1", "Pied Piper", closed_at=CLOSED)
    broken = source(row.id, "sql", "app-db", {"url": f"sqlite:///{tmp_path}/missing/dir/app.db",
                                              "tables": [{"name": "accounts", "tenant_column": "tenant"}]})
    admin = staff("admin")
    admin.get(f"/admin/tenants/{row.id}")
    answer = admin.post(f"/admin/tenants/{row.id}/sources/{broken.id}/check")
    assert answer.status_code == 302
    [event] = checks(broken.id)
    assert event.data["ok"] is False and event.data["error"]
    page = text(admin.get(answer.location))
    assert "Source app-db failed its check:" in page and "flash-error" in page
    assert "Failed" in page and event.data["error"][:40] in page


def test_a_source_of_another_tenant_is_not_checked_from_this_page(staff: Any, tmp_path: Path) -> None:
    row, other = tenant("a-1", "A"), tenant("b-1", "B")
    theirs = source(other.id, "demo", "theirs", {"state_dir": str(tmp_path)})
    csm = staff("csm")
    csm.get(f"/admin/tenants/{row.id}")
    assert csm.post(f"/admin/tenants/{row.id}/sources/{theirs.id}/check").status_code == 404
    assert checks(theirs.id) == []


@pytest.mark.parametrize("role", ["legal", "auditor"])
def test_roles_without_the_right_cannot_run_a_check(staff: Any, tmp_path: Path, role: str) -> None:
    row = tenant("c-1", "C")
    demo = source(row.id, "demo", "crm-demo", {"state_dir": str(tmp_path)})
    person = staff(role)
    page = person.get(f"/admin/tenants/{row.id}")
    assert "Run check" not in page.get_data(as_text=True)
    refused = person.post(f"/admin/tenants/{row.id}/sources/{demo.id}/check")
    assert refused.status_code == 403 and "You may not do this" in refused.get_data(as_text=True)
    assert checks(demo.id) == []


def test_a_check_without_its_csrf_token_is_refused(staff: Any, tmp_path: Path) -> None:
    row = tenant("d-1", "D")
    demo = source(row.id, "demo", "crm-demo", {"state_dir": str(tmp_path)})
    csm = staff("csm")
    refused = csm.post(f"/admin/tenants/{row.id}/sources/{demo.id}/check", csrf=False)
    assert refused.status_code == 400 and "security token" in refused.get_data(as_text=True)
    assert checks(demo.id) == []
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "source.checked")) == 0


# --- editing the account ----------------------------------------------------------------------------


def edit_form(**overrides: str) -> dict[str, str]:
    """What the edit form posts for an open German standard account; ``no_contact`` only when ticked."""
    return {"name": "Acme GmbH", "region": "DE", "value_tier": "standard", "annual_value": "",
            "contact_email": "", **overrides}


def updates(tenant_id: int) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "tenant.updated", AuditEvent.tenant_id == tenant_id).order_by(AuditEvent.id)))


def reloaded(row: Tenant) -> Tenant:
    return db.session.get(Tenant, row.id, populate_existing=True)


def test_the_tenant_page_shows_the_annual_value_and_the_edit_link(staff: Any) -> None:
    row = tenant("kite-1", "Kite Ltd", value_tier="premium", annual_value=1250000)
    page = text(staff("csm").get(f"/admin/tenants/{row.id}"))
    assert "Value tier</dt><dd>Premium" in page and "Annual value</dt><dd>1,250,000" in page
    assert f'href="/admin/tenants/{row.id}/edit">Edit account</a>' in page
    assert "Annual value</dt><dd>—" in text(staff("admin").get(f"/admin/tenants/{tenant('kite-2', 'K2').id}"))


def test_the_edit_form_shows_the_account_as_it_is(staff: Any) -> None:
    row = tenant("lark-1", "Lark AG", value_tier="enterprise", annual_value=90000,
                 contact_email="cfo@lark.example", no_contact_since=CLOSED)
    page = staff("csm").get(f"/admin/tenants/{row.id}/edit")
    html = text(page)
    assert page.status_code == 200 and "<h1>Edit account: Lark AG</h1>" in html
    assert 'name="csrf_token"' in html
    assert 'id="name" name="name" type="text" value="Lark AG"' in html
    assert 'id="annual_value" name="annual_value" type="text" value="90000"' in html
    assert 'type="email" value="cfo@lark.example"' in html
    assert '<option value="enterprise" selected>Enterprise</option>' in html
    assert 'name="no_contact" value="true" checked' in html and "since 01 Jan 2026, 09:00 UTC" in html


def test_posting_the_form_changes_the_account_and_audits_it(staff: Any) -> None:
    row = tenant("swift-1", "Swift Ltd", contact_email="old@swift.example")
    csm = staff("csm")
    csm.get(f"/admin/tenants/{row.id}/edit")
    answer = csm.post(f"/admin/tenants/{row.id}/edit", edit_form(
        name="Swift Holdings", region="US-CA", value_tier="strategic", annual_value="250000",
        contact_email="it@swift.example"))
    assert answer.status_code == 302 and answer.location == f"/admin/tenants/{row.id}"
    saved = reloaded(row)
    assert (saved.name, saved.region, saved.value_tier, saved.annual_value, saved.contact_email) == (
        "Swift Holdings", "US-CA", "strategic", 250000, "it@swift.example")
    assert saved.no_contact_since is None
    [event] = updates(row.id)
    assert event.actor == f"user:{csm.user.id}"
    assert event.data == {"changed": ["annual_value", "contact_email", "name", "region", "value_tier"]}
    page = text(csm.get(answer.location))
    assert "Account saved. Changed: annual value, contact email, name, region, value tier." in page
    assert "Annual value</dt><dd>250,000" in page and "CCPA" in page

    # the same form again changes nothing and records nothing; blank fields clear their values
    assert csm.post(answer.location + "/edit", edit_form(
        name="Swift Holdings", region="US-CA", value_tier="strategic", annual_value="250000",
        contact_email="it@swift.example")).status_code == 302
    assert len(updates(row.id)) == 1 and "Nothing was changed." in text(csm.get(answer.location))
    assert csm.post(answer.location + "/edit", edit_form(
        name="Swift Holdings", region="US-CA", value_tier="strategic")).status_code == 302
    assert (reloaded(row).annual_value, reloaded(row).contact_email) == (None, None)
    assert updates(row.id)[-1].data == {"changed": ["annual_value", "contact_email"]}


def test_the_no_contact_box_is_recorded_only_when_it_changes(staff: Any, clock: Any) -> None:
    row = tenant("wren-1", "Acme GmbH")
    admin = staff("admin")
    admin.get(f"/admin/tenants/{row.id}/edit")
    url = f"/admin/tenants/{row.id}/edit"
    assert admin.post(url, edit_form()).status_code == 302  # unticked and already allowed: nothing
    assert updates(row.id) == []
    assert admin.post(url, edit_form(no_contact="true")).status_code == 302
    assert reloaded(row).no_contact_since == clock.now()
    assert [e.data for e in updates(row.id)] == [{"changed": ["no_contact"]}]
    page = text(admin.get(f"/admin/tenants/{row.id}"))
    assert "No further contact</dt><dd>Asked 02 Mar 2026, 09:00 UTC" in page
    assert admin.post(url, edit_form(no_contact="true")).status_code == 302  # still ticked: kept as is
    assert len(updates(row.id)) == 1
    assert admin.post(url, edit_form()).status_code == 302  # unticked: contact allowed again
    assert reloaded(row).no_contact_since is None
    assert [e.data for e in updates(row.id)] == [{"changed": ["no_contact"]}] * 2


@pytest.mark.parametrize("value", ["-1", "1.5", "abc", "1000000000000001"])
def test_bad_input_is_400_beside_its_field_and_changes_nothing(staff: Any, value: str) -> None:
    row = tenant("heron-1", "Heron SA", annual_value=5000)
    csm = staff("csm")
    csm.get(f"/admin/tenants/{row.id}/edit")
    answer = csm.post(f"/admin/tenants/{row.id}/edit", edit_form(
        name=" ", region="Germany", annual_value=value, contact_email="not-an-email", no_contact="true"))
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert error_beside(html, "annual_value") == \
        "annual_value must be a whole number of currency units from 0 to 1000000000000000"
    assert error_beside(html, "name") == "Missing data for required field."
    assert "ISO 3166" in error_beside(html, "region")
    assert "email" in error_beside(html, "contact_email")
    assert "Nothing was saved. 4 fields need attention" in html
    assert f'value="{value}"' in html and 'value="Germany"' in html  # what was typed is kept
    assert 'aria-describedby="annual_value-hint annual_value-error" aria-invalid="true"' in html
    saved = reloaded(row)
    assert (saved.name, saved.region, saved.annual_value, saved.no_contact_since) == (
        "Heron SA", "DE", 5000, None)
    assert updates(row.id) == []


@pytest.mark.parametrize("role", ["legal", "auditor"])
def test_roles_without_the_right_cannot_edit_an_account(staff: Any, role: str) -> None:
    row = tenant("egret-1", "Egret BV")
    person = staff(role)
    assert "Edit account" not in person.get(f"/admin/tenants/{row.id}").get_data(as_text=True)
    page = person.get(f"/admin/tenants/{row.id}/edit")
    assert page.status_code == 403 and "You may not do this" in page.get_data(as_text=True)
    refused = person.post(f"/admin/tenants/{row.id}/edit", edit_form(name="Taken Over", annual_value="1"))
    assert refused.status_code == 403
    assert (reloaded(row).name, reloaded(row).annual_value) == ("Egret BV", None)
    assert updates(row.id) == []


def test_editing_an_unknown_account_is_404(staff: Any) -> None:
    csm = staff("csm")
    assert csm.get("/admin/tenants/999999/edit").status_code == 404
    assert csm.post("/admin/tenants/999999/edit", edit_form()).status_code == 404


def test_the_annual_value_set_here_weighs_the_exit_feedback_reasons(staff: Any, clock: Any) -> None:
    row = tenant("osprey-1", "Osprey Inc", contact_email="cfo@osprey.example")
    csm = staff("csm")
    csm.get(f"/admin/tenants/{row.id}/edit")
    assert csm.post(f"/admin/tenants/{row.id}/edit", edit_form(
        name="Osprey Inc", annual_value="48000", contact_email="cfo@osprey.example")).status_code == 302
    offboarding = workflow.open_request(row, actor="test", requested_by="cfo@osprey.example",
                                        channel="email", churn_reason="price", formats=["csv"])
    offboarding.status, offboarding.closed_at = "closed", clock.now()
    invited = feedback.invite(offboarding.id, actor="test")
    db.session.commit()
    survey = f"/survey/{invited.token}"
    csm.get(survey)
    assert csm.post(survey, {"reason": "too_expensive", "rating": "4"}).status_code == 200

    assert reports.exit_feedback(clock.now() - timedelta(days=1)).reasons["too_expensive"] == \
        reports.Reason(count=1, revenue=48000)
    dashboard = text(csm.get("/admin/"))
    assert re.search(r'Too expensive</th><td class="num">1</td> <td class="num">48,000</td>', dashboard)
