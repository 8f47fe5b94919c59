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
    # Request bodies (issue 22): the most bytes a body may have, counted as it streams in,
    # before anything parses it (413 payload_too_large); see entrypoints/api/body_limits.py.
    # JSON routes; enrichment job uploads (POST /v1/enrichment-jobs, the dashboard's CSV
    # file); the Stripe webhook (read before its signature is checked); dashboard forms.
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_webhook_bytes: int = Field(256 * 1024, ge=1024)
    max_form_bytes: int = Field(64 * 1024, ge=1024)
    # Rate limits (issue 22), beside the key's (rate_limit_requests per window, above); see
    # adapters/rate_limits.py. Storage: memory:// counts in this process (N processes: N
    # times the rates); redis://host:port/db shares the counters between processes.
    rate_limit_storage: str = "memory://"
    rate_limit_prefix: str = Field("creditbook", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    # Per member (all of the member's keys together) and per team, per window;
    # None: the key's limit for a member, ten times it for a team.
    rate_limit_member_requests: int | None = Field(None, ge=1)
    rate_limit_team_requests: int | None = Field(None, ge=1)
    # Written as the limits library parses them ("10/minute", "5 per 15 minutes").
    # Failed authentications per client address; beyond it the address is refused
    # before its keys are looked up. Sign-in link requests per client address and per
    # email address. Dashboard CSV exports per member.
    rate_limit_failed_auth: str = "10/minute"
    rate_limit_signin_links: str = "5/15 minutes"
    rate_limit_exports: str = "10/minute"

    @field_validator("rate_limit_failed_auth", "rate_limit_signin_links", "rate_limit_exports")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            amount = parse(value).amount
        except ValueError:
            amount = 0
        if amount < 1:
            raise ValueError(
                f"{value!r} is not a rate limit: write it as '10/minute' or '5 per 15 minutes'"
            )
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _rate_limit_storage(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in ("memory", "redis", "rediss", "redis+unix"):
            raise ValueError(
                f"{value!r} is not a rate-limit storage: memory:// or redis://host:port/db"
            )
        return value

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
