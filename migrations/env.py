"""Alembic environment: the URL and metadata come from the service, not from an ini file."""

from alembic import context

import compliance.models  # noqa: F401  -- registers every table on Base.metadata
from compliance.db import Base, UTCDateTime, make_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def _render_item(kind, obj, autogen_context):  # type: ignore[no-untyped-def]
    # Migrations must not import the service's types: write their plain SQL type.
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


run_migrations_online()
