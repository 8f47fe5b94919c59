"""Tables of the web area, defined on the shared metadata.

``dashboard_signin_links``
    One-time sign-in links for the dashboard: a link names a team and a member
    and carries a secret of which only the SHA-256 is stored. It is good once
    (``used_at`` is set by the transaction that signs in) and until
    ``expires_at``. The primary key starts with ``team_id`` like every table's.

``dashboard_sessions``
    Signed-in dashboard sessions. The cookie names ``{team}.{id}.{secret}``;
    only the secret's SHA-256 is stored. ``key_id`` is the API key that opened
    the session (or the ``lnk_`` id of the sign-in link). A session is deleted
    when it ends: sign-out, removing the member, changing their role, revoking
    the key; it is never used after ``expires_at``.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, PrimaryKeyConstraint, String, Table

from creditbook.adapters.db.tables import UTCDateTime, metadata

__all__ = ["dashboard_sessions", "dashboard_signin_links", "metadata"]

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

dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("team_id", String(40), nullable=False),
    Column("id", String(40), nullable=False),
    Column("member_id", String(40), nullable=False),
    Column("key_id", String(40), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("team_id", "id"),
    Index("ix_dashboard_sessions_member", "team_id", "member_id"),
)
