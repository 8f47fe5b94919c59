"""Per-API-key monthly caps: ``api_keys.monthly_cap``, never negative.

A team admin may cap what is spent through one key per month (an integration's
key, say), beside the cap of the key's member. NULL is no cap. On SQLite the
CHECK needs the table rebuilt, which batch mode does (it carries the table's
named CHECK over; ``api_keys`` has no index or trigger of its own).

Revision ID: 0010_key_caps
Revises: 0009_check_equalities
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_key_caps"
down_revision = "0009_check_equalities"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.add_column(sa.Column("monthly_cap", sa.BigInteger(), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_api_keys_cap_not_negative"), sa.text("monthly_cap is null or monthly_cap >= 0")
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_constraint(op.f("ck_api_keys_cap_not_negative"), type_="check")
        batch_op.drop_column("monthly_cap")
