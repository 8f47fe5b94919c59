"""Tables of the subscriptions area, defined on the shared metadata.

``subscriptions`` holds one row per team (its primary key is ``team_id``,
the distribution key) mirroring ``creditbook.domain.subscriptions.Subscription``.
The domain's limits are repeated as constraints so a write made around the
code is refused: seats within 1..10,000, a closed set of statuses, a
cancelled subscription always knows when its free grants stop.
"""

from __future__ import annotations

from sqlalchemy import Boolean, CheckConstraint, Column, Integer, String, Table

from creditbook.adapters.db.tables import UTCDateTime, metadata

__all__ = ["metadata", "subscriptions"]

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("team_id", String(40), primary_key=True),
    Column("plan", String(64), nullable=False),
    Column("seats", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("anchor", UTCDateTime(), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("issued_through", Integer, nullable=False),
    Column("trial_used", Boolean, nullable=False),
    Column("trial_ends_at", UTCDateTime(), nullable=True),
    Column("pending_plan", String(64), nullable=True),
    Column("cancel_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    CheckConstraint("seats >= 1 and seats <= 10000", name="seats_range"),
    CheckConstraint("status in ('trialing', 'active', 'cancelled')", name="status"),
    CheckConstraint("issued_through >= -1", name="issued_through"),
    CheckConstraint(
        "status <> 'cancelled' or cancel_at is not null", name="cancel_at_when_cancelled"
    ),
)
