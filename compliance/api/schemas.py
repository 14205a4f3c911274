"""Schema pieces every resource shares: strict input, bounded strings, cursor pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate


class Strict(Schema):
    """Input schema: unknown fields are errors, and no string may carry a NUL byte
    (PostgreSQL refuses them, so they must be a 422 here, not a 500 later)."""

    class Meta:
        unknown = RAISE

    @pre_load
    def _refuse_nul(self, data: Any, **_: Any) -> Any:
        if _has_nul(data):
            raise ValidationError("strings must not contain NUL characters")
        return data


def text(max_length: int, **kwargs: Any) -> fields.String:
    """A non-blank string no longer than its column."""
    return fields.String(validate=validate.Length(min=1, max=max_length), **kwargs)


def one_of(choices: tuple[str, ...], **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(choices), **kwargs)


class Moment(fields.AwareDateTime):
    """An ISO 8601 date and time with its offset, as the UTC instant the database stores:
    one that has no UTC form (year 1 at +00:01) is a 422 here, not an overflow later."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("the date and time is out of range once converted to UTC") from None


class WholeNumber(fields.Integer):
    """An integer that refuses ``1.5`` rather than truncating it to 1, as marshmallow's Integer
    does with a JSON number; a query string's or form's ``"12"`` still loads."""

    def _validated(self, value: Any) -> int:
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class PageArgs(Strict):
    limit = WholeNumber(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(validate=validate.Length(max=200))


class Page(Schema):
    next_cursor = fields.String(allow_none=True, metadata={"description": "pass back as ?cursor="})


class ReasonIn(Strict):
    reason = text(2000, required=True)


class OptionalReasonIn(Strict):
    reason = text(2000)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False
