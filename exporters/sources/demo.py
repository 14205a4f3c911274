"""A deterministic synthetic tenant, one dataset per category, for ``make run`` and benchmarks.

The same tenant and seed always give the same rows, so a bundle can be checked
byte for byte. ``erase`` leaves a marker file: the synthetic data is gone for
that tenant from then on, as it would be in a real system.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
from marshmallow import Schema, fields, validate

from exporters.sources.base import Dataset, Scope, Source, SourceError

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
PROVIDERS = ("slack", "salesforce", "github", "zendesk", "hubspot", "jira")

SCHEMAS = {
    "users": ("account", pa.schema([
        ("id", pa.int64()), ("email", pa.string()), ("name", pa.string()),
        ("role", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")),
    ])),
    "documents": ("content", pa.schema([
        ("id", pa.int64()), ("owner_id", pa.int64()), ("title", pa.string()),
        ("body", pa.string()), ("size_bytes", pa.int64()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ])),
    "usage_daily": ("usage", pa.schema([
        ("day", pa.date32()), ("active_users", pa.int32()), ("api_calls", pa.int64()),
        ("storage_bytes", pa.int64()),
    ])),
    "integrations": ("integrations", pa.schema([
        ("id", pa.int64()), ("provider", pa.string()), ("settings", pa.string()),
        ("enabled", pa.bool_()), ("connected_at", pa.timestamp("us", tz="UTC")),
    ])),
    "reports": ("reports", pa.schema([
        ("id", pa.int64()), ("name", pa.string()), ("format", pa.string()),
        ("row_count", pa.int64()), ("generated_at", pa.timestamp("us", tz="UTC")),
    ])),
}


class DemoConfig(Schema):
    rows = fields.Integer(load_default=1000, validate=validate.Range(min=1, max=50_000_000),
                          metadata={"description": "rows in the documents dataset; others scale"})
    seed = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**31))
    state_dir = fields.String(load_default="instance/demo-source",
                              validate=validate.Length(min=1, max=500),
                              metadata={"description": "where erase markers are kept"})


class DemoSource(Source):
    kind = "demo"
    config_schema = DemoConfig

    def check(self) -> None:
        state = Path(self.config["state_dir"])
        try:
            state.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SourceError(f"cannot create the demo state directory {state}: {error}") from error

    def datasets(self, scope: Scope) -> list[Dataset]:
        return [
            Dataset(name, category, schema, self._sizes()[name] if not self._erased(scope) else 0)
            for name, (category, schema) in SCHEMAS.items()
        ]

    def read(self, dataset: Dataset, scope: Scope, batch_rows: int) -> Iterator[pa.RecordBatch]:
        total = 0 if self._erased(scope) else self._sizes()[dataset.name]
        make = _COLUMNS[dataset.name]
        salt = self._salt(scope)
        users = self._sizes()["users"]
        for start in range(0, total, batch_rows):
            ids = range(start + 1, min(start + batch_rows, total) + 1)
            yield pa.RecordBatch.from_arrays(make(ids, salt, users), schema=SCHEMAS[dataset.name][1])

    def erase(self, scope: Scope) -> dict[str, int]:
        removed = self.count(scope)
        marker = self._marker(scope)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        return removed

    def count(self, scope: Scope) -> dict[str, int]:
        erased = self._erased(scope)
        return {name: 0 if erased else size for name, size in self._sizes().items()}

    def _sizes(self) -> dict[str, int]:
        rows = self.config["rows"]
        return {
            "users": max(1, rows // 20),
            "documents": rows,
            "usage_daily": min(rows, 3650),
            "integrations": min(len(PROVIDERS), rows),
            "reports": max(1, rows // 100),
        }

    def _salt(self, scope: Scope) -> int:
        digest = hashlib.sha256(f"{self.config['seed']}:{scope.tenant}".encode()).digest()
        return int.from_bytes(digest[:4], "big")

    def _marker(self, scope: Scope) -> Path:
        name = hashlib.sha256(scope.tenant.encode()).hexdigest()
        return Path(self.config["state_dir"]) / f"{name}.erased"

    def _erased(self, scope: Scope) -> bool:
        return self._marker(scope).exists()


def _ts(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def _users(ids: range, salt: int, _users: int) -> list[pa.Array]:
    return [
        pa.array(ids, pa.int64()),
        pa.array([f"user{i}@customer{salt % 997}.example" for i in ids]),
        pa.array([f"User {i}" for i in ids]),
        pa.array(["admin" if i == 1 else "member" for i in ids]),
        pa.array([_ts(i * 3607 + salt % 86400) for i in ids], pa.timestamp("us", tz="UTC")),
    ]


def _documents(ids: range, salt: int, users: int) -> list[pa.Array]:
    return [
        pa.array(ids, pa.int64()),
        pa.array([(i * 7 + salt) % users + 1 for i in ids], pa.int64()),
        pa.array([f"Document {i}" for i in ids]),
        pa.array([f"Body of document {i}, revision {(i + salt) % 13}." for i in ids]),
        pa.array([(i * 2654435761 + salt) % 1_000_000 for i in ids], pa.int64()),
        pa.array([_ts(i * 61 + salt % 3600) for i in ids], pa.timestamp("us", tz="UTC")),
    ]


def _usage(ids: range, salt: int, _users: int) -> list[pa.Array]:
    return [
        pa.array([date(2020, 1, 1) + timedelta(days=i - 1) for i in ids], pa.date32()),
        pa.array([(i * 31 + salt) % 500 for i in ids], pa.int32()),
        pa.array([(i * 7919 + salt) % 100_000 for i in ids], pa.int64()),
        pa.array([i * 1_048_576 for i in ids], pa.int64()),
    ]


def _integrations(ids: range, salt: int, _users: int) -> list[pa.Array]:
    return [
        pa.array(ids, pa.int64()),
        pa.array([PROVIDERS[(i - 1) % len(PROVIDERS)] for i in ids]),
        pa.array([f'{{"workspace": "ws-{(salt + i) % 10_000}", "scopes": ["read"]}}' for i in ids]),
        pa.array([i % 3 != 0 for i in ids]),
        pa.array([_ts(i * 86_400) for i in ids], pa.timestamp("us", tz="UTC")),
    ]


def _reports(ids: range, salt: int, _users: int) -> list[pa.Array]:
    return [
        pa.array(ids, pa.int64()),
        pa.array([f"Monthly report {i}" for i in ids]),
        pa.array(["pdf" if i % 2 else "csv" for i in ids]),
        pa.array([(i * 97 + salt) % 10_000 for i in ids], pa.int64()),
        pa.array([_ts(i * 2_592_000) for i in ids], pa.timestamp("us", tz="UTC")),
    ]


_COLUMNS: dict[str, Callable[[range, int, int], list[pa.Array]]] = {
    "users": _users,
    "documents": _documents,
    "usage_daily": _usage,
    "integrations": _integrations,
    "reports": _reports,
}
