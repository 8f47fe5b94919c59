"""Repair what the first version of 0008 left: ``grants`` without ``fillfactor``.

Migration 0008 was edited after it landed. Its first version also ran
``ALTER TABLE grants SET (fillfactor = 80)`` on PostgreSQL, which the revised
0008 dropped (charges on one hot grant were a quarter slower with it). A
database upgraded through the first version still has the option; every other
database has none. ``RESET`` gives every database the same ``grants``: it
changes only the catalog (no rewrite, and its lock does not block reads or
writes), and on a table without the option it changes nothing. SQLite: nothing
to do.

The downgrade does nothing: 0013's schema has no fillfactor either.

(Migrations 0002 to 0006 were also first committed empty; a database stamped
then lacks their tables, which no migration after them can know. ``creditbook
db repair`` runs them, then upgrades through this one.)

Revision ID: 0014_repair_history
Revises: 0013_dashboard_sessions
"""

from __future__ import annotations

from alembic import op

revision = "0014_repair_history"
down_revision = "0013_dashboard_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE grants RESET (fillfactor)")


def downgrade() -> None:
    pass
