"""Alembic environment: runs creditbook's migrations on the connection given.

It imports nothing from creditbook, like the migrations: what an old migration
does must not depend on today's code. Alembic names the constraints a migration
leaves unnamed with the naming convention of ``target_metadata``, so that
convention is written out here (``tests/unit/test_migrations_frozen.py`` holds
it equal to the tables' own, ``tables.NAMING``).

On PostgreSQL the transaction first sets ``lock_timeout`` (the
``lock_timeout`` attribute, in seconds, set by ``migrate.py``): a migration
that needs a lock another session holds fails after that long instead of
waiting for it, while every new query on that table queues behind the waiting
migration.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData

# Frozen: changing it would rename what the migrations create (a change of the
# tables' convention needs a migration that renames the constraints).
MIGRATIONS_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # pragma: no cover - always called through creditbook.adapters.db.migrate
    raise RuntimeError("run migrations with `creditbook db upgrade`")

lock_timeout = config.attributes.get("lock_timeout")
if lock_timeout is not None and connection.dialect.name == "postgresql":
    milliseconds = max(1, round(float(lock_timeout) * 1000))
    connection.exec_driver_sql(f"SET LOCAL lock_timeout = {milliseconds}")

context.configure(
    connection=connection,
    target_metadata=MetaData(naming_convention=MIGRATIONS_NAMING),
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    on_version_apply=config.attributes.get("on_version_apply"),
)
with context.begin_transaction():
    context.run_migrations()
