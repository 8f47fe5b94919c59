"""API keys, member caps and usage counters (issue 4).

Revision ID: 0003_access
Revises: 0002_subscriptions
"""

from __future__ import annotations

revision = "0003_access"
down_revision = "0002_subscriptions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
