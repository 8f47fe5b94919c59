"""SQLAlchemy Core tables: the ledger's schema and its money rules as constraints.

Every primary key starts with ``team_id`` (the distribution key). The money
rules live here a second time, so a write made around the code is refused:
``remaining >= 0``, ``reserved <= remaining``, positive amounts, one use per
idempotency key and team, a closed set of accounts and statuses. Triggers
(see ``triggers.py``) make the ledger append-only and, on PostgreSQL, check
at commit that every entry's postings sum to zero.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


def one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK's text: ``column`` holds one of ``values``, as equalities joined by OR.

    Not ``column in (...)``: SQLite runs an IN list of three or more values by
    filling a temporary table each time the statement runs, and ``executemany``
    runs the INSERT once per row. That cost 2 to 2.5 us for every entry and every
    posting written, about a tenth of a charge in ``charge_many`` (decision
    0008). The meaning is the same on both databases; migration 0009
    rewrote the IN lists of the ledger's tables.
    """
    return " or ".join(f"{column} = '{value}'" for value in values)


GRANT_CATEGORIES = ("free", "purchased")
GRANT_SOURCES = ("trial", "plan", "allowance", "purchase", "gift", "adjustment")
GRANT_BUCKETS = ("trial", "subscription", "calling", "gifted", "purchased")
HOLD_STATUSES = ("active", "captured", "released", "expired")
ENTRY_KINDS = ("grant", "hold", "capture", "release", "charge", "attempt", "expire", "revoke")
ACCOUNTS = ("issued", "available", "held", "used", "expired", "revoked")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} refused: creditbook stores UTC instants")
        value = value.astimezone(UTC)
        # SQLite keeps text; naive UTC text compares correctly in SQL.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _id(name: str, **kw: Any) -> Column[str]:
    return Column(name, String(40), **kw)


Credits = BigInteger

teams = Table(
    "teams",
    metadata,
    _id("id", primary_key=True),
    Column("name", String(200), nullable=False),
    Column("time_zone", String(64), nullable=False, server_default="UTC"),
    Column("created_at", UTCDateTime(), nullable=False),
    # The earliest instant at which something is due: a hold's TTL, a grant's
    # expiry, a period boundary. Reads before it need no catch-up.
    Column("due_at", UTCDateTime(), nullable=True),
    Column("settings", JSON, nullable=False, default=dict),
)

members = Table(
    "members",
    metadata,
    _id("team_id", nullable=False),
    _id("id", nullable=False),
    Column("email", String(320), nullable=False),
    Column("role", String(16), nullable=False),
    Column("monthly_cap", Credits, nullable=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("team_id", "id"),
    UniqueConstraint("team_id", "email", name="uq_members_team_email"),
    CheckConstraint("role in ('admin', 'member')", name="role"),
    CheckConstraint("monthly_cap is null or monthly_cap >= 0", name="cap_not_negative"),
)

grants = Table(
    "grants",
    metadata,
    _id("team_id", nullable=False),
    _id("id", nullable=False),
    Column("source", String(16), nullable=False),
    Column("category", String(16), nullable=False),
    Column("bucket", String(16), nullable=False),
    Column("scope", JSON, nullable=True),
    Column("amount", Credits, nullable=False),
    Column("remaining", Credits, nullable=False),
    Column("reserved", Credits, nullable=False),
    Column("effective_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("origin", String(120), nullable=True),
    Column("closed", Boolean, nullable=False, default=False),
    PrimaryKeyConstraint("team_id", "id"),
    UniqueConstraint("team_id", "origin", name="uq_grants_team_origin"),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("remaining >= 0", name="remaining_not_negative"),
    CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    CheckConstraint("reserved <= remaining", name="reserved_within_remaining"),
    CheckConstraint("remaining <= amount", name="remaining_within_amount"),
    CheckConstraint(one_of("category", GRANT_CATEGORIES), name="category"),
    CheckConstraint(one_of("source", GRANT_SOURCES), name="source"),
    CheckConstraint(one_of("bucket", GRANT_BUCKETS), name="bucket"),
    CheckConstraint("expires_at is null or expires_at >= effective_at", name="expiry_after_start"),
)

holds = Table(
    "holds",
    metadata,
    _id("team_id", nullable=False),
    _id("id", nullable=False),
    Column("feature", String(64), nullable=False),
    Column("amount", Credits, nullable=False),
    Column("captured", Credits, nullable=False, default=0),
    Column("quantity", Integer, nullable=False),
    Column("unit_cost", Credits, nullable=False),
    Column("multiplier", Integer, nullable=False),
    Column("tier", String(32), nullable=True),
    Column("allocations", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("resolved_at", UTCDateTime(), nullable=True),
    _id("member_id", nullable=True),
    _id("api_key_id", nullable=True),
    _id("job_id", nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    PrimaryKeyConstraint("team_id", "id"),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("captured >= 0 and captured <= amount", name="captured_within_amount"),
    CheckConstraint(one_of("status", HOLD_STATUSES), name="status"),
    CheckConstraint("(status = 'active') = (resolved_at is null)", name="resolved_iff_not_active"),
    CheckConstraint("status = 'captured' or captured = 0", name="captured_only_when_captured"),
)
Index("ix_holds_active_expiry", holds.c.team_id, holds.c.status, holds.c.expires_at)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    _id("team_id", nullable=False),
    _id("id", nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("credits", Credits, nullable=False),
    Column("feature", String(64), nullable=True),
    Column("quantity", Integer, nullable=True),
    Column("outcome", String(64), nullable=True),
    Column("unit_cost", Credits, nullable=True),
    Column("multiplier", Integer, nullable=True),
    _id("member_id", nullable=True),
    _id("api_key_id", nullable=True),
    _id("job_id", nullable=True),
    Column("operator", String(200), nullable=True),
    _id("hold_id", nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("memo", Text, nullable=True),
    Column("meta", JSON, nullable=False, default=dict),
    PrimaryKeyConstraint("team_id", "id"),
    CheckConstraint("credits >= 0", name="credits_not_negative"),
    CheckConstraint(one_of("kind", ENTRY_KINDS), name="kind"),
)
Index("ix_ledger_entries_team_time", ledger_entries.c.team_id, ledger_entries.c.created_at)

ledger_postings = Table(
    "ledger_postings",
    metadata,
    _id("team_id", nullable=False),
    _id("entry_id", nullable=False),
    Column("seq", Integer, nullable=False),
    _id("grant_id", nullable=False),
    Column("account", String(16), nullable=False),
    Column("amount", Credits, nullable=False),
    PrimaryKeyConstraint("team_id", "entry_id", "seq"),
    CheckConstraint("amount <> 0", name="amount_not_zero"),
    CheckConstraint(one_of("account", ACCOUNTS), name="account"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    _id("team_id", nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("response", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("team_id", "key"),
    CheckConstraint("length(request_hash) = 64", name="hash_length"),
)
Index("ix_idempotency_keys_created", idempotency_keys.c.created_at)
