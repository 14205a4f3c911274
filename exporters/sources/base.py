"""The connector contract every source implements (see docs/connectors.md)."""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import pyarrow as pa
from marshmallow import Schema, ValidationError, fields

CATEGORIES = ("account", "content", "usage", "integrations", "reports")
# Field metadata for a string column that holds JSON text: JSON writers embed it as JSON.
JSON_TEXT = {b"offboard.json": b"true"}
ENV_PREFIX = "env:"


@dataclass(frozen=True)
class Scope:
    tenant: str  # the account's id in the source system
    subject: str | None = None  # one person's identity, for a single-person request


@dataclass(frozen=True)
class Dataset:
    name: str
    category: str
    schema: pa.Schema
    total_rows: int | None = None  # when the source knows it cheaply, for progress bars


class SourceError(Exception):
    """A source failed in a way worth telling a human (unreachable, bad credentials, ...)."""


class Secret(fields.String):
    """A credential: given inline or as ``env:NAME``; never echoed by the API or logged."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(metadata={"secret": True, **kwargs.pop("metadata", {})}, **kwargs)


def resolve_secret(value: str) -> str:
    """The credential itself: ``env:NAME`` reads the environment at use time."""
    if not value.startswith(ENV_PREFIX):
        return value
    name = value[len(ENV_PREFIX):]
    if name not in os.environ:
        raise SourceError(f"environment variable {name} (named by a source secret) is not set")
    return os.environ[name]


class Source(abc.ABC):
    kind: ClassVar[str]
    config_schema: ClassVar[type[Schema]]

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    @classmethod
    def validate(cls, config: Any) -> dict[str, Any]:
        """The config as the schema loads it; raise ValidationError naming each bad field."""
        if not isinstance(config, dict):
            raise ValidationError("config must be an object")
        return cls.config_schema().load(config)

    @abc.abstractmethod
    def check(self) -> None:
        """Raise SourceError saying what failed when the system is unreachable or refuses us."""

    @abc.abstractmethod
    def datasets(self, scope: Scope) -> list[Dataset]: ...

    @abc.abstractmethod
    def read(self, dataset: Dataset, scope: Scope, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Stream the scope's rows in batches of at most ``batch_rows``."""

    @abc.abstractmethod
    def erase(self, scope: Scope) -> dict[str, int]:
        """Delete the scope's data; rows or objects removed per dataset."""

    @abc.abstractmethod
    def count(self, scope: Scope) -> dict[str, int]:
        """What is left of the scope's data per dataset (all zero after erase)."""

    def close(self) -> None:  # noqa: B027 -- a source that holds nothing has nothing to release
        """Release what the source holds (pooled connections); the next call opens afresh."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def redact(schema: type[Schema], config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` safe to show: inline secrets replaced, env references kept."""
    shown = dict(config)
    for name, field in schema().fields.items():
        value = shown.get(name)
        if field.metadata.get("secret") and isinstance(value, str) and not value.startswith(ENV_PREFIX):
            shown[name] = "********"
    return shown
