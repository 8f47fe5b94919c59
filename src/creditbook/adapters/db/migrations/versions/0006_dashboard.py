"""Dashboard sessions and sign-in links (issue 7).

Sessions live in a signed cookie (nothing stored); one-time sign-in links
are stored here, hashed.

Revision ID: 0006_dashboard
Revises: 0005_enrichment
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_dashboard"
down_revision = "0005_enrichment"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_signin_links",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("member_id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("team_id", "id"),
    )


def downgrade() -> None:
    op.drop_table("dashboard_signin_links")
