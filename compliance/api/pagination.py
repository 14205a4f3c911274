"""Cursor pagination: newest first by id; the cursor is opaque to clients and validated on use."""

from __future__ import annotations

import base64
import binascii
from typing import Any, TypeVar

from flask_smorest import abort
from sqlalchemy import Select

from compliance import db

T = TypeVar("T")


def paginate(query: Select[tuple[T]], id_column: Any, *, limit: int,
             cursor: str | None) -> dict[str, Any]:
    """One page of ``query`` and the cursor for the next one (None on the last page)."""
    if cursor:
        after = _decode(cursor)
        if after is None:
            abort(400, message="invalid pagination cursor",
                  errors={"query": {"cursor": ["not a cursor this API returned"]}})
        query = query.where(id_column < after)
    rows = list(db.session.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode(rows[-1].id) if more and rows else None  # type: ignore[attr-defined]
    return {"items": rows, "next_cursor": next_cursor}


def _encode(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    kind, _, value = raw.partition(":")
    if kind == "id" and value.isdigit() and 0 < int(value) < 2**63:
        return int(value)
    return None
