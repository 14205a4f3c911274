"""What an ``http`` source is told: a JSON REST API, its credential and the listings to export.

Credentials are top-level fields (``auth_header``, ``auth_token``) rather than a nested
``auth`` object: ``base.redact`` and the log redaction only see top-level names, so a
nested secret would be shown by the API and logged.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from exporters.sources.base import CATEGORIES, Secret

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
PLACEHOLDERS = ("tenant", "subject")
PAGINATION_TYPES = ("none", "page", "cursor", "link")
COLUMN_TYPES = ("string", "int64", "float64", "bool", "json")
EXTRA = "_extra"  # the JSON text column holding every value no other column takes
MISSING = object()

NAME = validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$",
                       error="must start with a letter or _ and hold only letters, digits, _ . -")
HEADER = validate.Regexp(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$", error="must be an HTTP header name")
PARAM = validate.Length(min=1, max=100)


def _template(value: str, *, placeholders: bool = True) -> None:
    """A path below base_url; only ``{tenant}``/``{subject}`` are filled in (URL-quoted)."""
    if not value.startswith("/") or value.startswith("//"):
        raise ValidationError("must start with a single / (a path below base_url)")
    if "://" in value or "#" in value or any(char.isspace() for char in value):
        raise ValidationError("must be a path (no scheme, host, fragment or whitespace)")
    for name in PLACEHOLDER.findall(value):
        if not placeholders or name not in PLACEHOLDERS:
            allowed = "{tenant} and {subject}" if placeholders else "no placeholders"
            raise ValidationError(f"has the unknown placeholder {{{name}}}; allowed: {allowed}")
    if "{" in PLACEHOLDER.sub("", value) or "}" in PLACEHOLDER.sub("", value):
        raise ValidationError("has an unbalanced { or }")


def _check_path(value: str) -> None:
    if value:
        _template(value, placeholders=False)


def _body_path(value: str) -> None:
    try:
        parse_body_path(value)
    except ValueError as error:
        raise ValidationError(str(error)) from error


def _column(value: str) -> None:
    name, kind = parse_column(value)
    if kind not in COLUMN_TYPES:
        raise ValidationError(f"column {value!r}: type must be one of {', '.join(COLUMN_TYPES)}")
    if not name or name == EXTRA:
        raise ValidationError(f"column {value!r}: name must be non-empty and not {EXTRA!r}")


class PaginationSpec(Schema):
    class Meta:
        unknown = RAISE

    type = fields.String(required=True, validate=validate.OneOf(PAGINATION_TYPES))
    param = fields.String(validate=PARAM, metadata={"description": "page number or cursor "
                                                    "query parameter (page, cursor)"})
    start = fields.Integer(validate=validate.Range(min=0), metadata={"description": "first page"})
    size_param = fields.String(validate=PARAM, metadata={"description": "page size parameter"})
    size = fields.Integer(validate=validate.Range(min=1, max=100_000))
    next = fields.String(validate=_body_path,
                         metadata={"description": "where the next cursor is in the body"})

    @validates_schema
    def _fits_type(self, data: dict[str, Any], **_: Any) -> None:
        allowed = {"none": set(), "link": set(), "cursor": {"param", "next"},
                   "page": {"param", "start", "size_param", "size"}}.get(data.get("type", ""), set())
        errors = {key: [f"does not apply to pagination type {data['type']!r}"]
                  for key in sorted(set(data) - allowed - {"type"})}
        if data.get("type") == "cursor" and "next" not in data:
            errors["next"] = ["cursor pagination needs the path of the next cursor in the body"]
        if data.get("type") == "page" and ("size" in data) != ("size_param" in data):
            errors["size_param"] = ["give size_param and size together"]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _defaults(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if data["type"] == "page":
            return {"param": "page", "start": 1, **data}
        if data["type"] == "cursor":
            return {"param": "cursor", **data}
        return data


class EraseSpec(Schema):
    class Meta:
        unknown = RAISE

    method = fields.String(load_default="DELETE", validate=validate.OneOf(("DELETE", "POST", "PUT")))
    path = fields.String(required=True, validate=_template)
    removed = fields.String(validate=_body_path, metadata={
        "description": "where the response says how many records went; else the count before"})


class CountSpec(Schema):
    class Meta:
        unknown = RAISE

    path = fields.String(validate=_template, metadata={"description": "default: the dataset path"})
    field = fields.String(required=True, validate=_body_path)


class DatasetSpec(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=NAME)
    category = fields.String(load_default="content", validate=validate.OneOf(CATEGORIES))
    path = fields.String(required=True, validate=_template)
    records = fields.String(load_default="", validate=_body_path, metadata={
        "description": "JSON pointer (/data/items) or dotted path (data.items); empty: the body"})
    pagination = fields.Nested(PaginationSpec, load_default=lambda: {"type": "none"})
    missing_is_empty = fields.Boolean(load_default=False, metadata={
        "description": "a 404 on the listing means no records (an erased tenant)"})
    erase = fields.Nested(EraseSpec)
    count = fields.Nested(CountSpec)
    # Last: from here on the class body's ``fields`` is this field, not the module.
    fields = fields.List(fields.String(validate=_column), validate=validate.Length(min=1, max=2000),
                         metadata={"description": "columns as 'name' or 'name:type'; "
                                                  "default: inferred from the first page"})

    @validates_schema
    def _unique_columns(self, data: dict[str, Any], **_: Any) -> None:
        names = [parse_column(column)[0] for column in data.get("fields", [])]
        for name in {name for name in names if names.count(name) > 1}:
            raise ValidationError(f"column {name!r} is declared twice", "fields")


class HttpConfig(Schema):
    class Meta:
        unknown = RAISE

    base_url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False,
                          validate=validate.Length(max=2000))
    auth_header = fields.String(load_default="Authorization", validate=HEADER)
    auth_token = Secret(validate=validate.Length(min=1, max=8000), metadata={
        "description": "the header's whole value, e.g. 'Bearer xyz', or env:NAME holding it"})
    check_path = fields.String(load_default="", validate=_check_path)
    rate_limit_per_second = fields.Float(validate=validate.Range(min=0, min_inclusive=False,
                                                                 max=10_000))
    timeout_seconds = fields.Float(load_default=30.0, validate=validate.Range(min=0.05, max=600))
    max_retries = fields.Integer(load_default=5, validate=validate.Range(min=0, max=20))
    backoff_seconds = fields.Float(load_default=0.5, validate=validate.Range(min=0, max=60),
                                   metadata={"description": "wait before the first retry; doubles"})
    max_backoff_seconds = fields.Float(load_default=60.0, validate=validate.Range(min=0, max=3600),
                                       metadata={"description": "cap on any wait, Retry-After too"})
    max_page_bytes = fields.Integer(load_default=64 * 2**20,
                                    validate=validate.Range(min=1024, max=2**30))
    datasets = fields.List(fields.Nested(DatasetSpec), required=True,
                           validate=validate.Length(min=1, max=200))

    @validates_schema
    def _plain_base_url(self, data: dict[str, Any], **_: Any) -> None:
        parts = urlsplit(data.get("base_url", ""))
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValidationError("must not hold credentials, a query or a fragment "
                                  "(give the credential as auth_token)", "base_url")

    @validates_schema
    def _unique_datasets(self, data: dict[str, Any], **_: Any) -> None:
        names = [spec["name"] for spec in data.get("datasets", [])]
        for name in {name for name in names if names.count(name) > 1}:
            raise ValidationError(f"dataset {name!r} is declared twice", "datasets")


def parse_column(value: str) -> tuple[str, str]:
    """``"id:int64"`` as ("id", "int64"); a bare name is a string column."""
    name, colon, kind = value.rpartition(":")
    return (name, kind) if colon else (value, "string")


def parse_body_path(value: str) -> list[str]:
    """A JSON pointer (RFC 6901, ``/a/0``) or dotted path (``a.0``) as its tokens."""
    if not value:
        return []
    if value.startswith("/"):
        return [token.replace("~1", "/").replace("~0", "~") for token in value[1:].split("/")]
    tokens = value.split(".")
    if any(not token for token in tokens):
        raise ValueError(f"{value!r} is neither a JSON pointer (/a/b) nor a dotted path (a.b)")
    return tokens


def lookup(body: Any, path: str) -> Any:
    """The value at ``path`` in a JSON document, or MISSING."""
    for token in parse_body_path(path):
        if isinstance(body, dict) and token in body:
            body = body[token]
        elif isinstance(body, list) and token.isdigit() and int(token) < len(body):
            body = body[int(token)]
        else:
            return MISSING
    return body
