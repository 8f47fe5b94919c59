"""Subscriptions: plans, seats, billing periods (issue 3).

Revision ID: 0002_subscriptions
Revises: 0001_ledger_core
"""

from __future__ import annotations

revision = "0002_subscriptions"
down_revision = "0001_ledger_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
