"""create_app(): reads as the table of contents of the service."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from compliance import admin, api, auth, config, db, download, observability, queues, survey
from compliance.config import Settings
from exporters.sources import registry


def create_app(settings: Settings | None = None) -> Flask:
    settings = config.use(settings or config.load())
    app = Flask(__name__, instance_path=str(settings.instance_dir))
    if settings.proxy_hops:  # the client's address (rate limits, audit) comes from the proxy's header
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops,  # type: ignore[method-assign]
                                x_proto=settings.proxy_hops, x_host=settings.proxy_hops)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        OFFBOARD=settings,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.env == "production",
    )
    observability.configure_logging(settings.log_level)
    registry.kinds()  # two connectors claiming one kind fail here, at start-up
    db.configure(settings.database_url)
    queues.configure(settings)
    app.teardown_appcontext(lambda _error: db.session.remove())
    observability.init_app(app)
    auth.init_app(app)
    api.init_app(app)
    download.init_app(app, settings)
    survey.init_app(app)
    admin.init_app(app)
    return app
