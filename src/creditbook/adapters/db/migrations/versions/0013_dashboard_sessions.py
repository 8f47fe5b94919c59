"""Server-side dashboard sessions, so that signing out (and losing access) ends them.

The cookie names a session; the row holds who it signs in and the SHA-256 of
the cookie's secret. Ending a session deletes its row.

Revision ID: 0013_dashboard_sessions
Revises: 0012_service_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_dashboard_sessions"
down_revision = "0012_service_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("member_id", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("team_id", "id"),
    )
    op.create_index("ix_dashboard_sessions_member", "dashboard_sessions", ["team_id", "member_id"])


def downgrade() -> None:
    op.drop_index("ix_dashboard_sessions_member", table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
