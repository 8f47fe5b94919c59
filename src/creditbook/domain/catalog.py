"""The catalog as plain values: features, outcomes, calling tiers, plans, prices.

The operator writes it as TOML (``creditbook/catalog/default.toml`` is the
seed's configuration); ``creditbook.catalog`` validates that file and builds
these frozen values. The domain only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from creditbook.domain.errors import UnknownFeature, UnknownOutcome, UnknownPlan
from creditbook.domain.money import Money


@dataclass(frozen=True, slots=True)
class Feature:
    """Something that costs credits, and the outcomes that make it billable."""

    key: str
    name: str
    unit: str
    cost: int
    outcomes: tuple[str, ...]
    billable_outcomes: frozenset[str]
    default_outcome: str
    metered_by_call: bool = False

    def check_outcome(self, outcome: str) -> None:
        if outcome not in self.outcomes:
            raise UnknownOutcome(self.key, outcome, self.outcomes)

    def is_billable(self, outcome: str) -> bool:
        self.check_outcome(outcome)
        return outcome in self.billable_outcomes


@dataclass(frozen=True, slots=True)
class CallingRates:
    """Destination tiers and their multipliers for the calling feature."""

    tiers: dict[str, int]
    destinations: dict[str, str]
    default_tier: str

    def tier_for(self, destination: str | None) -> str:
        """A tier name, a configured destination (country code), else the default."""
        if destination is None:
            return self.default_tier
        key = destination.strip()
        if key in self.tiers:
            return key
        return self.destinations.get(key.upper(), self.default_tier)


@dataclass(frozen=True, slots=True)
class Allowance:
    """Free credits a plan issues per seat and period, for a scope."""

    credits_per_seat: int
    scope: frozenset[str] | None  # None: every feature
    bucket: str  # how the balance view names it: subscription, calling, ...


@dataclass(frozen=True, slots=True)
class Plan:
    key: str
    name: str
    allowances: tuple[Allowance, ...]
    trial_credits: int = 0
    trial_days: int = 0
    rank: int = 0  # to tell an upgrade from a downgrade

    @property
    def is_trial(self) -> bool:
        return self.trial_credits > 0


@dataclass(frozen=True, slots=True)
class Pricing:
    price_per_credit: Money
    packages: dict[str, int]
    custom_min: int
    custom_max: int


@dataclass(frozen=True, slots=True)
class Limits:
    max_quantity: int = 100_000
    max_credits_per_operation: int = 100_000_000
    max_grant_credits: int = 1_000_000_000
    default_hold_ttl_seconds: int = 900
    max_hold_ttl_seconds: int = 86_400
    max_call_seconds: int = 86_400


@dataclass(frozen=True, slots=True)
class Catalog:
    features: dict[str, Feature]
    plans: dict[str, Plan]
    calling: CallingRates
    pricing: Pricing
    limits: Limits = field(default_factory=Limits)
    seat_policy: str = "prorate"  # prorate | full | none
    downgrade_policy: str = "next_period"  # next_period | immediate

    def feature(self, key: str) -> Feature:
        try:
            return self.features[key]
        except KeyError:
            raise UnknownFeature(key, self.features) from None

    def plan(self, key: str) -> Plan:
        try:
            return self.plans[key]
        except KeyError:
            raise UnknownPlan(key, self.plans) from None

    def price(self, credits: int) -> Money:
        return self.pricing.price_per_credit.times(credits)

    @property
    def price_per_credit(self) -> Decimal:
        return self.pricing.price_per_credit.amount
