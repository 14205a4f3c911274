"""An ``http`` source: a tenant's records in the paginated JSON listings of a REST API.

Each configured listing is one dataset, read page by page; memory holds one page and
one batch. A record's top-level keys become columns: int -> int64, float -> float64,
bool -> bool, str -> string; objects, arrays and keys whose values mix types in the
first page become JSON text (string columns marked ``offboard.json``).

The schema is fixed before the first batch: from ``fields`` when configured (stable
across exports, no request), else inferred from the first page. Nothing is dropped
because of it: every dataset ends with an ``_extra`` JSON text column that holds, per
record, the keys no column names (a key first seen on a later page) and any value that
does not fit its column's type (e.g. a string in an int64 column, whose cell is null).

Scopes: a path naming ``{subject}`` serves single-person scopes only, a path without it
whole-tenant scopes only. A path that does not serve the scope reads no rows, counts
0 and erases nothing, so one person's request never touches the whole tenant's data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from exporters.sources.base import JSON_TEXT, Dataset, Scope, Source, SourceError
from exporters.sources.http_client import HttpClient, Response, next_link, with_query
from exporters.sources.http_config import (
    EXTRA,
    MISSING,
    PLACEHOLDER,
    HttpConfig,
    lookup,
    parse_column,
)

ARROW = {"string": pa.string(), "json": pa.string(), "int64": pa.int64(),
         "float64": pa.float64(), "bool": pa.bool_()}
INT64 = (-(2**63), 2**63 - 1)
EXACT_FLOAT = 2**53  # ints up to this size are exact in a float64 column


class HttpSource(Source):
    kind = "http"
    config_schema = HttpConfig

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._specs: dict[str, dict[str, Any]] = {spec["name"]: spec for spec in config["datasets"]}
        self._client = HttpClient(config)

    # -- the contract --------------------------------------------------------------------

    def check(self) -> None:
        path = self.config["check_path"]
        self._client.request("GET", self._client.base_url + path if path else self.config["base_url"])

    def datasets(self, scope: Scope) -> list[Dataset]:
        return [Dataset(name, spec["category"], self._schema(spec, scope),
                        self._count_one(spec, scope) if "count" in spec else None)
                for name, spec in self._specs.items()]

    def read(self, dataset: Dataset, scope: Scope, batch_rows: int) -> Iterator[pa.RecordBatch]:
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        spec = self._spec(dataset.name)
        kinds = _kinds(dataset.schema)  # checked now, not at the first batch
        return self._stream(spec, scope, dataset.schema, kinds, batch_rows)

    def erase(self, scope: Scope) -> dict[str, int]:
        """Datasets with an ``erase`` call, in declared order; the rest are read-only here."""
        removed: dict[str, int] = {}
        for name, spec in self._specs.items():
            erase = spec.get("erase")
            if erase is None:
                continue
            if not _serves(erase["path"], scope):
                removed[name] = 0
                continue
            before = self._count_one(spec, scope)
            response = self._client.request(erase["method"], self._client.url(erase["path"], scope),
                                            allow=frozenset({404, 410}))  # already gone
            said = self._said(response, erase["removed"]) if "removed" in erase else None
            removed[name] = before if said is None else said
        return removed

    def count(self, scope: Scope) -> dict[str, int]:
        return {name: self._count_one(spec, scope) for name, spec in self._specs.items()}

    # -- reading -------------------------------------------------------------------------

    def _stream(self, spec: dict[str, Any], scope: Scope, schema: pa.Schema, kinds: list[str],
                batch_rows: int) -> Iterator[pa.RecordBatch]:
        batch = _Batch(schema, kinds)
        for records in self._pages(spec, scope):
            for record in records:
                batch.add(record)
                if batch.rows == batch_rows:
                    yield batch.take()
            del records  # let the page go before the next one is fetched
        if batch.rows:
            yield batch.take()

    def _pages(self, spec: dict[str, Any], scope: Scope) -> Iterator[list[dict[str, Any]]]:
        """The listing's records, one page at a time, each record exactly once."""
        if not _serves(spec["path"], scope):
            return
        paging, client = spec["pagination"], self._client
        kind, base = paging["type"], client.url(spec["path"], scope)
        allow = frozenset({404}) if spec["missing_is_empty"] else frozenset()
        number, cursor, previous, seen = paging.get("start", 1), None, b"", set()
        while True:
            url = _page_url(base, paging, number, cursor)
            response = client.request("GET", url, allow)
            if response.status == 404:
                return
            body = client.json(response)
            records = _records(body, spec["records"], url)
            following: str | None = None
            if kind == "page" and records:
                digest = hashlib.sha256(json.dumps(records, sort_keys=True).encode()).digest()
                if digest == previous:
                    raise SourceError(f"{url} answered the same records as the page before: the "
                                      f"API seems to ignore the {paging['param']!r} parameter")
                previous, number, following = digest, number + 1, f"page {number + 1}"
            elif kind == "cursor":
                value = lookup(body, paging["next"])
                following = None if value in (None, "", MISSING) else str(value)
            elif kind == "link":
                following = next_link(response.headers, url)
                if following and not client.same_origin(following):
                    raise SourceError(f"{url} links its next page on another origin; refused, "
                                      "so the credential is not sent there")
            del body, response
            yield records
            del records
            if following is None:
                return
            if following in seen:  # a cursor or link loop; page numbers only grow
                raise SourceError(f"{url} points back to a page already read ({following}); "
                                  "stopping rather than reading records twice")
            seen.add(following)
            cursor = following

    # -- schema ----------------------------------------------------------------------------

    def _schema(self, spec: dict[str, Any], scope: Scope) -> pa.Schema:
        if "fields" in spec:
            columns = [parse_column(column) for column in spec["fields"]]
        else:
            pages = self._pages(spec, scope)
            columns = _infer(next(pages, []))
            pages.close()
        return pa.schema([_field(name, kind) for name, kind in columns] + [_field(EXTRA, "json")])

    # -- counting ----------------------------------------------------------------------------

    def _count_one(self, spec: dict[str, Any], scope: Scope) -> int:
        """From the count call when configured, else by walking the listing."""
        if "count" not in spec:
            return sum(len(records) for records in self._pages(spec, scope))
        template = spec["count"].get("path", spec["path"])
        if not _serves(template, scope):
            return 0
        allow = frozenset({404}) if spec["missing_is_empty"] else frozenset()
        url = self._client.url(template, scope)
        response = self._client.request("GET", url, allow)
        if response.status == 404:
            return 0
        value = lookup(self._client.json(response), spec["count"]["field"])
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SourceError(f"{url} answered without a count at {spec['count']['field']!r}")
        return value

    def _said(self, response: Response, path: str) -> int | None:
        """The erase answer's own count of removed records, if it gives one."""
        if not response.body.strip() or not 200 <= response.status < 300:
            return None
        try:
            value = lookup(self._client.json(response), path)
        except SourceError:
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    def _spec(self, name: str) -> dict[str, Any]:
        if name not in self._specs:
            raise SourceError(f"no dataset named {name!r} is declared in this source")
        return self._specs[name]


class _Batch:
    """Column lists for up to one batch of records, built as they arrive."""

    def __init__(self, schema: pa.Schema, kinds: list[str]) -> None:
        self._schema, self._kinds = schema, kinds
        self._index = {name: i for i, name in enumerate(schema.names[:-1])}
        self._columns: list[list[Any]] = [[] for _ in schema.names]
        self.rows = 0

    def add(self, record: dict[str, Any]) -> None:
        cells: list[Any] = [None] * len(self._kinds)
        extra = {}
        for key, value in record.items():
            index = self._index.get(key)
            cell = MISSING if index is None else _fit(self._kinds[index], value)
            if index is None or cell is MISSING:
                extra[key] = value
            else:
                cells[index] = cell
        for column, cell in zip(self._columns, cells, strict=False):
            column.append(cell)
        self._columns[-1].append(_dumps(extra) if extra else None)
        self.rows += 1

    def take(self) -> pa.RecordBatch:
        arrays = [pa.array(column, type=field.type) for column, field in
                  zip(self._columns, self._schema, strict=True)]
        self._columns = [[] for _ in self._columns]
        self.rows = 0
        return pa.RecordBatch.from_arrays(arrays, schema=self._schema)


def _serves(template: str, scope: Scope) -> bool:
    """A ``{subject}`` path is for one person's scope; any other path for the whole tenant's."""
    return ("subject" in PLACEHOLDER.findall(template)) == (scope.subject is not None)


def _records(body: Any, path: str, url: str) -> list[dict[str, Any]]:
    value = lookup(body, path)
    if value is MISSING:
        keys = ", ".join(sorted(body)[:20]) if isinstance(body, dict) else type(body).__name__
        raise SourceError(f"{url} answered without {path!r} (the dataset's records path); "
                          f"the body holds: {keys}")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(record, dict) for record in value):
        raise SourceError(f"{url}: {path or 'the body'} is not a list of JSON objects (records)")
    return value


def _infer(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Columns in order of first appearance; a key whose values mix types becomes JSON."""
    seen: dict[str, set[str]] = {}
    for record in records:
        for key, value in record.items():
            if key != EXTRA:
                seen.setdefault(key, set()).update(() if value is None else (_kind_of(value),))
    columns = []
    for key, kinds in seen.items():
        if kinds == {"int64", "float64"}:
            kind = "float64"
        else:
            kind = next(iter(kinds)) if len(kinds) == 1 else "json"  # none seen: anything goes
        if any(_fit(kind, record.get(key)) is MISSING for record in records):
            kind = "json"  # e.g. an int too big for an exact float64 among floats
        columns.append((key, kind))
    return columns


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64" if INT64[0] <= value <= INT64[1] else "json"
    return {float: "float64", str: "string"}.get(type(value), "json")


def _fit(kind: str, value: Any) -> Any:
    """``value`` as a cell of a ``kind`` column, or MISSING when it does not fit."""
    return None if value is None else _FITS[kind](value)


def _as_int(value: Any) -> Any:
    exact = isinstance(value, int) and not isinstance(value, bool)
    return value if exact and INT64[0] <= value <= INT64[1] else MISSING


def _as_float(value: Any) -> Any:
    if isinstance(value, float):
        return value
    return float(value) if _as_int(value) is not MISSING and abs(value) <= EXACT_FLOAT else MISSING


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_FITS = {
    "string": lambda value: value if isinstance(value, str) else MISSING,
    "bool": lambda value: value if isinstance(value, bool) else MISSING,
    "int64": _as_int,
    "float64": _as_float,
    "json": _dumps,
}


def _page_url(base: str, paging: dict[str, Any], number: int, following: str | None) -> str:
    """The URL of the next page: numbered, with the cursor, or the linked one."""
    if paging["type"] == "page":
        sized = {paging["size_param"]: paging["size"]} if "size" in paging else {}
        return with_query(base, {paging["param"]: number, **sized})
    if following is None:
        return base
    return following if paging["type"] == "link" else with_query(base, {paging["param"]: following})


def _field(name: str, kind: str) -> pa.Field:
    return pa.field(name, ARROW[kind], metadata=JSON_TEXT if kind == "json" else None)


def _kinds(schema: pa.Schema) -> list[str]:
    """Each column's kind from a schema ``datasets()`` gave (``_extra`` last, not counted)."""
    if not schema.names or schema.names[-1] != EXTRA:
        raise SourceError(f"the dataset schema must end with the {EXTRA!r} column this source adds")
    kinds = []
    for field in list(schema)[:-1]:
        is_json = (field.metadata or {}).get(b"offboard.json") == b"true"
        kind = "json" if is_json else next((k for k, t in ARROW.items() if t == field.type and
                                            k != "json"), None)
        if kind is None:
            raise SourceError(f"column {field.name!r} has type {field.type}, which this source "
                              "does not produce")
        kinds.append(kind)
    return kinds
