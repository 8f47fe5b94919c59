"""Tables of the enrichment area (issue 6): jobs, their leads and items, the lead cache.

A job is ``leads x features``; each (lead, feature) is one item row whose
``state`` moves ``pending -> held -> done`` (or ``error`` / ``cancelled``).
The item's state changes in the same transaction as the ledger movement it
stands for (the hold, then the capture or release), so after a crash the item
table and the ledger always agree: that is what makes charging exactly once.
Every primary key starts with ``team_id``.
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

JOB_STATUSES = ("queued", "running", "paused", "completed", "cancelled")
ITEM_STATES = ("pending", "held", "done", "error", "cancelled")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


enrichment_jobs = Table(
    "enrichment_jobs",
    metadata,
    Column("team_id", String(40), nullable=False),
    Column("id", String(40), nullable=False),
    Column("kind", String(16), nullable=False, default="job"),
    Column("status", String(16), nullable=False),
    Column("pause_reason", String(32), nullable=True),
    Column("member_id", String(40), nullable=True),
    Column("api_key_id", String(40), nullable=True),
    Column("features", JSON, nullable=False),
    Column("provider", String(64), nullable=True),
    Column("credit_limit", BigInteger, nullable=True),
    Column("sample_size", Integer, nullable=True),
    Column("estimate_only", Boolean, nullable=False, default=False),
    Column("sample_done", Boolean, nullable=False, default=False),
    Column("sample_stats", JSON, nullable=True),
    Column("leads", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("processed", Integer, nullable=False, default=0),
    Column("found", Integer, nullable=False, default=0),
    Column("errors", Integer, nullable=False, default=0),
    Column("credits_spent", BigInteger, nullable=False, default=0),
    Column("credits_needed", BigInteger, nullable=True),
    Column("max_credits", BigInteger, nullable=False),
    Column("expected_credits", BigInteger, nullable=True),
    Column("runner", String(40), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("heartbeat_at", UTCDateTime(), nullable=True),
    # A retried creation (HTTP Idempotency-Key) finds its first job here.
    Column("idempotency_key", String(255), nullable=True),
    Column("request_hash", String(64), nullable=True),
    PrimaryKeyConstraint("team_id", "id"),
    UniqueConstraint("team_id", "idempotency_key", name="uq_enrichment_jobs_team_key"),
    CheckConstraint(f"status in ({_in(JOB_STATUSES)})", name="status"),
    CheckConstraint("processed >= 0 and processed <= total", name="processed_within_total"),
    CheckConstraint("credits_spent >= 0", name="spent_not_negative"),
    CheckConstraint("credit_limit is null or credit_limit >= 0", name="limit_not_negative"),
)
Index("ix_enrichment_jobs_status", enrichment_jobs.c.status, enrichment_jobs.c.team_id)

enrichment_leads = Table(
    "enrichment_leads",
    metadata,
    Column("team_id", String(40), nullable=False),
    Column("job_id", String(40), nullable=False),
    Column("lead_index", Integer, nullable=False),
    Column("data", JSON, nullable=False),
    PrimaryKeyConstraint("team_id", "job_id", "lead_index"),
)

enrichment_items = Table(
    "enrichment_items",
    metadata,
    Column("team_id", String(40), nullable=False),
    Column("job_id", String(40), nullable=False),
    Column("lead_index", Integer, nullable=False),
    Column("feature", String(64), nullable=False),
    Column("fingerprint", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("hold_id", String(40), nullable=True),
    Column("outcome", String(64), nullable=True),
    Column("value", Text, nullable=True),
    Column("data", JSON, nullable=True),
    Column("credits", BigInteger, nullable=False, default=0),
    Column("provider", String(64), nullable=True),
    Column("error_code", String(32), nullable=True),
    Column("error", Text, nullable=True),
    PrimaryKeyConstraint("team_id", "job_id", "lead_index", "feature"),
    CheckConstraint(f"state in ({_in(ITEM_STATES)})", name="state"),
    CheckConstraint("(state = 'held') = (hold_id is not null)", name="held_iff_hold"),
    CheckConstraint("credits >= 0", name="credits_not_negative"),
)
# Partial indexes: a job's pending items in order (the runner's queue), its held
# items (reconciliation) and its errors (status); done items, the bulk of a
# finished job, are in none of them, so settling an item is a primary-key update.
for _state in ("pending", "held", "error"):
    Index(
        f"ix_enrichment_items_{_state}",
        enrichment_items.c.team_id,
        enrichment_items.c.job_id,
        enrichment_items.c.lead_index,
        postgresql_where=enrichment_items.c.state == _state,
        sqlite_where=enrichment_items.c.state == _state,
    )


enrichment_lead_cache = Table(
    "enrichment_lead_cache",
    metadata,
    Column("team_id", String(40), nullable=False),
    Column("fingerprint", String(32), nullable=False),
    Column("feature", String(64), nullable=False),
    Column("outcome", String(64), nullable=False),
    Column("value", Text, nullable=True),
    Column("data", JSON, nullable=True),
    Column("provider", String(64), nullable=True),
    Column("credits", BigInteger, nullable=False),
    Column("job_id", String(40), nullable=True),
    Column("cached_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("team_id", "fingerprint", "feature"),
)

enrichment_settings = Table(
    "enrichment_settings",
    metadata,
    Column("team_id", String(40), nullable=False),
    Column("auto_resume", Boolean, nullable=False, default=False),
    Column("dedupe_window_days", Integer, nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("team_id"),
    CheckConstraint(
        "dedupe_window_days is null or dedupe_window_days >= 0", name="window_not_negative"
    ),
)
