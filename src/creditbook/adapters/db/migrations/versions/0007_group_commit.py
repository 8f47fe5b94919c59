"""Group commit: check ledger balance once per INSERT statement, not once per posting.

On PostgreSQL the deferred per-row constraint trigger of 0001 ran one query per
posting at commit. It is replaced by a statement-level AFTER INSERT trigger over
a transition table (``triggers.POSTGRES_STATEMENT_CHECK_UP``); the repository
inserts every posting of an entry in one statement. SQLite: nothing changes.

Revision ID: 0007_group_commit
Revises: 0006_dashboard
"""

from __future__ import annotations

from alembic import op

from creditbook.adapters.db import triggers

revision = "0007_group_commit"
down_revision = "0006_dashboard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in triggers.POSTGRES_STATEMENT_CHECK_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in triggers.POSTGRES_STATEMENT_CHECK_DOWN:
            op.execute(statement)
