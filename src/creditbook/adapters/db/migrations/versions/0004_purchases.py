"""Purchases, payment events, notifications outbox, auto-recharge (issue 5).

Revision ID: 0004_purchases
Revises: 0003_access
"""

from __future__ import annotations

revision = "0004_purchases"
down_revision = "0003_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
