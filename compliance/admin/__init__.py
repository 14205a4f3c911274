"""The admin pages under /admin: server-rendered, signed in with a browser session.

Pages sit on the same services as the API (workflow, exporters, retention, audit) and add
no business rule of their own. Every view declares its roles like an API route does; every
form carries a CSRF token (Flask-WTF); errors are pages, never stack traces.
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import Blueprint, Flask, Response, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException, InternalServerError, NotFound

from compliance import auth, db, signin, workflow
from compliance.admin import formatting
from compliance.auth import Principal

bp = Blueprint("admin", __name__, url_prefix="/admin")
SESSION_KEY = "staff_session"
SIGN_IN_RATE = "20 per minute"  # per address, across accounts: the lockout guards each account
log = structlog.get_logger("offboard.admin")
csrf = CSRFProtect()
# Pages show personal data: never cached, never framed, scripts only from this site.
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; "
                               "base-uri 'none'",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
ERROR_TITLES = {
    400: "The request was not understood",
    403: "You may not do this",
    404: "Not found",
    405: "Not allowed here",
    409: "That cannot be done now",
    413: "Too large",
    429: "Too many attempts",
    500: "Something went wrong on our side",
}


def init_app(app: Flask) -> None:
    from compliance.admin import (  # noqa: F401 -- the page modules add their views to bp
        audit_pages,
        dashboard,
        feedback_pages,
        legal,
        message_pages,
        request_actions,
        request_detail,
        request_pages,
        sessions,
        tenant_pages,
    )

    app.config.update(WTF_CSRF_CHECK_DEFAULT=False, WTF_CSRF_TIME_LIMIT=None, WTF_CSRF_SSL_STRICT=True,
                      PERMANENT_SESSION_LIFETIME=signin.ABSOLUTE_TIMEOUT)
    csrf.init_app(app)
    app.register_blueprint(bp)
    for limiter in app.extensions.get("limiter", ()):  # the download pages' limiter, on Redis
        app.view_functions["admin.sign_in"] = limiter.limit(SIGN_IN_RATE, methods=["POST"])(sessions.sign_in)
    auth.session_realm(app, bp.name, authenticate)
    app.jinja_env.globals.update(may=auth.may, **formatting.GLOBALS)
    app.jinja_env.filters.update(formatting.FILTERS)


@bp.before_request
def _protect_forms() -> None:
    """Every form post carries the CSRF token bound to this browser's session."""
    if request.method == "POST":
        csrf.protect()


@bp.after_request
def _private(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def authenticate() -> Principal:
    """The signed-in person, or a redirect to the sign-in page that comes back here after."""
    staff = current_session()
    if staff is None:
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        raise _Redirect(url_for("admin.sign_in", next=target) if target else url_for("admin.sign_in"))
    return Principal(role=staff.user.role, actor=signin.actor(staff.user))


def current_session() -> Any:
    """The live ``StaffSession`` of this browser (looked up once per request), or None."""
    if "staff" not in g:
        g.staff = signin.current(session.get(SESSION_KEY))
    return g.staff


class _Redirect(HTTPException):
    code = 302

    def __init__(self, location: str) -> None:
        super().__init__()
        self.location = location

    def get_response(self, environ: Any = None, scope: Any = None) -> Response:
        return redirect(self.location)  # type: ignore[return-value]


@bp.route("/<path:anything>", methods=["GET", "POST"])
@auth.public
def not_found(anything: str) -> Response:
    """Unknown admin URLs get the admin's 404 page, not the API's JSON."""
    raise NotFound(f"there is no admin page at /admin/{anything[:80]}")


@bp.errorhandler(CSRFError)
def _csrf_refused(error: CSRFError) -> tuple[str, int]:
    return _error_page(400, "The form was not accepted because its security token was missing or "
                       "had expired. Go back, reload the page and send it again.")


@bp.errorhandler(workflow.WorkflowError)
def _conflict(error: workflow.WorkflowError) -> tuple[str, int]:
    return _error_page(409, str(error))


@bp.errorhandler(workflow.UnknownRequest)
def _unknown(error: workflow.UnknownRequest) -> tuple[str, int]:
    return _error_page(404, str(error))


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Any:
    if isinstance(error, _Redirect):
        return error.get_response()
    data = getattr(error, "data", None) or {}
    return _error_page(error.code or 500, data.get("message") or error.description or "")


@bp.errorhandler(Exception)
def _crash(error: Exception) -> tuple[str, int]:
    db.session.rollback()
    log.exception("admin_page_failed", path=request.path, error_type=type(error).__name__)
    return _error_page(500, InternalServerError.description)


def _error_page(code: int, message: str) -> tuple[str, int]:
    title = ERROR_TITLES.get(code, "Something went wrong")
    return render_template("admin/error.html", code=code, title=title, message=message), code
