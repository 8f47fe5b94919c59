"""Dashboard sessions and sign-in links (issue 7).

Revision ID: 0006_dashboard
Revises: 0005_enrichment
"""

from __future__ import annotations

revision = "0006_dashboard"
down_revision = "0005_enrichment"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
