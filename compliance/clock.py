"""The one source of "now": tests and ``--as-of`` move it, nothing else reads the wall clock."""

from __future__ import annotations

import calendar
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


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months, clamped to the month's last day (31 Jan + 1 month = 28/29 Feb): how the
    law's and the retention policy's month periods are counted."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))
