"""The ``http`` source against a real HTTP server on 127.0.0.1 (no mocked urllib).

The server holds per-tenant records in memory and paginates three ways: numbered pages
(``users``), cursors (``docs``) and ``Link`` headers (``events``). ``faults`` scripts
answers per path, for retries.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import pyarrow as pa
import pytest
from marshmallow import ValidationError

from exporters.sources.base import Scope, SourceError, redact
from exporters.sources.http import HttpSource
from exporters.sources.http_client import next_link, retry_after
from exporters.sources.http_config import HttpConfig

TOKEN = "Bearer s3cr3t-Token-42"
ACME, GLOBEX, ODD = Scope("acme"), Scope("globex"), Scope("a/b c")


def user(i: int, tenant: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": i, "email": f"user{i}@{tenant}.test", "active": i % 2 == 0, "score": i + 0.5,
        "profile": {"tags": ["x", i], "address": {"city": "Paris", "zip": None}},
        "roles": ["admin"] if i == 1 else [],
    }
    if i <= 2:
        record["ref"] = 1 if i == 1 else "one"  # mixed types in the first page
    if i == 7:
        record["nickname"] = "late"  # a key first seen on page 3
    return record


def tenant_data(tenant: str, users: int) -> dict[str, list[dict[str, Any]]]:
    return {
        "users": [user(i, tenant) for i in range(1, users + 1)],
        "docs": [{"id": 100 + i, "title": f"Doc {i}"} for i in range(5)],
        "events": [{"seq": i, "kind": "login"} for i in range(5)],
    }


@dataclass
class Api:
    tenants: dict[str, dict[str, list[dict[str, Any]]]]
    requests: list[tuple[str, str, float, str | None]] = field(default_factory=list)
    faults: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    url: str = ""


class Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.handle_any("GET")

    def do_DELETE(self) -> None:
        self.handle_any("DELETE")

    def answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
               raw: bytes | None = None) -> None:
        payload = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if raw is not None else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def handle_any(self, method: str) -> None:
        api: Api = self.server.api
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        auth = self.headers.get("Authorization")
        api.requests.append((method, self.path, time.monotonic(), auth))
        if api.faults.get(parts.path):
            status, headers = api.faults[parts.path].pop(0)
            return self.answer(status, {"error": "scripted"}, headers)
        if auth != TOKEN:  # echoes what it got: the source must scrub it from errors
            return self.answer(401, {"error": f"bad credentials {auth}"})
        segments = [unquote(segment) for segment in parts.path.split("/")[1:]]
        if segments in ([""], ["health"]):
            return self.answer(200, {"ok": True})
        if segments == ["slow"]:
            time.sleep(0.5)
            return self.answer(200, [])
        if segments == ["same"]:
            return self.answer(200, [{"id": 1}])
        if segments == ["away"]:
            return self.answer(200, [{"id": 1}], {"Link": '<http://localhost:1/x>; rel="next"'})
        if segments == ["html"]:
            return self.answer(200, raw=b"<html>maintenance</html>")
        if len(segments) < 3 or segments[0] != "t" or segments[1] not in api.tenants:
            return self.answer(404, {"error": "no such tenant"})
        return self.tenant(method, segments[1], segments[2:], query)

    def tenant(self, method: str, tenant: str, rest: list[str], query: dict[str, str]) -> None:
        data = self.server.api.tenants[tenant]
        if method == "DELETE":
            removed = len(data[rest[0]])
            data[rest[0]].clear()
            return self.answer(200, {"deleted": removed}) if rest[0] == "users" else self.answer(204)
        if rest == ["users"]:
            page, size = int(query.get("page", 1)), int(query.get("per_page", 3))
            items = data["users"][(page - 1) * size:page * size]
            return self.answer(200, {"data": {"items": items}, "total": len(data["users"])})
        if rest == ["users", "count"]:
            return self.answer(200, {"meta": {"total": len(data["users"])}})
        if rest[:1] == ["people"]:
            return self.answer(200, [r for r in data["users"] if r["email"] == rest[1]])
        if rest == ["docs"]:
            start = int(query.get("after", 0))
            more = start + 2 < len(data["docs"])
            return self.answer(200, {"items": data["docs"][start:start + 2],
                                     "paging": {"next": str(start + 2) if more else None}})
        if rest == ["events"]:
            offset = int(query.get("offset", 0))
            link = f'</t/{quote(tenant, safe="")}/events?offset={offset + 2}>; rel="next"'
            headers = {"Link": link} if offset + 2 < len(data["events"]) else {}
            return self.answer(200, data["events"][offset:offset + 2], headers)
        return self.answer(404, {"error": "no such listing"})


@pytest.fixture
def api() -> Iterator[Api]:
    state = Api({"acme": tenant_data("acme", 7), "globex": tenant_data("globex", 2),
                 "a/b c": tenant_data("odd", 3)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.api = state  # type: ignore[attr-defined]
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


DATASETS = [
    {"name": "users", "category": "account", "path": "/t/{tenant}/users", "records": "data.items",
     "pagination": {"type": "page", "size_param": "per_page", "size": 3},
     "erase": {"path": "/t/{tenant}/users", "removed": "deleted"},
     "count": {"path": "/t/{tenant}/users/count", "field": "/meta/total"}},
    {"name": "docs", "path": "/t/{tenant}/docs", "records": "/items",
     "pagination": {"type": "cursor", "param": "after", "next": "paging.next"},
     "erase": {"path": "/t/{tenant}/docs"}},
    {"name": "events", "category": "usage", "path": "/t/{tenant}/events",
     "pagination": {"type": "link"}, "erase": {"method": "DELETE", "path": "/t/{tenant}/events"}},
    {"name": "people", "path": "/t/{tenant}/people/{subject}", "fields": ["id:int64", "email"]},
]


def make(api: Api, **overrides: Any) -> HttpSource:
    config = {"base_url": api.url, "auth_token": TOKEN, "backoff_seconds": 0.01,
              "max_backoff_seconds": 2, "timeout_seconds": 5, "datasets": DATASETS, **overrides}
    return HttpSource(HttpSource.validate(config))


def rows(source: HttpSource, name: str, scope: Scope, batch_rows: int = 100) -> list[dict[str, Any]]:
    dataset = next(d for d in source.datasets(scope) if d.name == name)
    batches = list(source.read(dataset, scope, batch_rows))
    assert all(batch.schema == dataset.schema for batch in batches)
    return pa.Table.from_batches(batches, dataset.schema).to_pylist()


# -- reading ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "key"), [("users", "id"), ("docs", "id"), ("events", "seq")])
def test_each_pagination_reads_every_record_once_in_order(api: Api, name: str, key: str) -> None:
    expected = [record[key] for record in api.tenants["acme"][name]]
    assert [row[key] for row in rows(make(api), name, ACME)] == expected


def test_top_level_scalars_are_typed_columns_and_nested_values_json_text(api: Api) -> None:
    source = make(api)
    schema = next(d for d in source.datasets(ACME) if d.name == "users").schema
    assert [(f.name, f.type) for f in schema] == [
        ("id", pa.int64()), ("email", pa.string()), ("active", pa.bool_()),
        ("score", pa.float64()), ("profile", pa.string()), ("roles", pa.string()),
        ("ref", pa.string()), ("_extra", pa.string())]
    json_columns = {f.name for f in schema if (f.metadata or {}).get(b"offboard.json") == b"true"}
    assert json_columns == {"profile", "roles", "ref", "_extra"}
    got = rows(source, "users", ACME)
    for row, record in zip(got, api.tenants["acme"]["users"], strict=True):
        assert json.loads(row["profile"]) == record["profile"]
        assert json.loads(row["roles"]) == record["roles"]
        assert (row["id"], row["active"], row["score"]) == (record["id"], record["active"],
                                                            record["score"])
    assert [json.loads(row["ref"]) if row["ref"] else None for row in got[:3]] == [1, "one", None]
    assert json.loads(got[6]["_extra"]) == {"nickname": "late"}  # first seen on page 3
    assert all(row["_extra"] is None for row in got[:6])


def test_declared_fields_fix_the_schema_and_keep_the_rest_in_extra(api: Api) -> None:
    users = {**DATASETS[0], "fields": ["id:int64", "email", "score:int64", "profile:json"]}
    source = make(api, datasets=[users])
    dataset = source.datasets(ACME)[0]
    assert dataset.schema.names == ["id", "email", "score", "profile", "_extra"]
    assert [m for m, path, *_ in api.requests if "count" not in path] == []  # no listing read
    first = rows(source, "users", ACME)[0]
    assert first["score"] is None  # 1.5 does not fit int64: kept in _extra, not lost
    extra = json.loads(first["_extra"])
    assert extra["score"] == 1.5 and extra["roles"] == ["admin"] and extra["active"] is False
    assert json.loads(first["profile"])["address"]["city"] == "Paris"


def test_batch_rows_is_respected_and_pages_are_read_lazily(api: Api) -> None:
    source = make(api)
    dataset = next(d for d in source.datasets(ACME) if d.name == "users")
    stream = source.read(dataset, ACME, 2)
    first = next(stream)
    listing = [path for _, path, *_ in api.requests if path.startswith("/t/acme/users?")]
    assert len(listing) == 2  # the first page for datasets(), then one page: nothing read ahead
    batches = [first, *stream]
    assert [batch.num_rows for batch in batches] == [2, 2, 2, 1]
    assert [i for batch in batches for i in batch.column("id").to_pylist()] == list(range(1, 8))
    with pytest.raises(ValueError, match="batch_rows"):
        source.read(dataset, ACME, 0)


def test_tenant_placeholder_is_url_quoted(api: Api) -> None:
    assert [row["id"] for row in rows(make(api), "users", ODD)] == [1, 2, 3]
    assert [row["seq"] for row in rows(make(api), "events", ODD)] == [0, 1, 2, 3, 4]
    paths = {path.split("?")[0] for _, path, *_ in api.requests}
    assert "/t/a%2Fb%20c/users" in paths and "/t/a%2Fb%20c/events" in paths


def test_subject_scope_reads_only_subject_paths(api: Api) -> None:
    source = make(api)
    bob = Scope("acme", "user2@acme.test")
    assert [row["id"] for row in rows(source, "people", bob)] == [2]
    assert rows(source, "users", bob) == []  # a tenant-wide listing is nobody's in particular
    assert rows(source, "people", ACME) == []
    assert source.count(bob) == {"users": 0, "docs": 0, "events": 0, "people": 1}
    assert source.erase(bob) == {"users": 0, "docs": 0, "events": 0}
    assert not [r for r in api.requests if r[0] == "DELETE"]
    assert len(api.tenants["acme"]["users"]) == 7


def test_missing_listing_is_an_error_unless_declared_empty(api: Api) -> None:
    with pytest.raises(SourceError, match="404"):
        make(api).count(Scope("nobody"))
    lenient = [{**spec, "missing_is_empty": True} for spec in DATASETS]
    assert make(api, datasets=lenient).count(Scope("nobody")) == {
        "users": 0, "docs": 0, "events": 0, "people": 0}


def test_bad_bodies_are_clear_errors(api: Api) -> None:
    wrong = {**DATASETS[0], "records": "data.nope"}
    with pytest.raises(SourceError, match=r"without 'data\.nope'.*the body holds: data, total"):
        make(api, datasets=[wrong]).datasets(ACME)
    html = {"name": "html", "path": "/html"}
    with pytest.raises(SourceError, match=r"not JSON.*maintenance"):
        make(api, datasets=[html]).count(ACME)


def test_pagination_loops_and_foreign_links_are_refused(api: Api) -> None:
    same = {"name": "same", "path": "/same", "pagination": {"type": "page"}}
    with pytest.raises(SourceError, match="ignore the 'page' parameter"):
        make(api, datasets=[same]).count(ACME)
    away = {"name": "away", "path": "/away", "pagination": {"type": "link"}}
    with pytest.raises(SourceError, match="another origin"):
        make(api, datasets=[away]).count(ACME)


# -- erase and count ----------------------------------------------------------------------------


def test_erase_then_count_is_zero_and_other_tenant_untouched(api: Api) -> None:
    source = make(api)
    globex_before = source.count(GLOBEX)
    assert source.count(ACME) == {"users": 7, "docs": 5, "events": 5, "people": 0}
    # users: the API's own "deleted"; docs (204) and events: the count before erase
    assert source.erase(ACME) == {"users": 7, "docs": 5, "events": 5}
    assert source.count(ACME) == {"users": 0, "docs": 0, "events": 0, "people": 0}
    assert source.count(GLOBEX) == globex_before == {"users": 2, "docs": 5, "events": 5,
                                                     "people": 0}
    assert next(d for d in source.datasets(GLOBEX) if d.name == "users").total_rows == 2


# -- credentials --------------------------------------------------------------------------------


def test_check_sends_the_auth_header(api: Api) -> None:
    make(api).check()
    assert api.requests[-1][3] == TOKEN


def test_check_refused_names_the_status_never_the_secret(api: Api) -> None:
    wrong = "Bearer wrong-Token-99"
    with pytest.raises(SourceError) as caught:
        make(api, auth_token=wrong).check()
    message = str(caught.value)
    assert "401" in message and "wrong-Token-99" not in message
    assert api.requests[-1][3] == wrong  # the server did get (and echo) it
    unauthenticated = {"base_url": api.url, "datasets": DATASETS}
    with pytest.raises(SourceError, match="401"):
        HttpSource(HttpSource.validate(unauthenticated)).check()
    assert len(api.requests) == 2  # a 401 is not retried


def test_env_secret_is_resolved_at_use(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    source = make(api, auth_token="env:HTTP_SOURCE_TEST_TOKEN", check_path="/health")
    monkeypatch.delenv("HTTP_SOURCE_TEST_TOKEN", raising=False)
    with pytest.raises(SourceError, match="HTTP_SOURCE_TEST_TOKEN"):
        source.check()
    monkeypatch.setenv("HTTP_SOURCE_TEST_TOKEN", TOKEN)
    source.check()
    assert api.requests[-1][1:4:2] == ("/health", TOKEN)


def test_inline_token_is_redacted_for_display(api: Api) -> None:
    config = HttpSource.validate({"base_url": api.url, "auth_token": TOKEN, "datasets": DATASETS})
    assert redact(HttpConfig, config)["auth_token"] == "********"
    config["auth_token"] = "env:API_TOKEN"
    assert redact(HttpConfig, config)["auth_token"] == "env:API_TOKEN"


# -- retries and pacing -------------------------------------------------------------------------


def test_429_waits_for_retry_after(api: Api) -> None:
    api.faults["/"] = [(429, {"Retry-After": "1"})]
    started = time.monotonic()
    make(api).check()
    assert time.monotonic() - started >= 0.95
    assert api.requests[1][2] - api.requests[0][2] >= 0.95


def test_503_twice_then_success(api: Api) -> None:
    api.faults["/"] = [(503, {}), (503, {})]
    make(api).check()
    assert len(api.requests) == 3


def test_exhausted_retries_name_the_status(api: Api) -> None:
    api.faults["/"] = [(503, {})] * 3
    with pytest.raises(SourceError, match=r"answered 503 Service Unavailable.*after 3 attempts"):
        make(api, max_retries=2).check()
    api.faults["/"] = [(403, {})]
    with pytest.raises(SourceError, match="403"):
        make(api).check()
    assert len(api.requests) == 4  # 403 is final


def test_unreachable_and_slow_servers_fail_clearly(api: Api) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(SourceError, match=r"refused.*after 2 attempts"):
        make(api, base_url=closed, max_retries=1).check()
    with pytest.raises(SourceError, match="timed out"):
        make(api, check_path="/slow", timeout_seconds=0.2, max_retries=0).check()


def test_rate_limit_spaces_requests(api: Api) -> None:
    source = make(api, rate_limit_per_second=20)
    started = time.monotonic()
    for _ in range(6):
        source.check()
    assert time.monotonic() - started >= 5 / 20
    assert len(api.requests) == 6


def test_retry_after_forms() -> None:
    headers = Message()
    headers["Retry-After"] = "3"
    assert retry_after(headers) == 3.0
    dated = Message()
    dated["Date"] = "Wed, 21 Oct 2015 07:28:00 GMT"
    dated["Retry-After"] = "Wed, 21 Oct 2015 07:28:05 GMT"
    assert retry_after(dated) == 5.0
    dated.replace_header("Retry-After", "soon")
    assert retry_after(dated) is None


def test_next_link_parsing() -> None:
    headers = Message()
    headers["Link"] = ('<https://api.test/x?page=1>; rel="prev first", '
                       '</x?page=3>; title="a, b"; rel="last next"')
    assert next_link(headers, "https://api.test/x?page=2") == "https://api.test/x?page=3"
    assert next_link(Message(), "https://api.test/x") is None


# -- configuration ------------------------------------------------------------------------------


def errors(**changes: Any) -> dict[str, Any]:
    spec = {"name": "users", "path": "/t/{tenant}/users", **changes}
    spec = {key: value for key, value in spec.items() if value is not None}
    with pytest.raises(ValidationError) as caught:
        HttpSource.validate({"base_url": "https://api.example.test/v1", "datasets": [spec]})
    return caught.value.messages["datasets"][0]  # type: ignore[index]


def test_config_errors_name_the_field() -> None:
    assert errors(pagination={"type": "pages"}) == {
        "pagination": {"type": ["Must be one of: none, page, cursor, link."]}}
    assert errors(path=None) == {"path": ["Missing data for required field."]}
    assert "category" in errors(category="billing")
    assert errors(path="/t/{account}") == {
        "path": ["has the unknown placeholder {account}; allowed: {tenant} and {subject}"]}
    assert errors(path="https://elsewhere.test/x")["path"]
    assert errors(pagination={"type": "cursor"})["pagination"] == {
        "next": ["cursor pagination needs the path of the next cursor in the body"]}
    assert errors(pagination={"type": "link", "size": 3})["pagination"] == {
        "size": ["does not apply to pagination type 'link'"]}
    assert "fields" in errors(fields=["id:int32"])
    assert errors(colour="red") == {"colour": ["Unknown field."]}


def test_config_rejects_credentials_in_the_url_and_fills_defaults() -> None:
    with pytest.raises(ValidationError) as caught:
        HttpSource.validate({"base_url": "https://me:pw@api.test", "datasets": DATASETS})
    assert "credentials" in caught.value.messages["base_url"][0]  # type: ignore[index]
    config = HttpSource.validate({"base_url": "https://api.test", "datasets": [
        {"name": "u", "path": "/u", "pagination": {"type": "page"}}]})
    assert (config["auth_header"], config["max_retries"]) == ("Authorization", 5)
    assert config["datasets"][0]["pagination"] == {"type": "page", "param": "page", "start": 1}
    assert config["datasets"][0]["category"] == "content"
