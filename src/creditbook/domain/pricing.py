"""What a use of a feature costs: quantity, outcome and call duration to credits.

Only billable outcomes cost anything; a call costs its billed minutes
(duration rounded up to whole minutes) times the destination tier's
multiplier times the feature's cost per minute, and nothing if unanswered.
"""

from __future__ import annotations

from dataclasses import dataclass

from creditbook.domain.catalog import Catalog, Feature
from creditbook.domain.errors import InvalidInput, InvalidQuantity


@dataclass(frozen=True, slots=True)
class Call:
    duration_seconds: int
    answered: bool
    destination: str | None = None


@dataclass(frozen=True, slots=True)
class Quote:
    """The price of one use: credits, and what they were computed from."""

    feature: str
    quantity: int  # leads, requests, or billed minutes for calls
    outcome: str
    unit_cost: int
    multiplier: int
    credits: int
    tier: str | None = None

    @property
    def billable(self) -> bool:
        return self.credits > 0


def check_quantity(catalog: Catalog, quantity: int) -> None:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise InvalidQuantity(f"quantity must be a whole number, got {quantity!r}")
    limit = catalog.limits.max_quantity
    if quantity < 1 or quantity > limit:
        raise InvalidQuantity(
            f"quantity {quantity} is out of range; it must be between 1 and {limit}",
            quantity=quantity,
            minimum=1,
            maximum=limit,
        )


def _check_credits(catalog: Catalog, credits: int) -> None:
    limit = catalog.limits.max_credits_per_operation
    if credits > limit:
        raise InvalidQuantity(
            f"this operation would cost {credits} credits, above the limit of {limit} "
            "per operation",
            credits=credits,
            maximum=limit,
        )


def billed_minutes(duration_seconds: int) -> int:
    """Whole minutes, rounded up: 61 seconds bill as 2 minutes."""
    return -(-duration_seconds // 60)


def quote(
    catalog: Catalog,
    feature_key: str,
    *,
    quantity: int = 1,
    outcome: str | None = None,
    call: Call | None = None,
) -> Quote:
    """The cost of one use of a feature; raises on any invalid input."""
    feature = catalog.feature(feature_key)
    if feature.metered_by_call:
        return _quote_call(catalog, feature, call, outcome)
    if call is not None:
        raise InvalidInput(
            f"'call' applies only to call-metered features, not {feature.key!r}",
            field="call",
        )
    check_quantity(catalog, quantity)
    chosen = feature.default_outcome if outcome is None else outcome
    billable = feature.is_billable(chosen)
    credits = feature.cost * quantity if billable else 0
    _check_credits(catalog, credits)
    return Quote(feature.key, quantity, chosen, feature.cost, 1, credits)


def max_quote(
    catalog: Catalog, feature_key: str, *, quantity: int = 1, call: Call | None = None
) -> Quote:
    """The most a use can cost: what a hold reserves.

    For calls, ``quantity`` is the number of minutes to reserve, at the
    destination's multiplier.
    """
    feature = catalog.feature(feature_key)
    check_quantity(catalog, quantity)
    billable = sorted(feature.billable_outcomes)
    if not billable:
        raise InvalidInput(f"feature {feature.key!r} has no billable outcome to hold for")
    if feature.metered_by_call:
        tier = catalog.calling.tier_for(call.destination if call else None)
        multiplier = catalog.calling.tiers[tier]
        credits = feature.cost * quantity * multiplier
        _check_credits(catalog, credits)
        return Quote(feature.key, quantity, billable[0], feature.cost, multiplier, credits, tier)
    credits = feature.cost * quantity
    _check_credits(catalog, credits)
    return Quote(feature.key, quantity, billable[0], feature.cost, 1, credits)


def _quote_call(
    catalog: Catalog, feature: Feature, call: Call | None, outcome: str | None
) -> Quote:
    if call is None:
        raise InvalidInput(
            f"feature {feature.key!r} is metered by call: give call.duration_seconds, "
            "call.answered and call.destination",
            field="call",
        )
    seconds = call.duration_seconds
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise InvalidQuantity(f"call duration must be whole seconds, got {seconds!r}")
    if seconds < 0 or seconds > catalog.limits.max_call_seconds:
        raise InvalidQuantity(
            f"call duration {seconds}s is out of range; it must be between 0 and "
            f"{catalog.limits.max_call_seconds} seconds",
            minimum=0,
            maximum=catalog.limits.max_call_seconds,
        )
    tier = catalog.calling.tier_for(call.destination)
    multiplier = catalog.calling.tiers[tier]
    chosen = outcome if outcome is not None else ("answered" if call.answered else "unanswered")
    billable = feature.is_billable(chosen) and call.answered
    minutes = billed_minutes(seconds)
    credits = feature.cost * minutes * multiplier if billable else 0
    _check_credits(catalog, credits)
    return Quote(feature.key, minutes, chosen, feature.cost, multiplier, credits, tier)
