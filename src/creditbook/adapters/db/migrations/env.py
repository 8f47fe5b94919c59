"""Alembic environment: runs creditbook's migrations on the connection given."""

from __future__ import annotations

from alembic import context

from creditbook.adapters.db.schema import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # pragma: no cover - always called through creditbook.adapters.db.migrate
    raise RuntimeError("run migrations with `creditbook db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
