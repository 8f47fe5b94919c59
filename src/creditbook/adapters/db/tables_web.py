"""Tables of the web area, defined on the shared metadata.

``dashboard_signin_links``
    One-time sign-in links for the dashboard: a link names a team and a member
    and carries a secret of which only the SHA-256 is stored. It is good once
    (``used_at`` is set by the transaction that signs in) and until
    ``expires_at``. The primary key starts with ``team_id`` like every table's.
"""

from __future__ import annotations

from sqlalchemy import Column, PrimaryKeyConstraint, String, Table

from creditbook.adapters.db.tables import UTCDateTime, metadata

__all__ = ["dashboard_signin_links", "metadata"]

dashboard_signin_links = Table(
    "dashboard_signin_links",
    metadata,
    Column("team_id", String(40), nullable=False),
    Column("id", String(40), nullable=False),
    Column("member_id", String(40), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    PrimaryKeyConstraint("team_id", "id"),
)
