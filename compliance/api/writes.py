"""Units of work for the views that change something, and ``Idempotency-Key`` replay.

A create call retried with the same key and body gets the first answer back,
byte for byte; the same key with another body is refused (422). The replayable
answer is stored in the same transaction as what the call created.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from functools import wraps
from typing import Any

import rfc8785
from flask import Response, request
from flask_smorest import abort
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from compliance import db
from compliance.auth import current_principal
from compliance.models import IdempotencyRecord

KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
IDEMPOTENCY_HEADER = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "description": "Retry-safe creation: the same key and body return the first answer.",
    "schema": {"type": "string", "maxLength": 255},
}


def writes(view: Callable[..., Any]) -> Callable[..., Any]:
    """Commit what the view changed once it has answered successfully."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        response = view(*args, **kwargs)
        db.session.commit()
        return response

    return wrapper


def idempotent(view: Callable[..., Any]) -> Callable[..., Any]:
    """Like ``writes``, and replays the first answer for a repeated ``Idempotency-Key``."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return writes(view)(*args, **kwargs)
        if not KEY_PATTERN.match(key):
            abort(400, message="Idempotency-Key must be 1-255 visible ASCII characters")
        scope = (current_principal().actor, key, request.endpoint or "")
        body_sha256 = _body_digest()
        stored = _lookup(*scope)
        if stored is not None:
            return _replay(stored, body_sha256)
        response: Response = view(*args, **kwargs)
        if response.status_code < 300:
            db.session.add(
                IdempotencyRecord(
                    principal=scope[0], key=key, endpoint=scope[2], body_sha256=body_sha256,
                    status_code=response.status_code, response_body=response.get_data(as_text=True),
                    location=response.headers.get("Location"),
                )
            )
        try:
            db.session.commit()
        except IntegrityError:
            # A concurrent call with the same key won the race: answer as it did.
            db.session.rollback()
            stored = _lookup(*scope)
            if stored is None:
                raise
            return _replay(stored, body_sha256)
        return response

    return wrapper


def _lookup(principal: str, key: str, endpoint: str) -> IdempotencyRecord | None:
    return db.session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal,
            IdempotencyRecord.key == key,
            IdempotencyRecord.endpoint == endpoint,
        )
    )


def _replay(stored: IdempotencyRecord, body_sha256: str) -> Response:
    if stored.body_sha256 != body_sha256:
        abort(422, message="this Idempotency-Key was already used with a different body",
              errors={"headers": {"Idempotency-Key": ["reused with a different request body"]}})
    headers = {"Idempotent-Replayed": "true"}
    if stored.location:
        headers["Location"] = stored.location
    return Response(stored.response_body, status=stored.status_code,
                    mimetype="application/json", headers=headers)


def _body_digest() -> str:
    """Hash of the body as JSON meaning, so whitespace and key order do not matter."""
    raw = request.get_data()
    try:
        canonical = rfc8785.dumps(json.loads(raw))
    except ValueError:  # not JSON: the view answers 400; hash the raw bytes
        canonical = raw
    return hashlib.sha256(canonical).hexdigest()
