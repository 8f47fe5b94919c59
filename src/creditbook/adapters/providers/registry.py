"""The operator's choice of providers per feature, tried as a waterfall.

For each feature the registry holds an ordered list of providers. A lookup
tries them in order and stops at the first billable result (the catalog's
``billable_outcomes``, passed in so this module does not read the database).
When no provider gives a billable result, the best non-billable one is
returned, "best" being the earliest in the feature's outcome order
(``FEATURE_OUTCOMES``: for email_finder ``undeliverable`` beats ``unknown``
beats ``not_found``, because a verified bounce tells more than no answer);
among equals the earlier provider wins.

A provider that raises ``ProviderError`` is skipped and the waterfall goes on;
only when every provider raised does the lookup raise ``ProviderError``
(listing each failure), so the caller releases its hold instead of recording
an outcome nobody observed.

Each provider may be limited: at most ``max_concurrency`` lookups at once
(``asyncio.Semaphore``) and ``rate_per_second`` lookups per second with bursts
of ``burst`` (``TokenBucket``, with an injectable clock and sleep for tests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from creditbook.adapters.providers.base import (
    AI_VARIABLE,
    FEATURE_OUTCOMES,
    NOTHING_OUTCOME,
    Lead,
    Provider,
    ProviderError,
    Result,
)
from creditbook.domain.errors import InvalidInput, UnknownFeature

if TYPE_CHECKING:
    from creditbook.domain.catalog import Catalog

MonotonicClock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` saved up; one token per call."""

    def __init__(
        self,
        rate: float,
        capacity: int = 1,
        *,
        clock: MonotonicClock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0 or capacity < 1:
            raise ProviderError(
                f"rate limit needs rate > 0 and burst >= 1, got rate={rate}, burst={capacity}",
                rate=rate,
                burst=capacity,
            )
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(capacity)
        self._last = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self) -> bool:
        """Take a token if one is there, without waiting."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def acquire(self) -> None:
        """Wait until a token is there, then take it (callers are served in turn)."""
        async with self._lock:
            while not self.try_acquire():
                await self._sleep((1 - self._tokens) / self.rate)


class LimitedProvider:
    """A provider behind a concurrency limit and/or a rate limit."""

    def __init__(
        self,
        inner: Provider,
        *,
        max_concurrency: int | None = None,
        rate_per_second: float | None = None,
        burst: int = 1,
        clock: MonotonicClock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ProviderError(
                f"max_concurrency must be at least 1, got {max_concurrency}",
                max_concurrency=max_concurrency,
            )
        self.inner = inner
        self._semaphore = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self._bucket = (
            TokenBucket(rate_per_second, burst, clock=clock, sleep=sleep)
            if rate_per_second is not None
            else None
        )

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def feature(self) -> str:
        return self.inner.feature

    async def lookup(self, lead: Lead, *, prompt: str | None = None) -> Result:
        if self._bucket is not None:
            await self._bucket.acquire()
        if self._semaphore is None:
            return await self.inner.lookup(lead, prompt=prompt)
        async with self._semaphore:
            return await self.inner.lookup(lead, prompt=prompt)

    async def aclose(self) -> None:
        await _close(self.inner)


async def _close(provider: object) -> None:
    close = getattr(provider, "aclose", None)
    if close is not None:
        await close()


class ProviderRegistry:
    """Feature -> ordered providers, looked up as a waterfall."""

    def __init__(
        self,
        billable_outcomes: Mapping[str, Collection[str]],
        *,
        outcome_order: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._billable = {k: frozenset(v) for k, v in billable_outcomes.items()}
        self._order: dict[str, tuple[str, ...]] = dict(FEATURE_OUTCOMES)
        if outcome_order:
            self._order.update({k: tuple(v) for k, v in outcome_order.items()})
        self._providers: dict[str, list[Provider]] = {}

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> ProviderRegistry:
        """A registry (without providers) that bills what ``catalog`` bills."""
        return cls(
            {k: f.billable_outcomes for k, f in catalog.features.items()},
            outcome_order={k: f.outcomes for k, f in catalog.features.items()},
        )

    @property
    def features(self) -> list[str]:
        """The features that have at least one provider."""
        return sorted(k for k, v in self._providers.items() if v)

    def add(
        self,
        provider: Provider,
        *,
        max_concurrency: int | None = None,
        rate_per_second: float | None = None,
        burst: int = 1,
        clock: MonotonicClock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """Append ``provider`` to the waterfall of its feature, limited if asked."""
        if provider.feature not in self._billable:
            raise UnknownFeature(provider.feature, self._billable)
        if max_concurrency is not None or rate_per_second is not None:
            provider = LimitedProvider(
                provider,
                max_concurrency=max_concurrency,
                rate_per_second=rate_per_second,
                burst=burst,
                clock=clock,
                sleep=sleep,
            )
        self._providers.setdefault(provider.feature, []).append(provider)

    def providers(self, feature: str) -> list[Provider]:
        """The waterfall for ``feature``, in order."""
        return list(self._providers.get(feature, ()))

    def is_billable(self, feature: str, outcome: str) -> bool:
        return outcome in self._billable.get(feature, frozenset())

    def _rank(self, result: Result) -> int:
        order = self._order.get(result.feature, ())
        return order.index(result.outcome) if result.outcome in order else len(order)

    async def lookup(self, feature: str, lead: Lead, *, prompt: str | None = None) -> Result:
        """The first billable result of the waterfall, else the best non-billable one.

        A lead that lacks the inputs of ``feature`` gets the feature's "nothing"
        outcome (``not_found``/``failed``) without calling any provider, with
        ``data["missing"]`` naming what is missing.
        """
        if feature not in self._billable:
            raise UnknownFeature(feature, self._billable)
        chain = self._providers.get(feature)
        if not chain:
            raise ProviderError(
                f"no provider is configured for {feature}; configured features: "
                f"{', '.join(self.features) or 'none'}",
                feature=feature,
            )
        if feature == AI_VARIABLE and not (prompt and prompt.strip()):
            raise InvalidInput("ai_variable needs a non-empty prompt", feature=feature)
        missing = lead.missing_inputs(feature)
        if missing:
            return Result(
                feature=feature,
                outcome=NOTHING_OUTCOME.get(feature, "not_found"),
                data={"missing": ",".join(missing)},
                provider="registry",
            )
        best: Result | None = None
        errors: list[ProviderError] = []
        for provider in chain:
            try:
                result = await provider.lookup(lead, prompt=prompt)
            except ProviderError as exc:
                errors.append(exc)
                continue
            if self.is_billable(feature, result.outcome):
                return result
            if best is None or self._rank(result) < self._rank(best):
                best = result
        if best is not None:
            return best
        raise ProviderError(
            f"every provider for {feature} failed: "
            + "; ".join(f"{p.name}: {e.message}" for p, e in zip(chain, errors, strict=True)),
            feature=feature,
            providers=[p.name for p in chain],
        )

    async def lookup_many(
        self, feature: str, leads: Iterable[Lead], *, prompt: str | None = None
    ) -> dict[str, Result]:
        """Results by lead fingerprint; duplicate leads are looked up once."""
        unique = {lead.fingerprint(): lead for lead in leads}
        results = await asyncio.gather(
            *(self.lookup(feature, lead, prompt=prompt) for lead in unique.values())
        )
        return dict(zip(unique, results, strict=True))

    async def aclose(self) -> None:
        """Close every provider that holds connections."""
        for chain in self._providers.values():
            for provider in chain:
                await _close(provider)
