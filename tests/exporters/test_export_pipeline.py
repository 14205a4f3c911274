"""A request's export through the API and real RQ jobs, from sql, http, files and demo sources at once."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pypdf import PdfReader

from compliance import config, db
from compliance.models import Export, OffboardingRequest, SourceConfig, Tenant
from exporters import crypto, delivery, keys
from exporters.sources.sql import SqlSource
from exporters.storage import LocalStorage

TENANT = "acme-7"
TICKETS = [{"id": 1, "subject": "Löschung bitte", "meta": {"tags": ["gdpr"], "n": 1}},
           {"id": 2, "subject": "Export, \"quoted\"\nsecond line", "meta": None}]


class Tickets(BaseHTTPRequestHandler):
    failing = False

    def do_GET(self) -> None:
        if self.path == f"/tenants/{TENANT}/tickets" and not Tickets.failing:
            body, status = json.dumps(TICKETS).encode(), 200
        else:
            body, status = b'{"error": "down"}', 503 if Tickets.failing else 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def http_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Tickets)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    Tickets.failing = False
    server.shutdown()


@pytest.fixture
def systems(tmp_path: Path, http_api: str) -> dict[str, Any]:
    """An app database, an upload folder and a ticket API holding one tenant's data."""
    app_db = tmp_path / "app.db"
    with sqlite3.connect(app_db) as connection:
        connection.executescript("""
            CREATE TABLE accounts (id INTEGER PRIMARY KEY, tenant TEXT, name TEXT, balance NUMERIC(12,2));
            CREATE TABLE posts (id INTEGER PRIMARY KEY, account_id INTEGER REFERENCES accounts(id),
                                title TEXT);
            INSERT INTO accounts VALUES (1, 'acme-7', 'Ann', 10.50), (2, 'other', 'Bob', 3.00);
            INSERT INTO posts VALUES (10, 1, 'hello, world'), (11, 1, ''), (12, 2, 'not yours');
        """)
    uploads = tmp_path / "uploads" / TENANT / "docs"
    uploads.mkdir(parents=True)
    (uploads / "contract.pdf").write_bytes(b"%PDF-1.4 fake" + bytes(range(256)))
    (uploads / "notes ü.txt").write_text("straße\n", encoding="utf-8")
    return {
        "sql": {"url": f"sqlite:///{app_db}", "tables": [
            {"name": "accounts", "tenant_column": "tenant", "category": "account"},
            {"name": "posts", "via": "account_id -> accounts.id"}]},
        "http": {"base_url": http_api, "datasets": [
            {"name": "tickets", "category": "integrations", "path": "/tenants/{tenant}/tickets",
             "fields": ["id:int64", "subject:string", "meta:json"]}], "max_retries": 1},
        "files": {"root": str(tmp_path / "uploads")},
        "demo": {"rows": 40, "state_dir": str(tmp_path / "demo")},
    }


def approved_request(client, headers, systems) -> int:  # type: ignore[no-untyped-def]
    tenant = client.post("/api/v1/tenants", headers=headers,
                         json={"external_ref": TENANT, "name": "Acme GmbH", "region": "DE"}).get_json()
    for kind, settings in systems.items():
        answer = client.post("/api/v1/sources", json={"kind": kind, "name": f"{kind}-src",
                                                      "tenant_id": tenant["id"], "config": settings},
                             headers=headers)
        assert answer.status_code == 201, answer.get_json()
    request = client.post("/api/v1/requests", json={"tenant_id": tenant["id"], "requested_by": "cfo@acme",
                                                    "channel": "email", "churn_reason": "price"},
                          headers=headers).get_json()
    for action, body in (("acknowledge", {}), ("verify", {"note": "intended"}), ("approve", {})):
        assert client.post(f"/api/v1/requests/{request['id']}/{action}", headers=headers,
                           json=body).status_code == 200
    return request["id"]


def bundle_data(export: dict[str, Any]) -> bytes:
    """The stored bundle, decrypted as a download would serve it."""
    opened = delivery.open_bundle(db.session.get(Export, export["id"]), export["bundle_sha256"])
    return b"".join(opened.chunks(0, opened.size))


def decrypt_file(path: Path, tenant_id: int) -> bytes:
    data = path.read_bytes()

    def read_at(offset: int, length: int) -> bytes:
        return data[offset:offset + length]

    info = json.loads(crypto.read_info(read_at))
    key = keys.unwrap(tenant_id, info["key_version"])
    return b"".join(crypto.decrypt_range(read_at, len(data), key, 0, len(data)))


def bundle_of(export: dict[str, Any]) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(bundle_data(export)))


def test_export_runs_end_to_end_and_every_file_matches(client, as_role, work, systems) -> None:  # type: ignore[no-untyped-def]
    headers = as_role("csm")
    request_id = approved_request(client, headers, systems)
    started = client.post(f"/api/v1/requests/{request_id}/exports", json={}, headers=headers)
    assert started.status_code == 202, started.get_json()
    work()
    export = client.get(f"/api/v1/exports/{started.get_json()['id']}", headers=headers).get_json()
    assert export["status"] == "ready", (export["error"], export["tasks"])
    assert {t["status"] for t in export["tasks"]} == {"done"}
    assert db.session.get(OffboardingRequest, request_id).status == "export_ready"

    bundle = bundle_of(export)
    names = set(bundle.namelist())
    assert {"README.txt", "manifest.json", "SHA256SUMS", "report.pdf"} <= names
    # sha256sum -c SHA256SUMS: every line matches, every file is listed
    sums = dict(reversed(line.split("  ", 1)) for line in bundle.read("SHA256SUMS").decode().splitlines())
    assert set(sums) == names - {"SHA256SUMS"}
    for name, digest in sums.items():
        assert hashlib.sha256(bundle.read(name)).hexdigest() == digest, name
    assert hashlib.sha256(bundle_data(export)).hexdigest() == export["bundle_sha256"]

    manifest = json.loads(bundle.read("manifest.json"))
    assert {f["path"] for f in manifest["files"]} == names - {"SHA256SUMS", "README.txt", "manifest.json"}

    accounts = pq.read_table(io.BytesIO(bundle.read("account/sql-src/accounts.parquet"))).to_pylist()
    assert [(a["id"], a["name"]) for a in accounts] == [(1, "Ann")]  # not the other tenant's
    posts = list(csv.DictReader(io.StringIO(bundle.read("content/sql-src/posts.csv").decode())))
    assert [(p["id"], p["title"]) for p in posts] == [("10", "hello, world"), ("11", "")]
    tickets = [json.loads(line) for line in bundle.read("integrations/http-src/tickets.jsonl").splitlines()]
    assert [t["subject"] for t in tickets] == [t["subject"] for t in TICKETS]
    assert bundle.read("files/files-src/docs/contract.pdf") == b"%PDF-1.4 fake" + bytes(range(256))
    assert bundle.read("files/files-src/docs/notes ü.txt").decode() == "straße\n"
    users = pq.read_table(io.BytesIO(bundle.read("account/demo-src/users.parquet")))
    assert users.num_rows == 2  # demo: rows // 20
    report = "".join(page.extract_text() for page in PdfReader(io.BytesIO(bundle.read("report.pdf"))).pages)
    assert "Acme GmbH" in report and "90 days" in report


def test_a_failing_dataset_fails_the_export_in_words_and_retry_reruns_only_it(
        client, as_role, work, systems) -> None:  # type: ignore[no-untyped-def]
    headers = as_role("csm")
    request_id = approved_request(client, headers, systems)
    Tickets.failing = True
    started = client.post(f"/api/v1/requests/{request_id}/exports", json={}, headers=headers)
    export_id = started.get_json()["id"]
    work()
    export = client.get(f"/api/v1/exports/{export_id}", headers=headers).get_json()
    assert export["status"] == "failed"
    assert "dataset tickets of source http-src failed" in export["error"]
    assert "503" in export["error"]
    failed = [t for t in export["tasks"] if t["status"] == "failed"]
    assert [t["dataset"] for t in failed] == ["tickets"] and failed[0]["attempts"] == 3
    request = db.session.get(OffboardingRequest, request_id)
    assert request.status == "failed" and "tickets" in request.failure_reason
    done_before = {t["id"]: t["finished_at"] for t in export["tasks"] if t["status"] == "done"}

    Tickets.failing = False
    assert client.post(f"/api/v1/exports/{export_id}/retry", headers=headers).status_code == 202
    work()
    export = client.get(f"/api/v1/exports/{export_id}", headers=headers).get_json()
    assert export["status"] == "ready", (export["error"], export["tasks"])
    assert {t["id"]: t["finished_at"] for t in export["tasks"] if t["id"] in done_before} == done_before
    assert db.session.get(OffboardingRequest, request_id).status == "export_ready"


def test_a_source_that_cannot_list_fails_planning_and_retry_plans_again(
        client, as_role, work, systems) -> None:  # type: ignore[no-untyped-def]
    headers = as_role("csm")
    systems["sql"]["tables"][0]["name"] = "no_such_table"
    systems["sql"]["tables"][1]["via"] = "account_id -> no_such_table.id"
    request_id = approved_request(client, headers, systems)
    started = client.post(f"/api/v1/requests/{request_id}/exports", json={}, headers=headers)
    export_id = started.get_json()["id"]
    work()
    export = db.session.get(Export, export_id)
    assert export.status == "failed" and "source sql-src" in export.error and "no_such_table" in export.error

    source = db.session.query(SourceConfig).filter_by(kind="sql").one()
    # Fixed by finding the tables instead of declaring them: posts through their foreign key.
    source.config = SqlSource.validate({"url": source.config["url"], "reflect": {
        "tenant_column": "tenant", "categories": {"accounts": "account"}}})
    db.session.commit()
    assert client.post(f"/api/v1/exports/{export_id}/retry", headers=headers).status_code == 202
    work()
    export = client.get(f"/api/v1/exports/{export_id}", headers=headers).get_json()
    assert export["status"] == "ready", (export["error"], export["tasks"])
    assert {t["dataset"] for t in export["tasks"] if t["source"] == "sql-src"} == {"accounts", "posts"}


def test_start_export_needs_an_approved_request(client, as_role, systems) -> None:  # type: ignore[no-untyped-def]
    headers = as_role("csm")
    tenant = Tenant(external_ref="early", name="Early", region="DE")
    db.session.add(tenant)
    db.session.commit()
    request = client.post("/api/v1/requests", json={"tenant_id": tenant.id, "requested_by": "x",
                                                    "channel": "email", "churn_reason": "price"},
                          headers=headers).get_json()
    answer = client.post(f"/api/v1/requests/{request['id']}/exports", json={}, headers=headers)
    assert answer.status_code == 409 and "'received'" in answer.get_json()["message"]
    assert db.session.query(Export).count() == 0


def test_the_same_export_assembles_to_the_same_bytes(client, as_role, systems) -> None:  # type: ignore[no-untyped-def]
    """Sorted entries, fixed timestamps, times from the export row: a re-run of assemble is identical."""
    from exporters import bundle, jobs

    headers = as_role("csm")
    request_id = approved_request(client, headers, systems)
    started = client.post(f"/api/v1/requests/{request_id}/exports", json={}, headers=headers)
    export_id = started.get_json()["id"]
    jobs.start_export(export_id)
    for task in db.session.get(Export, export_id).tasks:
        jobs.pull(task.id)
    root = Path(config.current().storage)
    first, second = bundle.build(export_id, root), bundle.build(export_id, root)
    assert first.sha256 == second.sha256 and first.size == second.size
    tenant_id = db.session.get(Export, export_id).request.tenant_id
    plain = decrypt_file(first.path, tenant_id)
    assert plain == decrypt_file(second.path, tenant_id)  # sealed apart (fresh salts), same ZIP inside
    assert hashlib.sha256(plain).hexdigest() == first.sha256
    with zipfile.ZipFile(io.BytesIO(plain)) as archive:
        names = archive.namelist()
        assert names[-3:] == ["README.txt", "manifest.json", "SHA256SUMS"]
        assert names[:-3] == sorted(names[:-3])
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_planning_fails_whole_when_a_later_source_cannot_list(client, as_role, work, systems) -> None:  # type: ignore[no-untyped-def]
    """The sql source lists fine, the http one (schema inferred from its API) cannot: nothing is
    planned, and the retry plans every source again, so no source is silently left out."""
    headers = as_role("csm")
    del systems["http"]["datasets"][0]["fields"]
    request_id = approved_request(client, headers, systems)
    Tickets.failing = True
    started = client.post(f"/api/v1/requests/{request_id}/exports", json={}, headers=headers)
    export_id = started.get_json()["id"]
    work()
    export = db.session.get(Export, export_id)
    assert export.status == "failed" and "source http-src: cannot list datasets" in export.error
    assert export.tasks == []

    Tickets.failing = False
    assert client.post(f"/api/v1/exports/{export_id}/retry", headers=headers).status_code == 202
    work()
    export = client.get(f"/api/v1/exports/{export_id}", headers=headers).get_json()
    assert export["status"] == "ready", (export["error"], export["tasks"])
    assert {t["source"] for t in export["tasks"]} == {"sql-src", "http-src", "files-src", "demo-src"}


def test_a_request_failed_by_hand_abandons_its_export_without_a_bundle(
        client, as_role, work, systems) -> None:  # type: ignore[no-untyped-def]
    csm, admin = as_role("csm"), as_role("admin")
    request_id = approved_request(client, csm, systems)
    started = client.post(f"/api/v1/requests/{request_id}/exports", json={}, headers=csm)
    export_id = started.get_json()["id"]
    assert client.post(f"/api/v1/requests/{request_id}/fail", json={"reason": "customer unreachable"},
                       headers=admin).status_code == 200
    work()
    export = client.get(f"/api/v1/exports/{export_id}", headers=csm).get_json()
    assert export["status"] == "failed" and export["error"] == "abandoned: the request is now failed"
    assert export["bundle_sha256"] is None
    assert not LocalStorage(Path(config.current().storage)).exists(f"exports/{export_id}/bundle.zip.obx")
    assert db.session.get(OffboardingRequest, request_id).failure_reason == "customer unreachable"


def test_sql_json_columns_are_embedded_as_json_in_json_lines(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A JSON column is marked as JSON text, so .jsonl carries the document, not a quoted string."""
    from exporters.formats import write_jsonl
    from exporters.sources.sql import SqlSource

    database = tmp_path / "j.db"
    with sqlite3.connect(database) as connection:
        connection.executescript("""CREATE TABLE events (id INTEGER PRIMARY KEY, tenant TEXT, payload JSON);
                                    INSERT INTO events VALUES (1, 't', '{"a": [1, 2.50], "b": null}');""")
    source = SqlSource({"url": f"sqlite:///{database}",
                        "tables": [{"name": "events", "tenant_column": "tenant", "category": "usage"}]})
    from exporters.sources import Scope

    [dataset] = source.datasets(Scope("t"))
    assert dataset.schema.field("payload").metadata == {b"offboard.json": b"true"}
    reader = pa.RecordBatchReader.from_batches(dataset.schema, source.read(dataset, Scope("t"), 10))
    [out] = write_jsonl(reader, tmp_path, "events")
    assert json.loads((tmp_path / out.name).read_text()) == {"id": 1, "tenant": "t",
                                                               "payload": {"a": [1, 2.50], "b": None}}
    source.close()


def test_bundle_in_s3_storage_is_sealed_and_served_by_range(client, as_role, work, systems, bucket) -> None:  # type: ignore[no-untyped-def]
    """OFFBOARD_STORAGE=s3://…: the sealed bundle goes to S3 (no plaintext there) and the
    customer's download reads it back by ranged GETs."""
    import dataclasses

    from exporters.storage import open_storage

    settings = config.current()
    config.use(dataclasses.replace(settings, storage=f"s3://{bucket}/bundles"))
    try:
        headers = as_role("csm")
        request_id = approved_request(client, headers, systems)
        started = client.post(f"/api/v1/requests/{request_id}/exports", json={"formats": ["csv"]},
                              headers=headers)
        work()
        export = client.get(f"/api/v1/exports/{started.get_json()['id']}", headers=headers).get_json()
        assert export["status"] == "ready", (export["error"], export["tasks"])
        stored = open_storage(f"s3://{bucket}/bundles")
        sealed = stored.read_at(f"exports/{export['id']}/bundle.zip.obx", 0, 64)
        assert sealed.startswith(b"OBX1") and b"PK\x03\x04" not in sealed
        link = client.post(f"/api/v1/exports/{export['id']}/links", json={"recipient": "cfo@acme.example"},
                           headers=headers).get_json()
        path = urlsplit(link["url"]).path
        whole = client.get(f"{path}/bundle.zip")
        assert whole.status_code == 200
        assert hashlib.sha256(whole.data).hexdigest() == export["bundle_sha256"]
        part = client.get(f"{path}/bundle.zip", headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.data == whole.data[100:200]
    finally:
        config.use(settings)
