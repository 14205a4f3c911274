"""Fixtures for the admin pages: a browser-like client signed in as a person of some role."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from compliance import auth, db
from compliance.models import User

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Staff:
    """A signed-in test client: ``get`` pages, ``post`` forms with the page's CSRF token."""

    def __init__(self, client: FlaskClient, user: User) -> None:
        self.client, self.user = client, user
        self.token = ""

    def get(self, url: str, **kwargs: Any) -> Any:
        response = self.client.get(url, **kwargs)
        found = CSRF.search(response.get_data(as_text=True))
        if found:
            self.token = found.group(1)
        return response

    def post(self, url: str, data: dict[str, Any] | None = None, csrf: bool = True, **kwargs: Any) -> Any:
        """Post a form; the CSRF token comes from the last page fetched (or the dashboard)."""
        if csrf and not self.token:
            self.get("/admin/")
        form = {**({"csrf_token": self.token} if csrf else {}), **(data or {})}
        return self.client.post(url, data=form, **kwargs)


def make_user(role: str, email: str | None = None, name: str | None = None) -> User:
    user = auth.create_user(email=email or f"{role}@example.com", name=name or f"Test {role.title()}",
                            role=role, password=PASSWORD, actor="test")
    db.session.commit()
    return user


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD) -> Any:
    page = client.get("/admin/sign-in")
    token = CSRF.search(page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    return client.post("/admin/sign-in", data={"email": email, "password": password, "csrf_token": token})


@pytest.fixture
def staff(app: Any, session: None, redis: Any) -> Callable[..., Staff]:
    """``staff("csm")``: a new client signed in as a new user of that role."""

    def signed_in(role: str, email: str | None = None, name: str | None = None) -> Staff:
        user = make_user(role, email, name)
        client = app.test_client()
        answer = sign_in(client, user.email)
        assert answer.status_code == 302, answer.get_data(as_text=True)
        return Staff(client, user)

    return signed_in
