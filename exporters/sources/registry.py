"""Source kinds by name, from the ``offboard.sources`` entry points (built-ins included)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from exporters.sources.base import Source

GROUP = "offboard.sources"


class UnknownSource(LookupError):
    pass


@cache
def kinds() -> dict[str, type[Source]]:
    """Every installed kind; two packages claiming one name is a start-up error."""
    found: dict[str, type[Source]] = {}
    for entry in entry_points(group=GROUP):
        if entry.name in found:
            raise RuntimeError(f"two source connectors claim the kind {entry.name!r}")
        cls = entry.load()
        if not (isinstance(cls, type) and issubclass(cls, Source)) or cls.kind != entry.name:
            raise RuntimeError(f"entry point {entry.value} is not a Source of kind {entry.name!r}")
        found[entry.name] = cls
    return found


def get(kind: str) -> type[Source]:
    try:
        return kinds()[kind]
    except KeyError:
        installed = ", ".join(sorted(kinds()))
        raise UnknownSource(f"unknown source kind {kind!r}; installed: {installed}") from None
