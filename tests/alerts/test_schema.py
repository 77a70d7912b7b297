"""The migrations build exactly the schema the ORM describes, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import URL

from alerts.database import Base, alembic_config, migrate


def test_migrated_schema_matches_the_orm(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_migrate_is_idempotent_and_records_head(database_url: URL, engine: Engine) -> None:
    migrate(database_url)
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())


def test_sqlite_enforces_foreign_keys(engine: Engine) -> None:
    import pytest
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO notes (case_id, author, role, body, created_at) "
                "VALUES (999, 'x', 'manager', 'b', '2024-01-01 00:00:00')"
            )
        )
