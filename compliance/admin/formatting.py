"""How the pages show times, deadlines, sizes and names: Jinja filters and globals."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from compliance import clock, db
from compliance.models import ApiKey, User

SOON = timedelta(hours=6)  # a deadline this close turns its badge amber


def when(moment: datetime | None) -> str:
    return moment.strftime("%d %b %Y, %H:%M UTC") if moment else "—"


def day(moment: datetime | None) -> str:
    return moment.strftime("%a %d %b %Y") if moment else "—"


def span(delta: timedelta) -> str:
    """A duration the way people say it: 45 min, 5 h, 3 d."""
    seconds = abs(delta.total_seconds())
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min"
    if seconds < 2 * 86400:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} d"


def ago(moment: datetime | None) -> str:
    return span(clock.now() - moment) if moment else "—"


def deadline(due: datetime | None, met: datetime | None = None) -> dict[str, str]:
    """A deadline badge: its colour class and words, from how close ``due`` is (or when it was met)."""
    if due is None:
        return {"tone": "none", "text": "no deadline"}
    if met is not None:
        return {"tone": "done", "text": "met" if met <= due else f"met {span(met - due)} late"}
    left = due - clock.now()
    if left < timedelta(0):
        return {"tone": "late", "text": f"{span(left)} overdue"}
    return {"tone": "soon" if left < SOON else "ok", "text": f"{span(left)} left"}


def size(count: int | None) -> str:
    if count is None:
        return "—"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def number(count: int | float | None) -> str:
    return "—" if count is None else f"{count:,}"


def label(name: str | None) -> str:
    """``switched_to_competitor`` -> ``Switched to competitor``."""
    return (name or "").replace("_", " ").replace("-", " ").capitalize()


def actor_names(actors: set[str]) -> dict[str, str]:
    """How the timeline names who did something: people by name, keys by their name."""
    ids = {kind: [int(ref) for actor in actors for k, _, ref in [actor.partition(":")] if k == kind
                  and ref.isdigit()] for kind in ("user", "apikey")}
    names = {"system": "Offboard (automatic)", "customer": "The customer"}
    for user in db.session.scalars(select(User).where(User.id.in_(ids["user"]))):
        names[f"user:{user.id}"] = user.name
    for key in db.session.scalars(select(ApiKey).where(ApiKey.id.in_(ids["apikey"]))):
        names[f"apikey:{key.id}"] = f"API key “{key.name}”"
    return names


FILTERS: dict[str, Any] = {"when": when, "day": day, "ago": ago, "size": size, "number": number,
                           "label": label, "span": span}
GLOBALS: dict[str, Any] = {"deadline": deadline, "now": clock.now}
