"""The audit page: the event log searched exactly as ``GET /api/v1/audit/events`` searches it
(``audit.search``), the latest signed checkpoint, and the outcome of the last ``audit verify``
with a button that queues another run."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from marshmallow import ValidationError, fields, validates_schema
from werkzeug import Response

from audit import checkpoints, search, verifications
from compliance.admin import bp, forms
from compliance.api.audit import READERS, EventArgs
from compliance.api.pagination import paginate
from compliance.auth import current_principal, requires
from compliance.models import AuditEvent

VERIFIERS = ("auditor", "admin")  # who may act on the log, as POST /api/v1/audit/checkpoints
SECRET_WORDS = ("password", "secret", "token", "private")  # never shown, should an event ever hold one
LONGEST = 160  # characters of one data value shown; the API gives the whole event


class Filters(EventArgs):
    """The API's filters, with whole days (UTC) for the time range, as a date picker gives them."""

    since = fields.Date(data_key="from")
    until = fields.Date(data_key="to")

    @validates_schema
    def _ordered(self, data: dict[str, Any], **_: Any) -> None:
        if "since" in data and "until" in data and data["until"] < data["since"]:
            raise ValidationError("must not be before the start date", "to")


@bp.route("/audit")
@requires(*READERS)
def audit() -> tuple[str, int]:
    data, errors = forms.load(Filters(), request.args)
    page: dict[str, Any] = {"items": [], "next_cursor": None}
    if not errors:
        filters = {name: value for name, value in data.items() if name not in ("limit", "cursor")}
        for name, days in (("since", 0), ("until", 1)):  # "to" includes its whole day
            if name in filters:
                filters[name] = _midnight(filters[name] + timedelta(days=days))
        page = paginate(search.events(**filters), AuditEvent.id, limit=data["limit"],
                        cursor=data.get("cursor"))
    checkpoint = checkpoints.latest()
    asked = {name: value for name, value in request.args.items() if name != "cursor" and value.strip()}
    return render_template(
        "admin/audit.html", events=page["items"], errors=errors, asked=asked, shown=shown,
        next_url=url_for("admin.audit", **asked, cursor=page["next_cursor"]) if page["next_cursor"] else None,
        first_url=url_for("admin.audit", **asked) if request.args.get("cursor") else None,
        checkpoint=checkpoint,
        root_hash=base64.b64encode(checkpoint.root_hash).decode() if checkpoint else None,
        last_run=verifications.last(),
    ), 400 if errors else 200


@bp.route("/audit/verify", methods=["POST"])
@requires(*VERIFIERS)
def verify_audit() -> Response:
    """Queue ``audit verify`` for a worker, on behalf of the person who asked."""
    verifications.enqueue(current_principal().actor)
    flash("Verification queued: a worker recomputes the whole log and checks every signed checkpoint. "
          "Reload this page in a minute to see the result under Last verification.", "ok")
    return redirect(url_for("admin.audit"))


def shown(data: dict[str, Any]) -> list[tuple[str, str]]:
    """An event's data as short (name, text) pairs: nested values as compact JSON, long ones cut."""
    pairs = []
    for name, value in data.items():
        if any(word in name.lower() for word in SECRET_WORDS):
            text = "(hidden)"
        elif isinstance(value, str):
            text = value
        else:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        pairs.append((name, text if len(text) <= LONGEST else text[:LONGEST - 1] + "…"))
    return pairs


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)
