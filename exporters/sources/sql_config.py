"""What an ``sql`` source is told: a database URL and the tables that hold a tenant's rows.

A table is tied to the tenant either directly (``tenant_column``) or through a
reference to a table already declared (``via: "post_id -> posts.id"``), to any depth.
Instead of (or as well as) declaring tables, ``reflect`` finds them in the schema: every
table with the tenant column, and the tables reaching those through foreign keys.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from exporters.sources.base import CATEGORIES, Secret

IDENTIFIER = validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
                             error="must be a plain SQL identifier (letters, digits, _)")
VIA = re.compile(r"^\s*(\w+)\s*->\s*(\w+)\.(\w+)\s*$")


class TableSpec(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=IDENTIFIER)
    category = fields.String(load_default="content", validate=validate.OneOf(CATEGORIES))
    tenant_column = fields.String(validate=IDENTIFIER)
    subject_column = fields.String(validate=IDENTIFIER)
    via = fields.String(validate=validate.Regexp(VIA, error="must read 'column -> table.column'"),
                        metadata={"description": "reference to a declared table, e.g. "
                                                 "'post_id -> posts.id'"})

    @validates_schema
    def _one_link(self, data: dict[str, Any], **_: Any) -> None:
        if ("tenant_column" in data) == ("via" in data):
            raise ValidationError("give exactly one of tenant_column or via", "tenant_column")


class ReflectSpec(Schema):
    class Meta:
        unknown = RAISE

    tenant_column = fields.String(required=True, validate=IDENTIFIER, metadata={
        "description": "every table holding this column is exported"})
    subject_column = fields.String(validate=IDENTIFIER, metadata={
        "description": "used for single-person scopes in the tables that have it"})
    follow_foreign_keys = fields.Boolean(load_default=True, metadata={
        "description": "also export the tables that reach an exported one through a "
                       "single-column foreign key, to any depth"})
    exclude = fields.List(fields.String(validate=IDENTIFIER), load_default=list,
                          validate=validate.Length(max=500))
    categories = fields.Dict(keys=fields.String(validate=IDENTIFIER),
                             values=fields.String(validate=validate.OneOf(CATEGORIES)),
                             load_default=dict, metadata={
                                 "description": "table name -> category; others are content"})


class SqlConfig(Schema):
    class Meta:
        unknown = RAISE

    url = Secret(required=True, validate=validate.Length(min=1, max=2000),
                 metadata={"description": "SQLAlchemy URL, or env:NAME holding it"})
    schema = fields.String(validate=IDENTIFIER, metadata={"description": "database schema"})
    tables = fields.List(fields.Nested(TableSpec), validate=validate.Length(min=1, max=500),
                         metadata={"description": "declared tables; with reflect, they take "
                                                  "the place of found tables of the same name"})
    reflect = fields.Nested(ReflectSpec, metadata={"description": "find the tables in the schema"})

    @validates_schema
    def _references_resolve(self, data: dict[str, Any], **_: Any) -> None:
        if "tables" not in data and "reflect" not in data:
            raise ValidationError("give tables, reflect, or both", "tables")
        declared: set[str] = set()
        for index, table in enumerate(data.get("tables", [])):
            if table["name"] in declared:
                raise ValidationError(f"table {table['name']!r} is declared twice", "tables")
            match = VIA.match(table.get("via", ""))
            # With reflect, a reference may name a found table: resolved when the schema is read.
            if match and match.group(2) not in declared and "reflect" not in data:
                raise ValidationError(
                    f"tables[{index}].via names {match.group(2)!r}, which must be declared "
                    "earlier in the list", "tables")
            declared.add(table["name"])


def parse_via(via: str) -> tuple[str, str, str]:
    """``"post_id -> posts.id"`` as (child column, parent table, parent column)."""
    match = VIA.match(via)
    if match is None:
        raise ValueError(f"bad reference {via!r}")
    return match.group(1), match.group(2), match.group(3)
