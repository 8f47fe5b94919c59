"""Settings: one object read from ``CREDITBOOK_*`` environment variables.

In production (``CREDITBOOK_ENV=production``) unsafe defaults are refused:
SQLite, a missing operator key, the manual payment provider.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import field_validator, model_validator
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
    # The outbound-URL guard (adapters/net/guard.py, docs/security.md): a team's
    # webhook URL may not point at a loopback, private, link-local, multicast,
    # reserved or unspecified address, at save time and at send time; https is
    # required outside development. True turns the address checks off so that
    # development and tests can post to a local receiver. `creditbook serve`
    # reads it here, the library (`creditbook.open`) through OutboundSettings.
    webhook_allow_private: bool = False

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


class OutboundSettings(BaseSettings):
    """The outbound-URL guard's settings alone, as ``creditbook.open`` reads them.

    The library opens without the server's ``Settings`` (and their production
    checks), so the two fields the guard needs are read here the same way:
    ``CREDITBOOK_ENV`` (https required unless ``development``) and
    ``CREDITBOOK_WEBHOOK_ALLOW_PRIVATE``.
    """

    model_config = SettingsConfigDict(env_prefix="CREDITBOOK_", extra="ignore")

    env: str = "development"
    webhook_allow_private: bool = False
