"""/healthz, /metrics, request ids and logs without secrets."""

from __future__ import annotations

import json

from compliance import config, queues
from compliance.app import create_app


def test_healthz_ok(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_healthz_names_the_failed_service(settings, instance_dir) -> None:  # type: ignore[no-untyped-def]
    broken = config.load({"OFFBOARD_INSTANCE_DIR": str(instance_dir), "DATABASE_URL": settings.database_url,
                          "REDIS_URL": "redis://127.0.0.1:1/0", "LOG_LEVEL": "WARNING"})
    try:
        response = create_app(broken).test_client().get("/healthz")
    finally:  # give the other tests their settings and Redis back
        config.use(settings)
        queues.configure(settings)
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["checks"]["database"] == "ok"
    assert response.json["checks"]["redis"].startswith("failed:")


def test_metrics_count_requests_and_queue_depth(client, as_role) -> None:  # type: ignore[no-untyped-def]
    headers = as_role("auditor")
    client.get("/api/v1/tenants", headers=headers)
    queues.queue("exports").enqueue("builtins.print", "x")
    body = client.get("/metrics").get_data(as_text=True)
    assert 'offboard_http_requests_total{endpoint="/api/v1/tenants",method="GET",status="200"}' in body
    assert "offboard_http_request_duration_seconds_bucket" in body
    assert 'offboard_queue_depth{queue="exports"} 1.0' in body


def test_request_id_is_echoed_or_made(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id;drop"}).headers["X-Request-ID"]
    assert made and made != "bad id;drop" and len(made) == 16


def test_logs_are_json_with_request_id_and_no_key(client, as_role, capsys) -> None:  # type: ignore[no-untyped-def]
    headers = as_role("csm")
    secret = headers["Authorization"].split()[1]
    from compliance.observability import configure_logging

    configure_logging("INFO")
    try:
        client.get("/api/v1/tenants", headers={**headers, "X-Request-ID": "req-42"})
        out = capsys.readouterr().out
    finally:
        configure_logging("WARNING")
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("event") == "http_request"]
    assert access and access[-1]["request_id"] == "req-42" and access[-1]["status"] == 200
    assert access[-1]["actor"].startswith("apikey:")
    assert secret not in out


def test_redaction_processor_hides_secret_fields() -> None:
    from compliance.observability import redact_secrets

    event = redact_secrets(None, "info", {"event": "x", "password": "p", "api_key": "k", "rows": 3})
    assert event == {"event": "x", "password": "[redacted]", "api_key": "[redacted]", "rows": 3}


def test_behind_a_trusted_proxy_the_client_address_comes_from_x_forwarded_for(settings, instance_dir) -> None:  # type: ignore[no-untyped-def]
    from flask import request as flask_request

    behind = config.load({"OFFBOARD_INSTANCE_DIR": str(instance_dir), "DATABASE_URL": settings.database_url,
                          "REDIS_URL": settings.redis_url or "", "OFFBOARD_PROXY_HOPS": "1",
                          "LOG_LEVEL": "WARNING"})
    try:
        app = create_app(behind)
        client = app.test_client()
        seen: list[str] = []
        app.add_url_rule("/whoami-test", "whoami_test", lambda: seen.append(flask_request.remote_addr) or "")
        app.view_functions["whoami_test"].public = True  # type: ignore[attr-defined]
        client.get("/whoami-test", headers={"X-Forwarded-For": "203.0.113.9"},
                   environ_base={"REMOTE_ADDR": "10.0.0.2"})
        assert seen == ["203.0.113.9"]
    finally:
        config.use(settings)
        queues.configure(settings)
