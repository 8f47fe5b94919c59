"""The waterfall: first billable answer wins, else the best non-billable; limits per provider."""

from __future__ import annotations

import asyncio

import pytest

from creditbook.adapters.providers import (
    DEFAULT_BILLABLE_OUTCOMES,
    Lead,
    LimitedProvider,
    ProviderError,
    ProviderRegistry,
    Result,
    TokenBucket,
)
from creditbook.catalog import load_catalog
from creditbook.domain.errors import InvalidInput, UnknownFeature

pytestmark = pytest.mark.anyio

ADA = Lead("Ada", "Lovelace", "Acme", "acme.example")


class ScriptedProvider:
    """Answers a fixed outcome (or raises), counting calls and concurrent lookups."""

    def __init__(
        self, name: str, outcome: str | None, feature: str = "email_finder", delay: float = 0
    ) -> None:
        self.name = name
        self.feature = feature
        self.outcome = outcome
        self.delay = delay
        self.calls = 0
        self.running = 0
        self.peak = 0

    async def lookup(self, lead: Lead, *, prompt: str | None = None) -> Result:
        self.calls += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(self.delay)
            if self.outcome is None:
                raise ProviderError(f"{self.name} is down", provider=self.name)
            return Result(self.feature, self.outcome, f"{self.name}-value", {}, self.name)
        finally:
            self.running -= 1


def _registry(*providers: ScriptedProvider) -> ProviderRegistry:
    registry = ProviderRegistry(DEFAULT_BILLABLE_OUTCOMES)
    for provider in providers:
        registry.add(provider)
    return registry


async def test_the_waterfall_stops_at_the_first_billable_result() -> None:
    first = ScriptedProvider("a", "not_found")
    second = ScriptedProvider("b", "risky")
    third = ScriptedProvider("c", "deliverable")
    result = await _registry(first, second, third).lookup("email_finder", ADA)
    assert (result.outcome, result.provider) == ("risky", "b")
    assert (first.calls, second.calls, third.calls) == (1, 1, 0)


async def test_without_a_billable_result_the_best_outcome_in_catalog_order_wins() -> None:
    chain = [
        ScriptedProvider("a", "not_found"),
        ScriptedProvider("b", "unknown"),
        ScriptedProvider("c", "undeliverable"),
        ScriptedProvider("d", "unknown"),
    ]
    result = await _registry(*chain).lookup("email_finder", ADA)
    assert (result.outcome, result.provider) == ("undeliverable", "c")
    assert all(p.calls == 1 for p in chain)


async def test_a_failing_provider_is_skipped() -> None:
    result = await _registry(
        ScriptedProvider("down", None), ScriptedProvider("up", "deliverable")
    ).lookup("email_finder", ADA)
    assert result.provider == "up"


async def test_when_every_provider_fails_the_lookup_raises_a_provider_error() -> None:
    registry = _registry(ScriptedProvider("x", None), ScriptedProvider("y", None))
    with pytest.raises(ProviderError, match="every provider for email_finder failed: x: x is"):
        await registry.lookup("email_finder", ADA)


async def test_a_lead_missing_inputs_gets_not_found_without_calling_providers() -> None:
    provider = ScriptedProvider("a", "deliverable")
    result = await _registry(provider).lookup("email_finder", Lead(first_name="Ada"))
    assert (result.outcome, result.data["missing"]) == (
        "not_found",
        "last_name,company_domain|company_name",
    )
    assert provider.calls == 0


async def test_unknown_features_unconfigured_features_and_empty_prompts_are_refused() -> None:
    registry = _registry(ScriptedProvider("a", "succeeded", feature="ai_variable"))
    with pytest.raises(UnknownFeature):
        await registry.lookup("teleportation", ADA)
    with pytest.raises(ProviderError, match="no provider is configured for phone_finder"):
        await registry.lookup("phone_finder", ADA)
    with pytest.raises(InvalidInput, match="prompt"):
        await registry.lookup("ai_variable", ADA, prompt="  ")
    assert (await registry.lookup("ai_variable", ADA, prompt="hi")).outcome == "succeeded"


async def test_the_billable_set_comes_from_the_caller() -> None:
    stingy = ProviderRegistry({"email_finder": {"deliverable"}})
    stingy.add(ScriptedProvider("a", "risky"))
    stingy.add(ScriptedProvider("b", "deliverable"))
    assert (await stingy.lookup("email_finder", ADA)).provider == "b"


def test_a_registry_built_from_the_catalog_bills_what_the_catalog_bills() -> None:
    registry = ProviderRegistry.from_catalog(load_catalog())
    assert registry.is_billable("email_finder", "risky")
    assert not registry.is_billable("email_finder", "unknown")
    assert registry.is_billable("calling", "answered")


async def test_duplicate_leads_are_looked_up_once() -> None:
    provider = ScriptedProvider("a", "deliverable")
    registry = _registry(provider)
    twin = Lead("ADA", "lovelace", "acme", "www.acme.example")
    results = await registry.lookup_many("email_finder", [ADA, twin, Lead("Bob", "B", "X")])
    assert provider.calls == 2
    assert set(results) == {ADA.fingerprint(), Lead("Bob", "B", "X").fingerprint()}


async def test_a_concurrency_limit_caps_lookups_in_flight() -> None:
    provider = ScriptedProvider("slow", "deliverable", delay=0.01)
    registry = ProviderRegistry(DEFAULT_BILLABLE_OUTCOMES)
    registry.add(provider, max_concurrency=3)
    leads = [Lead("A", f"L{i}", "Acme") for i in range(12)]
    await registry.lookup_many("email_finder", leads)
    assert (provider.calls, provider.peak) == (12, 3)


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_the_token_bucket_allows_a_burst_then_paces_calls_at_the_rate() -> None:
    time = FakeTime()
    bucket = TokenBucket(rate=2.0, capacity=3, clock=time.clock, sleep=time.sleep)
    for _ in range(5):
        await bucket.acquire()
    assert time.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]
    assert time.now == pytest.approx(1.0)
    assert not bucket.try_acquire()
    time.now += 10  # a long pause refills only up to the burst
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]


async def test_a_rate_limited_provider_waits_for_its_tokens() -> None:
    time = FakeTime()
    inner = ScriptedProvider("a", "deliverable")
    limited = LimitedProvider(
        inner, rate_per_second=10, burst=1, clock=time.clock, sleep=time.sleep
    )
    for _ in range(4):
        await limited.lookup(ADA)
    assert inner.calls == 4
    assert time.now == pytest.approx(0.3)
    assert (limited.name, limited.feature) == ("a", "email_finder")


def test_limits_must_be_positive() -> None:
    with pytest.raises(ProviderError, match="rate > 0"):
        TokenBucket(rate=0)
    with pytest.raises(ProviderError, match="max_concurrency"):
        LimitedProvider(ScriptedProvider("a", "risky"), max_concurrency=0)
