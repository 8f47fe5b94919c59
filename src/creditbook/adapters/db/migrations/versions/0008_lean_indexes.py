"""Leaner writes: drop two indexes no query needs.

* ``ix_grants_live (team_id, remaining)``: every charge changes ``remaining``,
  so with it indexed no charge could be a HOT update. Loading a team's live
  grants reads the primary key's ``team_id`` prefix and filters
  ``remaining > 0`` on the heap; a team keeps a few dozen grants a year.
* ``ix_ledger_postings_grant (team_id, grant_id)``: no query reads postings by
  grant; the audit scans them all. One index entry less per posting.

(A ``fillfactor = 80`` on ``grants`` was tried with it and dropped: charges on
one hot grant were a quarter slower in paired benchmark runs.)

Revision ID: 0008_lean_indexes
Revises: 0007_group_commit
"""

from __future__ import annotations

from alembic import op

revision = "0008_lean_indexes"
down_revision = "0007_group_commit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants") as batch_op:
        batch_op.drop_index("ix_grants_live")
    with op.batch_alter_table("ledger_postings") as batch_op:
        batch_op.drop_index("ix_ledger_postings_grant")


def downgrade() -> None:
    with op.batch_alter_table("ledger_postings") as batch_op:
        batch_op.create_index("ix_ledger_postings_grant", ["team_id", "grant_id"], unique=False)
    with op.batch_alter_table("grants") as batch_op:
        batch_op.create_index("ix_grants_live", ["team_id", "remaining"], unique=False)
