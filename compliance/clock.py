"""The one source of "now": tests and ``--as-of`` move it, nothing else reads the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_frozen: datetime | None = None


def now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return _frozen if _frozen is not None else datetime.now(UTC)


def freeze(at: datetime) -> None:
    """Stop the clock at ``at`` (aware) until ``unfreeze``; used by tests and ``--as-of``."""
    if at.tzinfo is None:
        raise ValueError("the clock only holds timezone-aware times")
    global _frozen
    _frozen = at.astimezone(UTC)


def advance(by: timedelta) -> datetime:
    """Move a frozen clock forward and return the new time."""
    if _frozen is None:
        raise RuntimeError("advance() needs a frozen clock")
    freeze(_frozen + by)
    return now()


def unfreeze() -> None:
    global _frozen
    _frozen = None
