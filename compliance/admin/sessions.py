"""Signing in and out of the admin pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, flash, redirect, render_template, request, session, url_for

from compliance import db, signin
from compliance.admin import SESSION_KEY, bp, current_session
from compliance.auth import public, requires
from compliance.models import ROLES


@bp.route("/sign-in", methods=["GET", "POST"])
@public
def sign_in() -> Response | str | tuple[str, int]:
    target = _local(request.values.get("next"))
    if request.method == "GET":
        if current_session() is not None:
            return redirect(target)
        return render_template("admin/sign_in.html", next=target, email="", errors={})
    email, password = request.form.get("email", "").strip(), request.form.get("password", "")
    errors = {name: "Enter your " + name for name, value in (("email", email), ("password", password))
              if not value}
    if errors:
        return render_template("admin/sign_in.html", next=target, email=email, errors=errors), 400
    with db.transaction():
        outcome = signin.attempt(email, password, ip=request.remote_addr,
                                 user_agent=request.headers.get("User-Agent"))
    if outcome.token is None:
        return render_template("admin/sign_in.html", next=target, email=email, errors={},
                               refusal=outcome.refusal), 401
    session.clear()  # a fresh session (and CSRF token) after signing in: no fixation
    session[SESSION_KEY] = outcome.token
    session.permanent = True
    return redirect(target)


@bp.route("/sign-out", methods=["POST"])
@requires(*ROLES)
def sign_out() -> Response:
    staff = current_session()
    with db.transaction():
        signin.sign_out(staff)
    session.clear()
    flash("You are signed out.", "ok")
    return redirect(url_for("admin.sign_in"))


def _local(target: str | None) -> str:
    """Only an admin path of this site: a crafted ``next`` must not send anyone elsewhere."""
    parts = urlsplit(target or "")
    if target and not parts.scheme and not parts.netloc and parts.path.startswith("/admin/") \
            and "\\" not in target:
        return target
    return url_for("admin.dashboard")
