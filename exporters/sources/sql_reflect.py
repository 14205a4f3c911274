"""Which tables an ``sql`` source exports, when it is told to find them (``reflect``).

A table holding the tenant column belongs to the tenant directly. A table without it
belongs to the tenant when one of its single-column foreign keys refers to a table that
does, to any depth: it becomes a ``via`` table, exactly as if it had been declared. Lookup
tables that exported tables merely refer to (countries, plans) are shared by every tenant
and are not found. Declared tables take the place of found tables of the same name.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Inspector

from exporters.sources.base import SourceError
from exporters.sources.sql_config import parse_via

Spec = dict[str, Any]


def table_specs(config: dict[str, Any], inspector: Inspector) -> dict[str, Spec]:
    """The source's tables by name, parents before the tables found through them."""
    declared: dict[str, Spec] = {spec["name"]: spec for spec in config.get("tables", [])}
    if "reflect" not in config:
        return declared
    found = _found(config["reflect"], inspector, config.get("schema"))
    specs = {name: declared.get(name, spec) for name, spec in found.items()}
    specs |= {name: spec for name, spec in declared.items() if name not in specs}
    _check_references(specs)
    return specs


def _found(rules: dict[str, Any], inspector: Inspector, schema: str | None) -> dict[str, Spec]:
    names = sorted(set(inspector.get_table_names(schema)) - set(rules["exclude"]))
    columns = {name: {column["name"] for column in inspector.get_columns(name, schema)}
               for name in names}

    def spec(name: str, link: dict[str, str]) -> Spec:
        made = {"name": name, "category": rules["categories"].get(name, "content"), **link}
        if rules.get("subject_column") in columns[name]:
            made["subject_column"] = rules["subject_column"]
        return made

    tenant = rules["tenant_column"]
    specs = {name: spec(name, {"tenant_column": tenant}) for name in names
             if tenant in columns[name]}
    if not specs:
        where = f" in schema {schema!r}" if schema else ""
        raise SourceError(f"reflect found no table with the column {tenant!r}{where}")
    if not rules["follow_foreign_keys"]:
        return specs
    keys = {name: sorted(inspector.get_foreign_keys(name, schema),
                         key=lambda key: key["constrained_columns"])
            for name in names if name not in specs}
    while True:  # one level of children per round, so a child follows its parent
        level = {}
        for name, foreign in keys.items():
            via = next((f"{key['constrained_columns'][0]} -> {key['referred_table']}."
                        f"{key['referred_columns'][0]}" for key in foreign
                        if len(key["constrained_columns"]) == 1
                        and key["referred_table"] in specs
                        and key.get("referred_schema") in (None, schema)), None)
            if name not in specs and via:
                level[name] = spec(name, {"via": via})
        if not level:
            return specs
        specs |= level


def _check_references(specs: dict[str, Spec]) -> None:
    """Every ``via`` chain ends at a table holding the tenant column."""
    for name, first in specs.items():
        chain, spec = [name], first
        while "via" in spec:
            parent = parse_via(spec["via"])[1]
            if parent not in specs:
                raise SourceError(f"table {name!r} refers to {parent!r}, which is neither "
                                  "declared nor found by reflect")
            if parent in chain:
                raise SourceError(f"the references form a cycle: {' -> '.join([*chain, parent])}")
            chain.append(parent)
            spec = specs[parent]
