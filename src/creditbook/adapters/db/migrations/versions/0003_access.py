"""API keys and team access status (issue 4).

Revision ID: 0003_access
Revises: 0002_subscriptions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_access"
down_revision = "0002_subscriptions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("member_id", sa.String(length=40), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("length(key_hash) = 64", name=op.f("ck_api_keys_hash_length")),
        sa.PrimaryKeyConstraint("team_id", "id", name=op.f("pk_api_keys")),
    )
    op.create_table(
        "team_access",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status in ('active', 'suspended')", name=op.f("ck_team_access_status")),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_team_access")),
    )


def downgrade() -> None:
    op.drop_table("team_access")
    op.drop_table("api_keys")
