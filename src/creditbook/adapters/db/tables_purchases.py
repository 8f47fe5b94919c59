"""Tables of the purchases area: purchases, payment events, the notification outbox, settings.

Every primary key starts with ``team_id`` (the distribution key), and so does
every unique constraint (Citus requires the distribution column in them):

``purchases``
    One row per purchase (bought by an admin, or requested by auto-recharge).
    Money is stored in integer minor units with its currency. The provider's
    reference (a Stripe PaymentIntent id) is unique per provider and team.
    ``refunded_credits <= credits`` and ``refunded_minor <= amount_minor``.
``payment_events``
    Each verified provider event id, recorded in the transaction that acted
    on it: a retried or replayed webhook finds its id and does nothing.
``notifications``
    The transactional outbox and the in-app list at once: an alert is written
    in the same transaction as the change that caused it; the delivery worker
    posts it to the team's webhook and records the outcome.
``billing_settings``
    One row per team: low-balance threshold, webhook URL and secret,
    auto-recharge settings, and the alert states that make an alert fire once
    per crossing (``below_threshold``, ``depleted``, ``recharge_armed``).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from creditbook.adapters.db.tables import UTCDateTime, metadata

__all__ = ["billing_settings", "metadata", "notifications", "payment_events", "purchases"]

PURCHASE_STATUSES = ("pending", "completed", "failed", "refunded")
PURCHASE_KINDS = ("manual", "auto_recharge")
NOTIFICATION_STATUSES = ("pending", "delivered", "failed", "skipped")

purchases = Table(
    "purchases",
    metadata,
    Column("team_id", String(40), nullable=False),
    Column("id", String(40), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("credits", BigInteger, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("provider_reference", String(255), nullable=True),
    Column("package", String(32), nullable=True),
    Column("member_id", String(40), nullable=True),
    Column("api_key_id", String(40), nullable=True),
    Column("operator", String(200), nullable=True),
    Column("grant_id", String(40), nullable=True),
    Column("refunded_credits", BigInteger, nullable=False, default=0),
    Column("refunded_minor", BigInteger, nullable=False, default=0),
    Column("refund_reference", String(255), nullable=True),
    Column("refund_pending", Boolean, nullable=False, default=False),
    Column("failure_message", Text, nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("completed_at", UTCDateTime(), nullable=True),
    PrimaryKeyConstraint("team_id", "id"),
    UniqueConstraint(
        "team_id", "provider", "provider_reference", name="uq_purchases_provider_reference"
    ),
    CheckConstraint("credits > 0", name="credits_positive"),
    CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
    CheckConstraint("status in ('pending', 'completed', 'failed', 'refunded')", name="status"),
    CheckConstraint("kind in ('manual', 'auto_recharge')", name="kind"),
    CheckConstraint(
        "refunded_credits >= 0 and refunded_credits <= credits", name="refund_within_credits"
    ),
    CheckConstraint(
        "refunded_minor >= 0 and refunded_minor <= amount_minor", name="refund_within_amount"
    ),
    CheckConstraint("status <> 'completed' or grant_id is not null", name="completed_has_grant"),
)
Index("ix_purchases_team_created", purchases.c.team_id, purchases.c.created_at)
# ``sweep_pending`` reads the pending purchases that stopped moving, across teams.
Index("ix_purchases_status_updated", purchases.c.status, purchases.c.updated_at)

payment_events = Table(
    "payment_events",
    metadata,
    Column("team_id", String(40), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("type", String(64), nullable=False),
    Column("purchase_id", String(40), nullable=True),
    Column("outcome", String(32), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("team_id", "provider", "event_id"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("team_id", String(40), nullable=False),
    Column("id", String(40), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime(), nullable=True),
    PrimaryKeyConstraint("team_id", "id"),
    CheckConstraint("status in ('pending', 'delivered', 'failed', 'skipped')", name="status"),
    CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    CheckConstraint("status <> 'delivered' or delivered_at is not null", name="delivered_at"),
)
Index("ix_notifications_due", notifications.c.status, notifications.c.next_attempt_at)

billing_settings = Table(
    "billing_settings",
    metadata,
    Column("team_id", String(40), nullable=False),
    Column("low_balance_threshold", BigInteger, nullable=True),
    Column("webhook_url", String(2000), nullable=True),
    Column("webhook_secret", String(200), nullable=True),
    Column("auto_recharge_enabled", Boolean, nullable=False, default=False),
    Column("auto_recharge_threshold", BigInteger, nullable=True),
    Column("auto_recharge_credits", BigInteger, nullable=True),
    Column("auto_recharge_payment_method", String(255), nullable=True),
    Column("auto_recharge_customer", String(255), nullable=True),
    Column("auto_recharge_cooldown_seconds", Integer, nullable=False, default=3600),
    Column("auto_recharge_disabled_reason", Text, nullable=True),
    Column("last_recharge_at", UTCDateTime(), nullable=True),
    Column("below_threshold", Boolean, nullable=False, default=False),
    Column("depleted", Boolean, nullable=False, default=False),
    Column("recharge_armed", Boolean, nullable=False, default=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("team_id"),
    CheckConstraint(
        "low_balance_threshold is null or low_balance_threshold >= 0", name="threshold"
    ),
    CheckConstraint(
        "auto_recharge_threshold is null or auto_recharge_threshold >= 0",
        name="recharge_threshold",
    ),
    CheckConstraint(
        "auto_recharge_credits is null or auto_recharge_credits > 0", name="recharge_credits"
    ),
    CheckConstraint("auto_recharge_cooldown_seconds >= 0", name="cooldown"),
    CheckConstraint(
        "not auto_recharge_enabled or "
        "(auto_recharge_threshold is not null and auto_recharge_credits is not null)",
        name="recharge_complete",
    ),
)
