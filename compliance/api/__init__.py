"""The REST API under /api/v1: flask-smorest blueprints, OpenAPI at /api/openapi.json."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import swagger_ui_bundle
from flask import Blueprint, Flask, current_app, request
from flask_smorest import Api, abort
from werkzeug.exceptions import NotFound, default_exceptions
from werkzeug.routing import IntegerConverter, ValidationError

from compliance import auth, workflow
from compliance.api import (
    audit,
    backups,
    certificates,
    exports,
    feedback,
    keys,
    links,
    reports,
    requests,
    retention,
    sources,
    tenants,
)

MAX_ID = 2**63 - 1
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class IdConverter(IntegerConverter):
    """Positive ids that fit a BIGINT: anything else is a 404, never a database error."""

    def __init__(self, url_map: Any) -> None:
        super().__init__(url_map, min=1, max=MAX_ID)

    def to_python(self, value: str) -> int:
        try:
            return super().to_python(value)  # type: ignore[no-any-return]
        except ValidationError:
            # Not "try the next rule": that would answer 405 from a sibling route.
            raise NotFound(f"no object has id {value[:30]}") from None


def init_app(app: Flask) -> None:
    app.config.update(
        API_TITLE="Offboard",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="/api/docs/assets/",
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {"ApiKey": {
                "type": "http", "scheme": "bearer",
                "description": "an Offboard API key: Authorization: Bearer ob_...",
            }}},
            "security": [{"ApiKey": []}],
            "info": {"description": "Customer offboarding: requests, exports, retention, proof."},
        },
    )
    app.url_map.converters["id"] = IdConverter
    api = Api(app)
    id_schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    api.register_converter(IdConverter, lambda _converter: id_schema)
    for module in (tenants, sources, requests, exports, links, keys, audit, certificates, retention, backups,
                   reports, feedback):
        api.register_blueprint(module.blp)
    assets = Blueprint("api_docs_assets", __name__, static_folder=swagger_ui_bundle.swagger_ui_path,
                       static_url_path="/api/docs/assets")
    app.register_blueprint(assets)
    app.add_url_rule("/.well-known/offboard/keys", "audit_keys", audit.published_keys)
    for endpoint in ("api-docs.openapi_json", "api-docs.openapi_swagger_ui", "api_docs_assets.static"):
        auth.public_endpoint(app, endpoint)
    app.before_request(_require_json_body)
    app.before_request(_refuse_nul_in_query)
    app.register_error_handler(workflow.WorkflowError, _answer_with(409))
    app.register_error_handler(workflow.UnknownRequest, _answer_with(404))


def _require_json_body() -> None:
    if (request.method in BODY_METHODS and request.path.startswith("/api/")
            and request.content_length and not request.is_json):
        abort(415, message="send the body as application/json")


def _refuse_nul_in_query() -> None:
    # PostgreSQL refuses NUL in text, so a filter carrying one must stop here as a 422.
    bad = sorted({name for name, values in request.args.lists() if any("\x00" in v for v in values)})
    if bad:
        abort(422, message="query parameters must not contain NUL characters",
              errors={"query": {name: ["must not contain NUL characters"] for name in bad}})


def _answer_with(code: int) -> Callable[[Exception], Any]:
    """Turn a domain error into the API's JSON error answer with its message."""

    def handler(error: Exception) -> Any:
        http_error = default_exceptions[code]()
        http_error.data = {"message": str(error.args[0]) if error.args else str(error)}
        return current_app.handle_http_exception(http_error)

    return handler
