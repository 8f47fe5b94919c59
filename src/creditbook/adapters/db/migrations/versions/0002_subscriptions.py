"""Subscriptions: plans, seats, billing periods (issue 3).

One row per team: its plan, seats, status, billing anchor and time zone, and
how far its period grants have been issued (``issued_through``).

Revision ID: 0002_subscriptions
Revises: 0001_ledger_core
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_subscriptions"
down_revision = "0001_ledger_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("plan", sa.String(length=64), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("anchor", sa.DateTime(timezone=True), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("issued_through", sa.Integer(), nullable=False),
        sa.Column("trial_used", sa.Boolean(), nullable=False),
        sa.Column("trial_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pending_plan", sa.String(length=64), nullable=True),
        sa.Column("cancel_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "seats >= 1 and seats <= 10000", name=op.f("ck_subscriptions_seats_range")
        ),
        sa.CheckConstraint(
            "status in ('trialing', 'active', 'cancelled')", name=op.f("ck_subscriptions_status")
        ),
        sa.CheckConstraint("issued_through >= -1", name=op.f("ck_subscriptions_issued_through")),
        sa.CheckConstraint(
            "status <> 'cancelled' or cancel_at is not null",
            name=op.f("ck_subscriptions_cancel_at_when_cancelled"),
        ),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_subscriptions")),
    )


def downgrade() -> None:
    op.drop_table("subscriptions")
