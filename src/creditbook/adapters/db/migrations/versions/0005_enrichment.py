"""Enrichment jobs, job items and the lead cache (issue 6).

Revision ID: 0005_enrichment
Revises: 0004_purchases
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_enrichment"
down_revision = "0004_purchases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enrichment_jobs",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pause_reason", sa.String(length=32), nullable=True),
        sa.Column("member_id", sa.String(length=40), nullable=True),
        sa.Column("api_key_id", sa.String(length=40), nullable=True),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("credit_limit", sa.BigInteger(), nullable=True),
        sa.Column("sample_size", sa.Integer(), nullable=True),
        sa.Column("estimate_only", sa.Boolean(), nullable=False),
        sa.Column("sample_done", sa.Boolean(), nullable=False),
        sa.Column("sample_stats", sa.JSON(), nullable=True),
        sa.Column("leads", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("found", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("credits_spent", sa.BigInteger(), nullable=False),
        sa.Column("credits_needed", sa.BigInteger(), nullable=True),
        sa.Column("max_credits", sa.BigInteger(), nullable=False),
        sa.Column("expected_credits", sa.BigInteger(), nullable=True),
        sa.Column("runner", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.UniqueConstraint("team_id", "idempotency_key", name="uq_enrichment_jobs_team_key"),
        sa.CheckConstraint(
            "status in ('queued', 'running', 'paused', 'completed', 'cancelled')",
            name=op.f("ck_enrichment_jobs_status"),
        ),
        sa.CheckConstraint(
            "credit_limit is null or credit_limit >= 0",
            name=op.f("ck_enrichment_jobs_limit_not_negative"),
        ),
        sa.CheckConstraint(
            "credits_spent >= 0", name=op.f("ck_enrichment_jobs_spent_not_negative")
        ),
        sa.CheckConstraint(
            "processed >= 0 and processed <= total",
            name=op.f("ck_enrichment_jobs_processed_within_total"),
        ),
        sa.PrimaryKeyConstraint("team_id", "id", name=op.f("pk_enrichment_jobs")),
    )
    op.create_index(
        "ix_enrichment_jobs_status", "enrichment_jobs", ["status", "team_id"], unique=False
    )
    op.create_table(
        "enrichment_leads",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("lead_index", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint(
            "team_id", "job_id", "lead_index", name=op.f("pk_enrichment_leads")
        ),
    )
    op.create_table(
        "enrichment_items",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("lead_index", sa.Integer(), nullable=False),
        sa.Column("feature", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("hold_id", sa.String(length=40), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(state = 'held') = (hold_id is not null)",
            name=op.f("ck_enrichment_items_held_iff_hold"),
        ),
        sa.CheckConstraint(
            "state in ('pending', 'held', 'done', 'error', 'cancelled')",
            name=op.f("ck_enrichment_items_state"),
        ),
        sa.CheckConstraint("credits >= 0", name=op.f("ck_enrichment_items_credits_not_negative")),
        sa.PrimaryKeyConstraint(
            "team_id", "job_id", "lead_index", "feature", name=op.f("pk_enrichment_items")
        ),
    )
    for state in ("pending", "held", "error"):
        op.create_index(
            f"ix_enrichment_items_{state}",
            "enrichment_items",
            ["team_id", "job_id", "lead_index"],
            unique=False,
            postgresql_where=sa.text(f"state = '{state}'"),
            sqlite_where=sa.text(f"state = '{state}'"),
        )
    op.create_table(
        "enrichment_lead_cache",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("feature", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.Column("cached_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "team_id", "fingerprint", "feature", name=op.f("pk_enrichment_lead_cache")
        ),
    )
    op.create_table(
        "enrichment_settings",
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("auto_resume", sa.Boolean(), nullable=False),
        sa.Column("dedupe_window_days", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "dedupe_window_days is null or dedupe_window_days >= 0",
            name=op.f("ck_enrichment_settings_window_not_negative"),
        ),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_enrichment_settings")),
    )


def downgrade() -> None:
    op.drop_table("enrichment_settings")
    op.drop_table("enrichment_lead_cache")
    for state in ("error", "held", "pending"):
        op.drop_index(f"ix_enrichment_items_{state}", table_name="enrichment_items")
    op.drop_table("enrichment_items")
    op.drop_table("enrichment_leads")
    op.drop_index("ix_enrichment_jobs_status", table_name="enrichment_jobs")
    op.drop_table("enrichment_jobs")
