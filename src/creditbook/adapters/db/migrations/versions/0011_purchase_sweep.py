"""An index for the sweep of purchases left pending: ``(status, updated_at)``.

``PurchaseService.sweep_pending`` (``creditbook credits sweep``) reads the
purchases of every team that are still ``pending`` and have not moved for a
while; without the index that is a scan of every purchase ever made.

Revision ID: 0011_purchase_sweep
Revises: 0010_key_caps
"""

from __future__ import annotations

from alembic import op

revision = "0011_purchase_sweep"
down_revision = "0010_key_caps"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_purchases_status_updated", "purchases", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_purchases_status_updated", table_name="purchases")
