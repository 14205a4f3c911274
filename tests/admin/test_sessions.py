"""Signing in and out: argon2 passwords, lockout, server-side sessions, CSRF, safe redirects."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from compliance import db, signin
from compliance.models import AuditEvent, StaffSession, User
from tests.admin.conftest import CSRF, PASSWORD, make_user, sign_in


def actions() -> list[str]:
    return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_pages_send_strangers_to_the_sign_in_page_and_back(client: Any) -> None:
    make_user("csm")
    answer = client.get("/admin/requests?status=received")
    assert answer.status_code == 302
    assert answer.location.startswith("/admin/sign-in?next=/admin/requests")
    page = client.get(answer.location)
    token = CSRF.search(page.get_data(as_text=True)).group(1)
    form = {"email": "CSM@example.com ", "password": PASSWORD, "csrf_token": token,
            "next": "/admin/requests?status=received"}
    back = client.post("/admin/sign-in", data=form)
    assert back.status_code == 302 and back.location == "/admin/requests?status=received"
    assert client.get("/admin/requests").status_code == 200
    assert "user.signed_in" in actions()


def test_the_password_is_stored_as_argon2_and_never_logged(client: Any) -> None:
    user = make_user("legal")
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    sign_in(client, user.email, "not the password")
    events = list(db.session.scalars(select(AuditEvent)))
    assert all(PASSWORD not in str(e.data) and "not the password" not in str(e.data) for e in events)


def test_a_wrong_password_says_so_without_naming_which(client: Any) -> None:
    make_user("csm")
    wrong = sign_in(client, "csm@example.com", "wrong password!")
    unknown = sign_in(client, "nobody@example.com", "wrong password!")
    for answer in (wrong, unknown):
        assert answer.status_code == 401
        assert signin.WRONG in answer.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_five_failures_lock_the_account_even_for_the_right_password(client: Any, clock: Any) -> None:
    user = make_user("csm")
    for _ in range(signin.MAX_FAILURES):
        sign_in(client, user.email, "wrong password!")
    locked = sign_in(client, user.email)
    assert locked.status_code == 401 and "locked until" in locked.get_data(as_text=True)
    assert "user.locked" in actions() and actions().count("user.sign_in_failed") == signin.MAX_FAILURES
    clock.freeze(clock.now() + signin.LOCKOUT + timedelta(seconds=1))
    assert sign_in(client, user.email).status_code == 302
    assert db.session.get(User, user.id).failed_sign_ins == 0


def test_a_success_resets_the_failure_count(client: Any) -> None:
    user = make_user("csm")
    for _ in range(signin.MAX_FAILURES - 1):
        sign_in(client, user.email, "wrong password!")
    assert sign_in(client, user.email).status_code == 302
    client.delete_cookie("session")
    assert sign_in(client, user.email, "wrong password!").status_code == 401
    assert sign_in(client, user.email).status_code == 302  # one failure since the success: not locked


def test_the_cookie_is_http_only_and_same_site(client: Any) -> None:
    make_user("csm")
    answer = sign_in(client, "csm@example.com")
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    stored = db.session.scalar(select(StaffSession))
    assert stored is not None and len(stored.token_hash) == 32
    assert stored.token_hash.hex() not in cookie


def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(app: Any, client: Any) -> None:
    make_user("csm")
    sign_in(client, "csm@example.com")
    copy = app.test_client()
    copy.set_cookie("session", client.get_cookie("session").value)
    assert copy.get("/admin/").status_code == 200
    page = client.get("/admin/").get_data(as_text=True)
    out = client.post("/admin/sign-out", data={"csrf_token": CSRF.search(page).group(1)})
    assert out.status_code == 302 and out.location == "/admin/sign-in"
    assert copy.get("/admin/").status_code == 302  # the stolen copy is signed out too
    assert db.session.scalar(select(StaffSession.ended_at)) is not None
    assert "user.signed_out" in actions()


def test_idle_sessions_end(client: Any, clock: Any) -> None:
    make_user("csm")
    sign_in(client, "csm@example.com")
    assert client.get("/admin/").status_code == 200
    clock.freeze(clock.now() + signin.IDLE_TIMEOUT + timedelta(minutes=1))
    assert client.get("/admin/").status_code == 302


def test_a_disabled_user_is_signed_out_at_once(client: Any, clock: Any) -> None:
    user = make_user("csm")
    sign_in(client, user.email)
    db.session.get(User, user.id).disabled_at = clock.now()
    db.session.commit()
    assert client.get("/admin/").status_code == 302
    client.delete_cookie("session")
    assert sign_in(client, user.email).status_code == 401


def test_forms_without_the_csrf_token_are_refused(client: Any) -> None:
    make_user("csm")
    refused = client.post("/admin/sign-in", data={"email": "csm@example.com", "password": PASSWORD})
    assert refused.status_code == 400 and "security token" in refused.get_data(as_text=True)
    sign_in(client, "csm@example.com")
    assert client.post("/admin/sign-out").status_code == 400
    assert client.get("/admin/").status_code == 200  # still signed in


def test_next_never_leaves_the_admin_pages(client: Any) -> None:
    make_user("csm")
    for target in ("https://evil.example/admin/", "//evil.example/admin/", "/api/v1/keys", "/admin\\@evil"):
        client.delete_cookie("session")
        page = client.get("/admin/sign-in").get_data(as_text=True)
        form = {"email": "csm@example.com", "password": PASSWORD, "csrf_token": CSRF.search(page).group(1),
                "next": target}
        answer = client.post("/admin/sign-in", data=form)
        assert answer.location == "/admin/", target


def test_error_pages_are_pages(client: Any) -> None:
    answer = client.get("/admin/no-such-page")
    assert answer.status_code == 404 and answer.mimetype == "text/html"
    assert "Not found" in answer.get_data(as_text=True) and "Traceback" not in answer.get_data(as_text=True)
    assert answer.headers["X-Frame-Options"] == "DENY" and answer.headers["Cache-Control"] == "no-store"


def test_the_api_still_answers_json(client: Any, as_role: Any) -> None:
    assert client.get("/api/v1/requests").status_code == 401
    assert client.post("/api/v1/tenants", data="x=1", headers={**as_role("csm"),
                       "Content-Type": "application/x-www-form-urlencoded"}).status_code == 415


def test_the_first_admin_is_made_once_and_never_revived(session: None) -> None:
    from compliance import seed

    email, password = seed.bootstrap_admin_user()
    assert email == seed.BOOTSTRAP_EMAIL and len(password) >= 12
    assert seed.bootstrap_admin_user() is None  # someone can sign in already
    from compliance import clock

    db.session.scalar(select(User).where(User.email == email)).disabled_at = clock.now()
    db.session.commit()
    assert seed.bootstrap_admin_user() is None  # disabled on purpose: not made again, no error


def test_sign_in_attempts_are_rate_limited_per_address(client: Any) -> None:
    from compliance.admin import SIGN_IN_RATE

    allowed = int(SIGN_IN_RATE.split()[0])
    answers = [sign_in(client, f"nobody{n}@example.com", "wrong password!") for n in range(allowed + 1)]
    # many accounts, none locked: only the limit per address stops it, with a page that says so
    assert [answer.status_code for answer in answers[:allowed]] == [401] * allowed
    assert answers[-1].status_code == 429 and "Too many attempts" in answers[-1].get_data(as_text=True)
    assert client.get("/admin/sign-in").status_code == 200  # reading the page is not limited
