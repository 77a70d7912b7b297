"""Alembic environment: runs on the connection ``alerts.database.migrate`` passes in."""

from __future__ import annotations

from alembic import context

from alerts.database import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through alerts.database.migrate(url)")
context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
