"""Enrichment jobs, job items and the lead cache (issue 6).

Revision ID: 0005_enrichment
Revises: 0004_purchases
"""

from __future__ import annotations

revision = "0005_enrichment"
down_revision = "0004_purchases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
