"""Every route in the URL map, called with every role and with no key (API) or signed in as a
person of every role and signed out (admin pages).

A route added without a role rule fails here: the matrix below must name it.
"""

from __future__ import annotations

import re

import pytest

from compliance.models import ROLES
from tests.admin.conftest import CSRF, make_user, sign_in

ALL = set(ROLES)
PUBLIC = "public"
# endpoint -> who may call it (the roles, or PUBLIC)
EXPECTED: dict[str, set[str] | str] = {
    "healthz": PUBLIC,
    "metrics": PUBLIC,
    "static": PUBLIC,
    "api-docs.openapi_json": PUBLIC,
    "api-docs.openapi_swagger_ui": PUBLIC,
    "api_docs_assets.static": PUBLIC,
    "download.page": PUBLIC,
    "download.bundle": PUBLIC,
    "survey.survey": PUBLIC,
    "feedback.feedback_csv": {"admin", "csm"},
    "feedback.flag_winback": {"admin", "csm"},
    "feedback.send_survey": {"admin", "csm"},
    "admin.feedback_csv": {"admin", "csm"},
    "admin.send_survey": {"admin", "csm"},
    "admin.winback_form": {"admin", "csm"},
    "admin.flag_winback": {"admin", "csm"},
    "tenants.list_tenants": ALL,
    "tenants.get_tenant": ALL,
    "tenants.create_tenant": {"admin", "csm"},
    "tenants.update_tenant": {"admin", "csm"},
    "sources.list_sources": ALL,
    "sources.get_source": ALL,
    "sources.create_source": {"admin", "csm"},
    "sources.delete_source": {"admin"},
    "requests.list_requests": ALL,
    "requests.get_request": ALL,
    "requests.create_request": {"admin", "csm"},
    "requests.acknowledge": {"admin", "csm"},
    "requests.approve": {"admin", "csm"},
    "requests.verify": {"admin", "csm"},
    "requests.record_save_attempt": {"admin", "csm"},
    "requests.reduce_access": {"admin", "csm"},
    "requests.collect_feedback": {"admin", "csm"},
    "requests.close": {"admin", "csm"},
    "requests.withdraw": {"admin", "csm"},
    "requests.fail": {"admin"},
    "requests.extend_deadline": {"admin", "csm", "legal"},
    "sources.check_source": {"admin", "csm"},
    "exports.start_export": {"admin", "csm"},
    "exports.list_exports": ALL,
    "exports.get_export": ALL,
    "exports.retry_export": {"admin", "csm"},
    "links.issue_link": {"admin", "csm"},
    "links.list_links": ALL,
    "links.revoke_link": {"admin", "csm"},
    "links.reissue_link": {"admin", "csm"},
    "keys.list_keys": {"admin"},
    "keys.create_key": {"admin"},
    "keys.revoke_key": {"admin"},
    "audit_keys": PUBLIC,
    "audit.list_events": {"auditor", "legal", "admin"},
    "audit.latest_checkpoint": {"auditor", "legal", "admin"},
    "audit.sign_checkpoint": {"auditor", "admin"},
    "audit.inclusion": {"auditor", "legal", "admin"},
    "audit.consistency": {"auditor", "legal", "admin"},
    "certificates.issue_certificate": {"legal", "admin"},
    "certificates.list_certificates": {"legal", "admin", "auditor"},
    "certificates.get_certificate": {"legal", "admin", "auditor"},
    "certificates.verify_certificate": PUBLIC,
    "retention.get_retention": ALL,
    "retention.list_holds": ALL,
    "retention.place_hold": {"legal", "admin"},
    "retention.release_hold": {"legal", "admin"},
    "retention.set_override": {"legal", "admin"},
    "retention.start_run": {"admin"},
    "retention.list_runs": {"admin", "legal", "auditor"},
    "retention.get_run": {"admin", "legal", "auditor"},
    "backups.register_snapshot": {"admin"},
    "backups.list_snapshots": {"admin", "legal", "auditor"},
    "reports.dashboard": ALL,
    # the admin pages (signed in with a browser session)
    "admin.not_found": PUBLIC,
    "admin.sign_in": PUBLIC,
    "admin.sign_out": ALL,
    "admin.dashboard": ALL,
    "admin.requests": ALL,
    "admin.request": ALL,
    "admin.request_progress": ALL,
    "admin.new_request": {"admin", "csm"},
    "admin.request_acknowledge": {"admin", "csm"},
    "admin.request_approve": {"admin", "csm"},
    "admin.request_verify": {"admin", "csm"},
    "admin.request_save_attempt": {"admin", "csm"},
    "admin.request_reduce_access": {"admin", "csm"},
    "admin.request_collect_feedback": {"admin", "csm"},
    "admin.request_close": {"admin", "csm"},
    "admin.request_withdraw": {"admin", "csm"},
    "admin.request_fail": {"admin"},
    "admin.request_extend": {"admin", "csm", "legal"},
    "admin.request_export": {"admin", "csm"},
    "admin.export_retry": {"admin", "csm"},
    "admin.link_issue": {"admin", "csm"},
    "admin.link_revoke": {"admin", "csm"},
    "admin.link_reissue": {"admin", "csm"},
    "admin.tenants": ALL,
    "admin.tenant": ALL,
    "admin.edit_tenant": {"admin", "csm"},
    "admin.check_source": {"admin", "csm"},
    "admin.legal": {"legal", "admin", "auditor"},
    "admin.place_hold": {"legal", "admin"},
    "admin.release_hold": {"legal", "admin"},
    "admin.issue_certificate": {"legal", "admin"},
    "admin.certificate": {"legal", "admin", "auditor"},
    "admin.certificate_pdf": {"legal", "admin", "auditor"},
    "admin.certificate_json": {"legal", "admin", "auditor"},
    "admin.verify_certificate": {"legal", "admin", "auditor"},
    "admin.audit": {"auditor", "legal", "admin"},
    "admin.verify_audit": {"auditor", "admin"},
    "admin.messages": ALL,
    "admin.message_preview": {"admin", "csm", "legal"},
}


def concrete(rule: str) -> str:
    """A URL for a rule: ids become 1 (the answer past the role check may be 404)."""
    path = re.sub(r"<id:[^>]+>", "1", rule)
    return re.sub(r"<(?:path:)?[^>]+>", "swagger-ui.css", path)


def routes(app):  # type: ignore[no-untyped-def]
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, concrete(rule.rule)


def api_routes(app):  # type: ignore[no-untyped-def]
    return [(e, m, u) for e, m, u in routes(app) if not e.startswith("admin.")]


def page_routes(app):  # type: ignore[no-untyped-def]
    return [(e, m, u) for e, m, u in routes(app) if e.startswith("admin.") and EXPECTED[e] != PUBLIC]


def test_every_route_is_in_the_matrix(app) -> None:  # type: ignore[no-untyped-def]
    endpoints = {endpoint for endpoint, _method, _url in routes(app)}
    assert endpoints == set(EXPECTED), "a route was added or removed without a role rule here"


def test_every_view_declares_a_rule(app) -> None:  # type: ignore[no-untyped-def]
    opened = app.extensions["offboard_public"]
    for endpoint, view in app.view_functions.items():
        declared = getattr(view, "roles", None)
        if EXPECTED[endpoint] == PUBLIC:
            assert getattr(view, "public", False) or endpoint in opened, endpoint
        else:
            assert declared == EXPECTED[endpoint], endpoint


@pytest.mark.parametrize("role", [*ROLES, None])
def test_matrix(client, as_role, role) -> None:  # type: ignore[no-untyped-def]
    as_role("csm")  # takes id 1 where ids restart (SQLite): DELETE /api/v1/keys/1 must not revoke ours
    headers = as_role(role) if role else {}
    for endpoint, method, url in api_routes(client.application):
        allowed = EXPECTED[endpoint]
        response = client.open(url, method=method, headers=headers, json={} if method != "GET" else None)
        status = response.status_code
        if allowed == PUBLIC:
            assert status not in (401, 403), (role, method, url, status)
        elif role is None:
            assert status == 401, (method, url, status)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        elif role in allowed:
            assert status not in (401, 403), (role, method, url, status, response.json)
        else:
            assert status == 403, (role, method, url, status)
        assert status < 500, (role, method, url, status, response.data[:300])


@pytest.mark.parametrize("role", [*ROLES, None])
def test_page_matrix(client, role) -> None:  # type: ignore[no-untyped-def]
    """Pages: signed out, every page sends to the sign-in page; signed in, a role outside the
    page's rule gets the 403 page (forms too, with a valid CSRF token), others get past it, and
    every form they may post is refused without its CSRF token."""
    if role:
        make_user(role)
        assert sign_in(client, f"{role}@example.com").status_code == 302
    found = CSRF.search(client.get("/admin/" if role else "/admin/sign-in").get_data(as_text=True))
    assert found is not None
    form = {"csrf_token": found.group(1)}
    for endpoint, method, url in page_routes(client.application):
        if endpoint == "admin.sign_out":
            continue  # it would end the session the rest of the matrix runs in
        response = client.open(url, method=method, data=form if method == "POST" else None)
        status = response.status_code
        if role is None:
            assert status == 302 and response.location.startswith("/admin/sign-in"), (method, url, status)
        elif role in EXPECTED[endpoint]:
            assert status not in (401, 403), (role, method, url, status)
            if method == "POST":  # and without its CSRF token, the same form is refused
                forged = client.post(url, data={})
                assert forged.status_code == 400 and "security token" in forged.get_data(as_text=True), url
        else:
            assert status == 403 and "You may not do this" in response.get_data(as_text=True), (role, url)
        assert status < 500, (role, method, url, status, response.data[:300])
