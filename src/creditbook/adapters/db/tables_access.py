"""Tables of the HTTP API's access layer: API keys and team access status (issue 4).

A key may carry a monthly cap on what is spent through it (migration 0010),
beside its member's own cap. Its ``kind`` (migration 0012) is ``personal``
(it acts with its member's role) or ``service`` (the platform's own code:
it spends, settles any hold and sees every job of its team, and is no admin).
Keys are looked up team first: the presented key names its team and key id
(``cbk.<team id>.<key id>.<secret>``), so the lookup is a primary-key read on
``(team_id, id)`` that a sharded PostgreSQL routes to one shard. Only the
SHA-256 of the whole key is stored; the key itself is shown once.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, PrimaryKeyConstraint, String, Table

from creditbook.adapters.db.tables import Credits, UTCDateTime, metadata, one_of

KEY_KINDS = ("personal", "service")

api_keys = Table(
    "api_keys",
    metadata,
    Column("team_id", String(40), nullable=False),
    Column("id", String(40), nullable=False),
    Column("member_id", String(40), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("label", String(100), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("monthly_cap", Credits, nullable=True),
    Column("kind", String(16), nullable=False, server_default=KEY_KINDS[0]),
    PrimaryKeyConstraint("team_id", "id"),
    CheckConstraint("length(key_hash) = 64", name="hash_length"),
    CheckConstraint("monthly_cap is null or monthly_cap >= 0", name="cap_not_negative"),
    CheckConstraint(one_of("kind", KEY_KINDS), name="kind"),
)

team_access = Table(
    "team_access",
    metadata,
    Column("team_id", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("team_id"),
    CheckConstraint("status in ('active', 'suspended')", name="status"),
)
