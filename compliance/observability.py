"""Logs, metrics and health: JSON logs with request ids, Prometheus /metrics, /healthz."""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
import time
from typing import Any

import structlog
from flask import Flask, Response, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text

from compliance import db, queues
from compliance.auth import public

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DOWNLOAD_TOKEN = re.compile(r"/d/(?!link-(?:\d+|None)(?:/|$))[^/]*")
SECRET_WORDS = ("password", "secret", "token", "authorization", "api_key", "key", "cookie")

HTTP_REQUESTS = Counter("offboard_http_requests_total", "HTTP requests answered",
                        ["method", "endpoint", "status"])
HTTP_LATENCY = Histogram("offboard_http_request_duration_seconds", "HTTP request latency",
                         ["method", "endpoint"])

log = structlog.get_logger("offboard")


def configure_logging(level: str) -> None:
    """JSON lines on stdout for our events and for libraries' (RQ, Alembic) stdlib logging;
    secrets are redacted before anything is written."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
    ))
    logging.basicConfig(handlers=[handler], level=level, force=True)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


def redact_secrets(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Secret-named fields are blanked, and download tokens are cut out of any text."""
    for name, value in list(event.items()):
        if any(word in name.lower() for word in SECRET_WORDS):
            event[name] = "[redacted]"
        elif isinstance(value, str) and "/d/" in value:
            event[name] = DOWNLOAD_TOKEN.sub("/d/[token]", value)
    return event


class QueueDepthCollector:
    """Jobs waiting per RQ queue, read from Redis at scrape time."""

    def collect(self) -> Any:
        gauge = GaugeMetricFamily("offboard_queue_depth", "Jobs waiting per queue", labels=["queue"])
        try:
            for name, depth in queues.depths().items():
                gauge.add_metric([name], depth)
        except Exception:
            log.warning("queue_depth_unavailable")
        yield gauge


def init_app(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
    app.add_url_rule("/healthz", "healthz", public(healthz))
    app.add_url_rule("/metrics", "metrics", public(metrics))


def healthz() -> tuple[Response, int]:
    """200 only when the database and Redis both answer; otherwise say which failed."""
    checks = {"database": _check(lambda: db.session.execute(text("SELECT 1"))),
              "redis": _check(lambda: queues.connection().ping())}
    db.session.rollback()
    healthy = all(value == "ok" for value in checks.values())
    return jsonify(status="ok" if healthy else "unavailable", checks=checks), 200 if healthy else 503


def metrics() -> Response:
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    registry_with_queues = CollectorRegistry()
    registry_with_queues.register(QueueDepthCollector())
    body = generate_latest(registry) + generate_latest(registry_with_queues)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def _check(probe: Any) -> str:
    try:
        probe()
    except Exception as error:
        return f"failed: {type(error).__name__}"
    return "ok"


def _start() -> None:
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if REQUEST_ID.match(given) else secrets.token_hex(8)
    g.started = time.perf_counter()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=g.request_id)


def _finish(response: Response) -> Response:
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    HTTP_REQUESTS.labels(request.method, endpoint, response.status_code).inc()
    HTTP_LATENCY.labels(request.method, endpoint).observe(elapsed)
    response.headers["X-Request-ID"] = g.get("request_id", "")
    principal = g.get("principal")
    path = request.path
    if request.blueprint == "download":  # the path holds the token: log the link id instead
        suffix = "/bundle.zip" if request.endpoint == "download.bundle" else ""
        path = f"/d/link-{g.get('link_id')}{suffix}"
    log.info("http_request", method=request.method, path=path, endpoint=endpoint,
             status=response.status_code, duration_ms=round(elapsed * 1000, 2),
             actor=principal.actor if principal else None)
    return response
