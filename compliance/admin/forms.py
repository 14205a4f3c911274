"""Reading a posted form through the API's own marshmallow schema, so a page validates exactly
as the API does and shows each message beside its field."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError
from werkzeug.datastructures import MultiDict


def load(schema: Schema, form: MultiDict[str, str],
         lists: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """The schema's data and no errors, or the raw values and an error message per field.

    Empty inputs count as not given (an optional field left blank); ``lists`` names the
    fields that may repeat (checkboxes, multi-selects).
    """
    raw: dict[str, Any] = {}
    for name in form:
        if name == "csrf_token":
            continue
        values = [value for value in form.getlist(name) if value.strip() != ""]
        if name in lists:
            raw[name] = values
        elif values:
            raw[name] = values[0]
    try:
        return schema.load(raw), {}
    except ValidationError as error:
        return raw, {field: _words(messages) for field, messages in _flat(error.messages).items()}


def _flat(messages: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(messages, dict):
        return {prefix or "_schema": messages}
    found: dict[str, Any] = {}
    for key, value in messages.items():
        name = key if not prefix else prefix if isinstance(key, int) else f"{prefix}.{key}"
        found.update(_flat(value, name) if isinstance(value, dict) else {name: value})
    return found


def _words(messages: Any) -> str:
    if isinstance(messages, list | tuple):
        return " ".join(str(message) for message in messages)
    return str(messages)
