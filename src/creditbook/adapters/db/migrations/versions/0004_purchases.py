"""Purchases, payment events, notifications outbox, auto-recharge (issue 5).

Revision ID: 0004_purchases
Revises: 0003_access
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_purchases"
down_revision = "0003_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "purchases",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_reference", sa.String(length=255), nullable=True),
        sa.Column("package", sa.String(length=32), nullable=True),
        sa.Column("member_id", sa.String(length=40), nullable=True),
        sa.Column("api_key_id", sa.String(length=40), nullable=True),
        sa.Column("operator", sa.String(length=200), nullable=True),
        sa.Column("grant_id", sa.String(length=40), nullable=True),
        sa.Column("refunded_credits", sa.BigInteger(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("refund_reference", sa.String(length=255), nullable=True),
        sa.Column("refund_pending", sa.Boolean(), nullable=False),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind in ('manual', 'auto_recharge')", name=op.f("ck_purchases_kind")),
        sa.CheckConstraint(
            "status <> 'completed' or grant_id is not null",
            name=op.f("ck_purchases_completed_has_grant"),
        ),
        sa.CheckConstraint(
            "status in ('pending', 'completed', 'failed', 'refunded')",
            name=op.f("ck_purchases_status"),
        ),
        sa.CheckConstraint("amount_minor >= 0", name=op.f("ck_purchases_amount_not_negative")),
        sa.CheckConstraint("credits > 0", name=op.f("ck_purchases_credits_positive")),
        sa.CheckConstraint(
            "refunded_credits >= 0 and refunded_credits <= credits",
            name=op.f("ck_purchases_refund_within_credits"),
        ),
        sa.CheckConstraint(
            "refunded_minor >= 0 and refunded_minor <= amount_minor",
            name=op.f("ck_purchases_refund_within_amount"),
        ),
        sa.PrimaryKeyConstraint("team_id", "id", name=op.f("pk_purchases")),
        sa.UniqueConstraint(
            "team_id", "provider", "provider_reference", name="uq_purchases_provider_reference"
        ),
    )
    op.create_index(
        "ix_purchases_team_created", "purchases", ["team_id", "created_at"], unique=False
    )
    op.create_table(
        "payment_events",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("purchase_id", sa.String(length=40), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("team_id", "provider", "event_id", name=op.f("pk_payment_events")),
    )
    op.create_table(
        "notifications",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status <> 'delivered' or delivered_at is not null",
            name=op.f("ck_notifications_delivered_at"),
        ),
        sa.CheckConstraint(
            "status in ('pending', 'delivered', 'failed', 'skipped')",
            name=op.f("ck_notifications_status"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_notifications_attempts_not_negative")),
        sa.PrimaryKeyConstraint("team_id", "id", name=op.f("pk_notifications")),
    )
    op.create_index(
        "ix_notifications_due", "notifications", ["status", "next_attempt_at"], unique=False
    )
    op.create_table(
        "billing_settings",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("low_balance_threshold", sa.BigInteger(), nullable=True),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("webhook_secret", sa.String(length=200), nullable=True),
        sa.Column("auto_recharge_enabled", sa.Boolean(), nullable=False),
        sa.Column("auto_recharge_threshold", sa.BigInteger(), nullable=True),
        sa.Column("auto_recharge_credits", sa.BigInteger(), nullable=True),
        sa.Column("auto_recharge_payment_method", sa.String(length=255), nullable=True),
        sa.Column("auto_recharge_customer", sa.String(length=255), nullable=True),
        sa.Column("auto_recharge_cooldown_seconds", sa.Integer(), nullable=False),
        sa.Column("auto_recharge_disabled_reason", sa.Text(), nullable=True),
        sa.Column("last_recharge_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("below_threshold", sa.Boolean(), nullable=False),
        sa.Column("depleted", sa.Boolean(), nullable=False),
        sa.Column("recharge_armed", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "auto_recharge_cooldown_seconds >= 0", name=op.f("ck_billing_settings_cooldown")
        ),
        sa.CheckConstraint(
            "auto_recharge_credits is null or auto_recharge_credits > 0",
            name=op.f("ck_billing_settings_recharge_credits"),
        ),
        sa.CheckConstraint(
            "auto_recharge_threshold is null or auto_recharge_threshold >= 0",
            name=op.f("ck_billing_settings_recharge_threshold"),
        ),
        sa.CheckConstraint(
            "low_balance_threshold is null or low_balance_threshold >= 0",
            name=op.f("ck_billing_settings_threshold"),
        ),
        sa.CheckConstraint(
            "not auto_recharge_enabled or "
            "(auto_recharge_threshold is not null and auto_recharge_credits is not null)",
            name=op.f("ck_billing_settings_recharge_complete"),
        ),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_billing_settings")),
    )


def downgrade() -> None:
    op.drop_table("billing_settings")
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("payment_events")
    op.drop_index("ix_purchases_team_created", table_name="purchases")
    op.drop_table("purchases")
