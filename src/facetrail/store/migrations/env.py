"""Alembic environment: migrations run on the connection facetrail hands over (see store.db.migrate)."""

from __future__ import annotations

from alembic import context

from facetrail.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through facetrail.store.db.migrate()")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
