"""Rate limits over the ``limits`` library: per API key, member and team, per client address.

What is counted (settings in ``config.py``, defaults in brackets):

- every request made with a team API key, three times: against its key [20 per
  2 s, lemlist's limit], its member (all the member's keys together) [the key's
  limit: a second key gives a member no more; while the member's limit is no
  larger than the key's, the key's own count is implied and not kept] and its
  team [ten times the key's].
  Keys listed in ``rate_limit_exempt_keys`` (the platform's service keys) count
  against nothing;
- failed authentications (an unknown or revoked API key, a refused sign-in key or
  link) per client address [10 per minute]; an address past it is refused before
  its next key is looked up in the database;
- sign-in link requests, per client address and per email address [5 per 15
  minutes each]: each sends a mail and writes a row;
- dashboard CSV exports per member [10 per minute].

Each limit is a moving window: at most N hits in any span of the window, and a
refused hit counts nothing. Beyond a limit the caller gets ``RateLimited`` (429
``rate_limited``) with ``retry_after``: the seconds until the oldest hit of the
window expires.

The counters live in ``rate_limit_storage``: ``memory://`` (the default) keeps
them in this process, so N server processes give every key up to N times its
rate; ``redis://host:port/db`` shares them between processes (Redis keys under
``rate_limit_prefix``, so that deployments can share one Redis). In memory the
library's synchronous storage is called on the event loop (a few dictionary
updates: microseconds, on the API's hot path); Redis is reached through its
asyncio client, so a round trip never blocks the loop, and within
``SHARED_TIMEOUT_SECONDS``. When Redis fails, the counting falls back to this
process's memory for ``SHARED_RETRY_SECONDS`` and says so in the log, at most
once a minute: the API stays up and each process still limits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio.from_thread
from limits import RateLimitItem, RateLimitItemPerSecond, parse
from limits import strategies as sync_strategies
from limits.aio import strategies as aio_strategies
from limits.errors import StorageError
from limits.storage import MemoryStorage, storage_from_string
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from creditbook.config import Settings
from creditbook.domain.errors import RateLimited

log = logging.getLogger("creditbook.rate_limits")
TEAM_TIMES_KEY = 10  # a team's default limit, in keys' limits
SHARED_TIMEOUT_SECONDS = 0.5  # to connect to Redis, and for each answer
SHARED_RETRY_SECONDS = 5.0  # after a failure, count in memory this long before trying again
_WARN_EVERY_SECONDS = 60.0


def _window(amount: int, seconds: int) -> RateLimitItem:
    return RateLimitItemPerSecond(amount, seconds)


def _words(item: RateLimitItem, what: str) -> str:
    """``20 requests per 2 s``, ``5 sign-in link requests per 15 minutes``."""
    unit = item.GRANULARITY.name
    if unit == "second":
        return f"{item.amount} {what} per {item.multiples} s"
    if item.multiples == 1:
        return f"{item.amount} {what} per {unit}"
    return f"{item.amount} {what} per {item.multiples} {unit}s"


class RateLimits:
    """The limits of one application (API and dashboard), over one storage."""

    def __init__(self, settings: Settings) -> None:
        window = settings.rate_limit_window_seconds
        key_requests = settings.rate_limit_requests
        self.key = _window(key_requests, window)
        self.member = _window(settings.rate_limit_member_requests or key_requests, window)
        self.team = _window(
            settings.rate_limit_team_requests or TEAM_TIMES_KEY * key_requests, window
        )
        # A key's requests are its member's too: with a member limit no larger than the
        # key's (the default), the key's own window could never refuse, so it is not kept.
        self.count_keys = self.member.amount > self.key.amount
        self.failed_auth = parse(settings.rate_limit_failed_auth)
        self.signin_links = parse(settings.rate_limit_signin_links)
        self.exports = parse(settings.rate_limit_exports)
        self.exempt_keys = frozenset(
            k.strip() for k in settings.rate_limit_exempt_keys.split(",") if k.strip()
        )
        self.storage_uri = settings.rate_limit_storage
        self.prefix = settings.rate_limit_prefix
        self._fallback = sync_strategies.MovingWindowRateLimiter(MemoryStorage())
        # memory:// is counted synchronously, in place; otherwise a shared storage.
        self._memory = self._fallback if self.storage_uri.startswith("memory") else None
        self._shared = None if self._memory is not None else self._open_shared()
        self._shared_loop: asyncio.AbstractEventLoop | None = None
        self._shared_down_until = float("-inf")
        self._warned_at = float("-inf")

    # ---- what the entrypoints count ----------------------------------------------------

    async def count_request(self, team_id: str, member_id: str, key_id: str) -> None:
        """One request of a team key: its key, its member, its team (in that order)."""
        if key_id in self.exempt_keys:
            return
        if self.count_keys and not await self._hit(self.key, "key", key_id):
            await self._refuse(self.key, "requests", "this API key", "key", key_id)
        if not await self._hit(self.member, "member", team_id, member_id):
            whose = "this API key's member (all of the member's keys together)"
            await self._refuse(self.member, "requests", whose, "member", team_id, member_id)
        if not await self._hit(self.team, "team", team_id):
            await self._refuse(self.team, "requests", "this team", "team", team_id)

    async def refuse_failing_address(self, address: str) -> None:
        """Refuse ``address`` if it failed to authenticate too often (counts nothing)."""
        if not await self._test(self.failed_auth, "auth-failed", address):
            what, whose = "failed authentications", "this client address"
            await self._refuse(self.failed_auth, what, whose, "auth-failed", address)

    async def count_failed_authentication(self, address: str) -> None:
        """An unknown or revoked key, a refused sign-in: counts against ``address``."""
        await self._hit(self.failed_auth, "auth-failed", address)

    async def count_signin_link(self, address: str, email: str) -> None:
        """A sign-in link request: against the client address, then the email address."""
        what = "sign-in link requests"
        if not await self._hit(self.signin_links, "links-from", address):
            await self._refuse(
                self.signin_links, what, "this client address", "links-from", address
            )
        mailbox = email.strip().lower()[:320]
        if not await self._hit(self.signin_links, "links-to", mailbox):
            await self._refuse(self.signin_links, what, "this email address", "links-to", mailbox)

    async def count_export(self, team_id: str, member_id: str) -> None:
        """A dashboard CSV export: against the member who asks for it."""
        if not await self._hit(self.exports, "exports", team_id, member_id):
            await self._refuse(self.exports, "CSV exports", "you", "exports", team_id, member_id)

    def blocking(self, count: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        """Call ``count(*args)`` from a worker thread of the event loop (a sync route)."""
        anyio.from_thread.run(count, *args)

    # ---- over the storage ------------------------------------------------------------------

    def _in_memory(self) -> sync_strategies.MovingWindowRateLimiter | None:
        """The in-process counters, when they are the ones to use now."""
        if self._memory is not None:
            return self._memory
        if time.monotonic() < self._shared_down_until:
            return self._fallback
        return None

    async def _hit(self, item: RateLimitItem, *ids: str) -> bool:
        memory = self._in_memory()
        if memory is not None:
            return memory.hit(item, *ids)
        try:
            return await self._shared_limiter().hit(item, *ids)
        except StorageError as exc:
            self._storage_failed(exc)
            return self._fallback.hit(item, *ids)

    async def _test(self, item: RateLimitItem, *ids: str) -> bool:
        memory = self._in_memory()
        if memory is not None:
            return memory.test(item, *ids)
        try:
            return await self._shared_limiter().test(item, *ids)
        except StorageError as exc:
            self._storage_failed(exc)
            return self._fallback.test(item, *ids)

    async def _retry_after(self, item: RateLimitItem, *ids: str) -> float:
        memory = self._in_memory()
        if memory is not None:
            reset = memory.get_window_stats(item, *ids).reset_time
        else:
            try:
                reset = (await self._shared_limiter().get_window_stats(item, *ids)).reset_time
            except StorageError as exc:
                self._storage_failed(exc)
                reset = self._fallback.get_window_stats(item, *ids).reset_time
        return max(0.001, reset - time.time())

    async def _refuse(self, item: RateLimitItem, what: str, whose: str, *ids: str) -> None:
        wait = await self._retry_after(item, *ids)
        raise RateLimited(
            f"rate limit of {_words(item, what)} reached for {whose}; retry after {wait:.2f} s",
            retry_after=round(wait, 3),
        )

    def _open_shared(self) -> aio_strategies.MovingWindowRateLimiter:
        storage = storage_from_string(
            f"async+{self.storage_uri}",
            implementation="redispy",
            key_prefix=self.prefix,
            wrap_exceptions=True,
            # A Redis that hangs must not hold requests: fail fast, count in memory.
            socket_connect_timeout=SHARED_TIMEOUT_SECONDS,
            socket_timeout=SHARED_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),  # type: ignore[arg-type]
        )
        return aio_strategies.MovingWindowRateLimiter(storage)

    def _shared_limiter(self) -> aio_strategies.MovingWindowRateLimiter:
        # The asyncio client's connections belong to the loop that opened them: one
        # storage per loop (a server has one; a test may run an app on several).
        loop = asyncio.get_running_loop()
        if self._shared is None or self._shared_loop is not loop:
            if self._shared_loop is not None:
                self._shared = self._open_shared()
            self._shared_loop = loop
        assert self._shared is not None
        return self._shared

    def _storage_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self._shared_down_until = now + SHARED_RETRY_SECONDS
        if now - self._warned_at >= _WARN_EVERY_SECONDS:
            self._warned_at = now
            log.error(
                "rate-limit storage %s failed (%s); counting in this process until it answers",
                self.storage_uri.rsplit("@", 1)[-1],
                exc,
            )


def client_address(scope: Any) -> str:
    """The client's address as the server saw it (behind a proxy: see docs/operations.md)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
