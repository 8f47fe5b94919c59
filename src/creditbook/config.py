"""Settings: one object read from ``CREDITBOOK_*`` environment variables.

In production (``CREDITBOOK_ENV=production``) unsafe defaults are refused:
SQLite, a missing operator key, the manual payment provider.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditbook.domain.errors import InvalidInput


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDITBOOK_", extra="ignore")

    env: str = "development"
    database_url: str | None = None
    catalog: Path | None = None
    operator_key: str | None = None
    payment_provider: str = "manual"
    stripe_api_key: str | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: str | None = None
    secret_key: str | None = None
    # Coalesce concurrent charges, holds, captures and releases into one
    # transaction per batch in `creditbook serve` (docs/decisions/0008).
    group_commit: bool = True
    # On PostgreSQL, run the HTTP requests' batches on the server's event loop
    # (an async connection) rather than on the committer thread (decision 0008,
    # seventh pass). False: the thread, as before.
    group_commit_on_loop: bool = True
    rate_limit_requests: int = 20
    rate_limit_window_seconds: int = 2
    # Comma-separated API key ids (``key_...``) exempt from the rate limit (service keys).
    rate_limit_exempt_keys: str = ""
    # ``GET /v1/noop`` (no database work, for benchmarks); None: on unless production.
    api_noop: bool | None = None
    # Enrichment jobs (issue 6): provider waterfalls (TOML/JSON file, see
    # adapters/providers/config.py; the sandbox when unset), provider calls in
    # flight per job, items per charging transaction, dedupe window in days.
    enrichment_providers: Path | None = None
    enrichment_concurrency: int = 32
    enrichment_chunk_size: int = 500
    enrichment_dedupe_days: int = 30
    # Database outages (docs/decisions/0010): the Retry-After of a 503
    # ``database_unavailable``; how long a SQLite writer waits for a locked file
    # and a PostgreSQL connect for an answer before the database counts as
    # unavailable; how often the log sums up refused requests (the first of each
    # interval is logged, then one line "N requests refused: database unavailable").
    database_retry_after_seconds: int = Field(2, ge=1, le=3600)
    database_busy_timeout_seconds: float = Field(30.0, gt=0, le=600)
    database_connect_timeout_seconds: int = Field(10, ge=1, le=600)
    outage_log_interval_seconds: float = Field(10.0, ge=0.1, le=3600)

    @field_validator("env")
    @classmethod
    def _known_env(cls, value: str) -> str:
        if value not in ("development", "test", "production"):
            raise ValueError("env must be development, test or production")
        return value

    @model_validator(mode="after")
    def _safe_in_production(self) -> Settings:
        if self.env != "production":
            return self
        problems = []
        if not self.database_url or self.database_url.startswith("sqlite"):
            problems.append("CREDITBOOK_DATABASE_URL must point at PostgreSQL")
        if not self.operator_key or len(self.operator_key) < 32:
            problems.append("CREDITBOOK_OPERATOR_KEY must be set (32+ characters)")
        if self.payment_provider == "manual":
            problems.append("CREDITBOOK_PAYMENT_PROVIDER=manual grants credits without payment")
        if not self.secret_key or len(self.secret_key) < 32:
            problems.append("CREDITBOOK_SECRET_KEY must be set (32+ characters)")
        if problems:
            raise InvalidInput("unsafe production settings: " + "; ".join(problems))
        return self
