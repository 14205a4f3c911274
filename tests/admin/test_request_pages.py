"""/admin/requests and /admin/requests/new: the list with its filters, badges and pages; the form."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from compliance import db, workflow
from compliance.models import FORMATS, AuditEvent, OffboardingRequest, Tenant

_refs = itertools.count()


def new_tenant(name: str = "Acme GmbH", region: str = "DE", **facts: Any) -> Tenant:
    tenant = workflow.register_tenant(actor="test", external_ref=f"rp-{next(_refs)}", name=name,
                                      region=region, **facts)
    db.session.commit()
    return tenant


def new_request(tenant: Tenant | None = None, *, owner: str | None = "owner@example.com",
                **overrides: Any) -> OffboardingRequest:
    opened = workflow.open_request(tenant or new_tenant(), actor="test", requested_by="cfo@acme.example",
                                   channel="email", churn_reason="price", formats=list(FORMATS), owner=owner,
                                   **overrides)
    db.session.commit()
    return opened


def move(offboarding: OffboardingRequest, *actions: str) -> None:
    for action in actions:
        workflow.apply(offboarding.id, action, actor="test",
                       reason="intended" if action == "verify" else None,
                       invoice_ref="INV-1" if action == "close" else None)
    db.session.commit()


def count(model: Any) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def rows(html: str) -> list[str]:
    """The request links of the list, in order: ['#3', '#2', ...]."""
    return re.findall(r'<a href="/admin/requests/\d+">(#\d+)</a>', html)


def error_beside(html: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="{re.escape(field)}-error">([^<]*)</p>', html)
    assert found, f"no error beside {field}"
    return found.group(1)


def test_the_list_shows_status_account_owner_age_and_deadline_badges(staff, clock) -> None:  # type: ignore[no-untyped-def]
    fresh = new_request(new_tenant("Fresh Ltd", "UK"), owner="ann@example.com")
    clock.freeze(clock.now() + timedelta(hours=20))
    answered = new_request(new_tenant("Answered AG"))
    move(answered, "acknowledge")
    page = staff("auditor").get("/admin/requests")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert rows(html) == [f"#{answered.id}", f"#{fresh.id}"]  # newest first
    fresh_row = html[html.index(f"#{fresh.id}</a>"):]
    assert "Fresh Ltd" in fresh_row and "ann@example.com" in fresh_row and "20 h" in fresh_row
    assert 'class="status status-received"' in fresh_row
    # 4 hours left of 24: amber; the export (52 h left) green; the UK falls under GDPR: a legal badge.
    assert re.search(r'badge badge-soon" title="Acknowledge[^"]*">Acknowledge · 4 h left', fresh_row)
    assert re.search(r'badge badge-ok" title="Export[^"]*">Export · 2 d left', fresh_row)
    assert "Legal GDPR · 30 d left" in fresh_row  # 2 Apr 09:00, 31 days after 2 Mar
    assert re.search(r'badge badge-done" title="Acknowledge[^"]*">Acknowledge · met', html)
    clock.freeze(clock.now() + timedelta(hours=5))
    late = staff("csm").get("/admin/requests").get_data(as_text=True)
    assert re.search(r'badge badge-late" title="Acknowledge[^"]*">Acknowledge · 1 h overdue', late)


def test_filters_and_search_narrow_the_list(staff, clock) -> None:  # type: ignore[no-untyped-def]
    german = new_request(new_tenant("Müller Werkzeuge GmbH", "DE"), owner="ann@example.com")
    american = new_request(new_tenant("Pacific 100% Labs", "US-CA"), owner="bob@example.com")
    spanish = new_request(new_tenant("Sol_y_Mar SL", "ES"), owner="ann@example.com")
    move(spanish, "acknowledge", "verify", "approve")
    clock.freeze(clock.now() + timedelta(hours=30))
    move(american, "acknowledge")  # late, but acknowledged: only the export deadline is still running
    user = staff("legal")

    def shown(query: str) -> list[str]:
        page = user.get(f"/admin/requests?{query}")
        assert page.status_code == 200, page.get_data(as_text=True)
        return rows(page.get_data(as_text=True))

    assert shown("status=approved") == [f"#{spanish.id}"]
    assert shown("owner=ann%40example.com") == [f"#{spanish.id}", f"#{german.id}"]
    assert shown("region=US-CA") == [f"#{american.id}"]
    assert shown("q=m%C3%BCller") == [f"#{german.id}"]  # part of the name, any case
    assert shown("q=100%25") == [f"#{american.id}"]  # % and _ are letters, not wildcards
    assert shown("q=l_y_m") == [f"#{spanish.id}"]
    assert shown("q=" + american.tenant.external_ref) == [f"#{american.id}"]
    assert shown("overdue=true") == [f"#{german.id}"]  # the one not acknowledged within 24 h
    assert shown("overdue=false") == [f"#{spanish.id}", f"#{american.id}"]
    assert shown("overdue=false&owner=ann%40example.com&region=ES") == [f"#{spanish.id}"]
    assert shown("overdue=false&owner=ann%40example.com&region=DE") == []
    html = user.get("/admin/requests?q=nobody").get_data(as_text=True)
    assert "No request matches these filters." in html
    assert 'value="nobody"' in html  # the search box keeps what was typed


def test_a_bad_filter_is_named_beside_its_field(staff) -> None:  # type: ignore[no-untyped-def]
    page = staff("csm").get("/admin/requests?region=Germany&status=lost")
    assert page.status_code == 400
    html = page.get_data(as_text=True)
    assert "ISO 3166" in error_beside(html, "region")
    assert "Must be one of" in error_beside(html, "status")


def test_pages_of_the_list_follow_the_cursor(staff) -> None:  # type: ignore[no-untyped-def]
    made = [new_request(new_tenant(f"Paged {n}")) for n in range(5)]
    newest_first = [f"#{r.id}" for r in reversed(made)]
    user = staff("csm")
    first = user.get("/admin/requests?limit=2&q=Paged").get_data(as_text=True)
    assert rows(first) == newest_first[:2]
    seen = rows(first)
    html = first
    while 'rel="next"' in html:
        next_url = re.search(r'<a class="button quiet" href="([^"]+)" rel="next">', html).group(1)  # type: ignore[union-attr]
        next_url = next_url.replace("&amp;", "&")
        assert "q=Paged" in next_url and "limit=2" in next_url  # the filters travel with the cursor
        html = user.get(next_url).get_data(as_text=True)
        assert "First page" in html
        seen += rows(html)
    assert seen == newest_first
    assert user.get("/admin/requests?cursor=bogus").status_code == 400


def test_new_request_form_offers_readable_choices_and_defaults(staff) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant("Picked Corp")
    new_request(new_tenant("Busy Corp"))
    user = staff("csm", email="carla@example.com")
    page = user.get(f"/admin/requests/new?tenant_id={tenant.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<option value="switched_to_competitor">Switched to competitor</option>' in html
    assert '<option value="support_ticket">Support ticket</option>' in html
    for name in FORMATS:
        assert f'name="formats" value="{name}" checked' in html
    assert 'id="owner" name="owner" type="email" value="carla@example.com"' in html
    assert re.search(rf'<option value="{tenant.id}" selected>Picked Corp', html)
    assert re.search(r"Busy Corp[^<]*\(open request #\d+\)", html)
    for role in ("legal", "auditor"):
        assert staff(role).get("/admin/requests/new").status_code == 403


def form(**overrides: Any) -> dict[str, Any]:
    return {"requested_by": "cfo@acme.example", "channel": "email", "churn_reason": "budget_cuts",
            "churn_detail": "Budget frozen", "formats": ["csv", "pdf"], "owner": "carla@example.com",
            **overrides}


def test_new_request_for_an_existing_tenant_opens_it_and_shows_it(staff) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant("Existing GmbH")
    user = staff("csm")
    user.get("/admin/requests/new")
    answer = user.post("/admin/requests/new", form(tenant_id=str(tenant.id)))
    assert answer.status_code == 302
    opened = db.session.scalars(select(OffboardingRequest).filter_by(tenant_id=tenant.id)).one()
    assert answer.headers["Location"] == f"/admin/requests/{opened.id}"
    assert (opened.status, opened.formats, opened.churn_reason, opened.owner, opened.legal_regime) == (
        "received", ["csv", "pdf"], "budget_cuts", "carla@example.com", "gdpr")
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.request_id == opened.id)).one()
    assert (event.action, event.actor) == ("request.received", f"user:{user.user.id}")
    detail = user.get(answer.headers["Location"]).get_data(as_text=True)
    assert f"Request #{opened.id} for Existing GmbH is received" in detail


def test_new_request_can_create_the_tenant_in_the_same_form(staff) -> None:  # type: ignore[no-untyped-def]
    user = staff("admin")
    user.get("/admin/requests/new")
    answer = user.post("/admin/requests/new", form(
        tenant_id="", new_name="Brand New Inc", new_external_ref="crm-991", new_region="US-CA",
        new_value_tier="premium", new_annual_value="36000", legal_regime=""))
    assert answer.status_code == 302, answer.get_data(as_text=True)
    tenant = db.session.scalars(select(Tenant).where(Tenant.external_ref == "crm-991")).one()
    assert (tenant.name, tenant.region, tenant.value_tier, tenant.annual_value) == (
        "Brand New Inc", "US-CA", "premium", 36000)
    opened = db.session.scalars(select(OffboardingRequest).filter_by(tenant_id=tenant.id)).one()
    assert opened.legal_regime == "ccpa"
    actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.tenant_id == tenant.id)
                                 .order_by(AuditEvent.id)).all()
    assert actions == ["tenant.created", "request.received"]


def test_a_new_account_without_an_annual_value_has_none(staff) -> None:  # type: ignore[no-untyped-def]
    user = staff("csm")
    page = user.get("/admin/requests/new").get_data(as_text=True)
    assert 'id="new_annual_value" name="new_annual_value"' in page
    answer = user.post("/admin/requests/new", form(new_name="Unvalued", new_external_ref="crm-992",
                                                   new_region="DE", new_annual_value=""))
    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert db.session.scalar(select(Tenant.annual_value).where(Tenant.external_ref == "crm-992")) is None


@pytest.mark.parametrize("value", ["-5", "12.5", "lots"])
def test_a_bad_annual_value_is_named_beside_its_field(staff, value) -> None:  # type: ignore[no-untyped-def]
    user = staff("csm")
    user.get("/admin/requests/new")
    answer = user.post("/admin/requests/new", form(new_name="Bad Value", new_external_ref="crm-993",
                                                   new_region="DE", new_annual_value=value))
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert error_beside(html, "new_annual_value") == \
        "annual_value must be a whole number of currency units from 0 to 1000000000000000"
    assert f'value="{value}"' in html
    assert (count(Tenant), count(OffboardingRequest)) == (0, 0)


def test_new_request_errors_stand_beside_their_fields_and_keep_what_was_typed(staff) -> None:  # type: ignore[no-untyped-def]
    user = staff("csm")
    user.get("/admin/requests/new")
    before = (count(Tenant), count(OffboardingRequest))
    answer = user.post("/admin/requests/new", {
        "tenant_id": "", "new_name": "Half Typed", "new_region": "Germany", "requested_by": "",
        "channel": "pigeon", "churn_reason": "price", "churn_detail": "kept text", "owner": "not-an-email"})
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert error_beside(html, "requested_by") == "Missing data for required field."
    assert "Must be one of" in error_beside(html, "channel")
    assert error_beside(html, "formats") == "Choose at least one format."
    assert error_beside(html, "new_external_ref") == "Missing data for required field."
    assert "ISO 3166" in error_beside(html, "new_region")
    assert 'aria-invalid="true"' in html and 'aria-describedby="new_region-hint new_region-error"' in html
    assert 'value="Half Typed"' in html and ">kept text</textarea>" in html and 'value="Germany"' in html
    assert '<option value="price" selected>' in html
    assert (count(Tenant), count(OffboardingRequest)) == before


def test_new_request_for_a_tenant_with_an_open_request_says_so(staff) -> None:  # type: ignore[no-untyped-def]
    existing = new_request(new_tenant("Twice Ltd"))
    user = staff("csm")
    user.get("/admin/requests/new")
    answer = user.post("/admin/requests/new", form(tenant_id=str(existing.tenant_id)))
    assert answer.status_code == 409
    assert error_beside(answer.get_data(as_text=True), "tenant_id") == (
        f"This account already has an open request (#{existing.id}); an account has one open request "
        "at a time.")
    assert count(OffboardingRequest) == 1


def test_new_request_with_a_taken_external_ref_creates_nothing(staff) -> None:  # type: ignore[no-untyped-def]
    taken = new_tenant("Taken")
    user = staff("csm")
    user.get("/admin/requests/new")
    before = count(Tenant)
    answer = user.post("/admin/requests/new", form(new_name="Copy", new_external_ref=taken.external_ref,
                                                   new_region="DE"))
    assert answer.status_code == 409
    assert "already exists" in error_beside(answer.get_data(as_text=True), "new_external_ref")
    # A lowered legal regime is refused beside its field, and the tenant created first is undone.
    answer = user.post("/admin/requests/new", form(new_name="Lowered", new_external_ref="fresh-1",
                                                   new_region="FR", legal_regime="none"))
    assert answer.status_code == 409
    assert "never lowered" in error_beside(answer.get_data(as_text=True), "legal_regime")
    assert count(Tenant) == before and count(OffboardingRequest) == 0


@pytest.mark.parametrize("role, csrf, code", [("csm", False, 400), ("auditor", True, 403),
                                              ("legal", True, 403)])
def test_new_request_is_refused_without_csrf_or_rights(staff, role, csrf, code) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant()
    user = staff(role)
    user.get("/admin/requests")
    answer = user.post("/admin/requests/new", form(tenant_id=str(tenant.id)), csrf=csrf)
    assert answer.status_code == code
    assert count(OffboardingRequest) == 0


def test_the_api_list_filters_by_region_and_search(client, as_role) -> None:  # type: ignore[no-untyped-def]
    german = new_request(new_tenant("Nordwind GmbH", "DE"))
    californian = new_request(new_tenant("Nordic Sun Inc", "US-CA"))
    headers = as_role("auditor")

    def ids(query: str) -> list[int]:
        answer = client.get(f"/api/v1/requests?{query}", headers=headers)
        assert answer.status_code == 200, answer.get_json()
        return [item["id"] for item in answer.get_json()["items"]]

    assert ids("q=nord") == [californian.id, german.id]
    assert ids("q=nord&region=DE") == [german.id]
    assert ids("region=US-CA") == [californian.id]
    assert ids("q=" + german.tenant.external_ref) == [german.id]
    assert ids("q=wind&status=received&overdue=false") == [german.id]
    refused = client.get("/api/v1/requests?region=Germany", headers=headers)
    assert refused.status_code == 422
    assert "region" in refused.get_json()["errors"]["query"]
