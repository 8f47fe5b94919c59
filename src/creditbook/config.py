"""Settings: one object read from ``CREDITBOOK_*`` environment variables.

In production (``CREDITBOOK_ENV=production``) unsafe defaults are refused:
SQLite, a missing operator key, the manual payment provider, a missing public
URL. Serving the API outside ``development`` also needs a strong operator key
(``check_served``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditbook.domain.errors import InvalidInput

MIN_SECRET_LENGTH = 32
# What absolute URLs are made from when no public URL is set outside production:
# the address `creditbook serve` listens on by default.
DEFAULT_LOCAL_URL = "http://127.0.0.1:8000"
# Host names a non-production server also answers for: the local machine, and
# the name Starlette's TestClient sends.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "testserver")


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
    # (an async connection) rather than on the committer thread (decision
    # 0008). False: the committer thread.
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
    # Enrichment job leases (docs/reliability.md): a running job belongs to its
    # runner while the runner's heartbeat is younger than this; after it, the
    # server's periodic check pauses the job (reason ``interrupted``) and a
    # resume takes it over. Runners renew every third of it.
    job_orphan_seconds: int = Field(default=60, ge=1, le=86_400)

    # Safe to expose (issue 22). The public address (scheme://host[:port]) that
    # every absolute URL the engine makes starts with: sign-in links never take
    # their host from the request. Required in production; `creditbook serve`
    # defaults it to its own address elsewhere. Requests for any other host are
    # refused, except the comma-separated extra names of ``allowed_hosts``
    # (``*.example.com`` patterns allowed). ``secure_cookies``: mark the
    # dashboard's cookie ``Secure``; None: when the public URL is https.
    public_url: str | None = None
    allowed_hosts: str = ""
    secure_cookies: bool | None = None

    @field_validator("public_url")
    @classmethod
    def _public_url_is_an_origin(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        raw = value.strip()
        try:
            parts = urlsplit(raw)
            port = parts.port
        except ValueError:
            parts, port = None, None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise InvalidInput(
                f"CREDITBOOK_PUBLIC_URL must be the server's public origin, "
                f"scheme://host[:port] with http or https and no path, such as "
                f"https://credits.example.com; got {raw!r}",
                field="public_url",
            )
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, value: str) -> str:
        for pattern in _host_list(value):
            wildcard = pattern.startswith("*.") and "*" not in pattern[1:]
            if pattern != "*" and "*" in pattern and not wildcard:
                raise InvalidInput(
                    f"CREDITBOOK_ALLOWED_HOSTS takes host names, '*.example.com' "
                    f"patterns or '*' (any host); got {pattern!r}",
                    field="allowed_hosts",
                )
        return value

    # Database outages (docs/decisions/0011): the Retry-After of a 503
    # ``database_unavailable``; how long a SQLite writer waits for a locked file
    # and a PostgreSQL connect for an answer before the database counts as
    # unavailable; how often the log sums up refused requests (the first of each
    # interval is logged, then one line "N requests refused: database unavailable").
    database_retry_after_seconds: int = Field(2, ge=1, le=3600)
    database_busy_timeout_seconds: float = Field(30.0, gt=0, le=600)
    database_connect_timeout_seconds: int = Field(10, ge=1, le=600)
    outage_log_interval_seconds: float = Field(10.0, ge=0.1, le=3600)

    # The outbound-URL guard (adapters/net/guard.py, docs/security.md): a team's
    # webhook URL may not point at a loopback, private, link-local, multicast,
    # reserved or unspecified address, at save time and at send time; https is
    # required outside development. True turns the address checks off so that
    # development and tests can post to a local receiver. `creditbook serve`
    # reads it here, the library (`creditbook.open`) through OutboundSettings.
    webhook_allow_private: bool = False

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
    # Upgrades an operator can trust (issue 28, adapters/db/migrate.py): how long a
    # migration waits for a lock on PostgreSQL (a reader's open transaction) before it
    # gives up, naming the sessions that hold it, rather than queueing every later
    # query behind it; on SQLite, how long `creditbook db` commands wait for another
    # process's write lock.
    migration_lock_timeout_seconds: float = Field(5.0, gt=0, le=3600)

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
        if self.weak_operator_key:
            problems.append("CREDITBOOK_OPERATOR_KEY must be set (32+ characters)")
        if self.payment_provider == "manual":
            problems.append("CREDITBOOK_PAYMENT_PROVIDER=manual grants credits without payment")
        if not self.secret_key or len(self.secret_key) < MIN_SECRET_LENGTH:
            problems.append("CREDITBOOK_SECRET_KEY must be set (32+ characters)")
        if not self.public_url:
            problems.append(
                "CREDITBOOK_PUBLIC_URL must be set (the https://host users reach; "
                "sign-in links are made from it)"
            )
        if problems:
            raise InvalidInput("unsafe production settings: " + "; ".join(problems))
        return self

    @property
    def weak_operator_key(self) -> bool:
        """No operator key, or one shorter than 32 characters."""
        return not self.operator_key or len(self.operator_key) < MIN_SECRET_LENGTH

    def check_served(self) -> None:
        """Refuse to serve the API with a weak or missing operator key, except in development."""
        if self.env != "development" and self.weak_operator_key:
            raise InvalidInput(
                f"CREDITBOOK_OPERATOR_KEY must be set (32+ characters) to serve the API "
                f"with CREDITBOOK_ENV={self.env}; only CREDITBOOK_ENV=development serves "
                "with a short or missing operator key",
                field="operator_key",
            )

    def served_at(self, host: str, port: int) -> Settings:
        """These settings with the public URL defaulted to ``http://host:port`` if unset."""
        if self.public_url:
            return self
        if host in ("0.0.0.0", "", "::"):  # every interface: name the local one
            host = "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        return self.model_copy(update={"public_url": f"http://{shown}:{port}"})

    @property
    def origin(self) -> str:
        """Where absolute URLs start: the public URL (a local default outside production)."""
        return self.public_url or DEFAULT_LOCAL_URL

    @property
    def https(self) -> bool:
        return self.origin.startswith("https://")

    @property
    def cookies_secure(self) -> bool:
        return self.https if self.secure_cookies is None else self.secure_cookies

    def host_names(self) -> list[str]:
        """The Host header values (without port) the server answers for."""
        public = urlsplit(self.origin).hostname or ""
        # Starlette compares an IPv6 literal with its brackets.
        named = f"[{public}]" if ":" in public else public
        local = list(LOCAL_HOSTS) if self.env != "production" else []
        return list(dict.fromkeys([named, *_host_list(self.allowed_hosts), *local]))


def _host_list(value: str) -> list[str]:
    return [h.strip().lower() for h in value.split(",") if h.strip()]


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


class MigrationSettings(BaseSettings):
    """The settings of ``creditbook db`` alone: it runs without the server's production checks.

    An operator upgrades, checks and backs up a database before the rest of the
    server's settings are in place; only the lock timeout is read (the same
    ``CREDITBOOK_MIGRATION_LOCK_TIMEOUT_SECONDS`` as ``Settings``).
    """

    model_config = SettingsConfigDict(env_prefix="CREDITBOOK_", extra="ignore")

    migration_lock_timeout_seconds: float = Field(5.0, gt=0, le=3600)


class EngineSettings(BaseSettings):
    """What ``creditbook.open`` reads itself, without the server's ``Settings`` checks.

    The payment provider and its Stripe keys (the provider factory validates
    them), and group commit for every engine of the process: on when
    ``CREDITBOOK_GROUP_COMMIT`` is set true (None: not set, off for the
    library; ``creditbook serve`` reads ``Settings.group_commit``, on by default).
    """

    model_config = SettingsConfigDict(env_prefix="CREDITBOOK_", extra="ignore")

    payment_provider: str = "manual"
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    stripe_webhook_tolerance_seconds: str | None = None
    stripe_max_network_retries: str | None = None
    group_commit: bool | None = None

    def payment_settings(self) -> dict[str, str]:
        """The provider factory's settings: the Stripe keys that are set."""
        names = (
            "stripe_api_key",
            "stripe_webhook_secret",
            "stripe_api_base",
            "stripe_webhook_tolerance_seconds",
            "stripe_max_network_retries",
        )
        return {name: value for name in names if (value := getattr(self, name)) is not None}
