"""The migrations build exactly the schema the models describe, on this run's database."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from compliance import db, schema
from compliance.db import Base


def test_migrations_match_the_models(app) -> None:  # type: ignore[no-untyped-def]
    with db.engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_database_is_at_the_single_head(app, settings) -> None:  # type: ignore[no-untyped-def]
    script = ScriptDirectory.from_config(schema.alembic_config(settings.database_url))
    assert len(script.get_heads()) == 1
    with db.engine().connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == script.get_current_head()


def test_upgrade_twice_is_harmless(app, settings) -> None:  # type: ignore[no-untyped-def]
    schema.upgrade(settings.database_url)
    with db.engine().connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
