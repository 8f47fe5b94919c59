"""Pricing: quantity, outcome and call duration to credits, from the catalog's numbers."""

from __future__ import annotations

import dataclasses

import pytest

from creditbook.catalog import load_catalog
from creditbook.domain.catalog import Catalog, Limits
from creditbook.domain.errors import InvalidInput, InvalidQuantity, UnknownFeature, UnknownOutcome
from creditbook.domain.pricing import Call, billed_minutes, max_quote, quote


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.mark.parametrize(
    ("feature", "outcome", "quantity", "credits"),
    [
        ("email_finder", "deliverable", 1, 5),
        ("email_finder", "risky", 1, 5),
        ("email_finder", "undeliverable", 1, 0),
        ("email_finder", "unknown", 3, 0),
        ("email_finder", "not_found", 1, 0),
        ("email_finder", "deliverable", 10, 50),
        ("linkedin_enrichment", "found", 7, 7),
        ("linkedin_enrichment", "not_found", 7, 0),
        ("phone_finder", "found", 2, 40),
        ("phone_finder", "not_found", 2, 0),
        ("ai_variable", "succeeded", 1, 1),
        ("ai_variable", "failed", 1, 0),
    ],
)
def test_only_billable_outcomes_cost_credits(
    catalog: Catalog, feature: str, outcome: str, quantity: int, credits: int
) -> None:
    q = quote(catalog, feature, quantity=quantity, outcome=outcome)
    assert q.credits == credits
    assert q.billable is (credits > 0)
    assert (q.feature, q.quantity, q.outcome) == (feature, quantity, outcome)


def test_without_an_outcome_the_default_outcome_is_charged(catalog: Catalog) -> None:
    q = quote(catalog, "email_finder")
    assert (q.outcome, q.credits, q.unit_cost, q.multiplier) == ("deliverable", 5, 5, 1)


@pytest.mark.parametrize(
    ("seconds", "minutes"), [(0, 0), (1, 1), (59, 1), (60, 1), (61, 2), (120, 2), (121, 3)]
)
def test_billed_minutes_round_up_to_whole_minutes(seconds: int, minutes: int) -> None:
    assert billed_minutes(seconds) == minutes


def test_a_61_second_answered_call_to_a_global_destination_costs_32(catalog: Catalog) -> None:
    q = quote(catalog, "calling", call=Call(61, answered=True, destination="global"))
    assert (q.quantity, q.unit_cost, q.multiplier, q.tier, q.credits) == (2, 4, 4, "global", 32)


def test_the_tier_comes_from_the_destination_country(catalog: Catalog) -> None:
    assert quote(catalog, "calling", call=Call(61, True, "AU")).credits == 32
    assert quote(catalog, "calling", call=Call(60, True, "US")).credits == 4
    assert quote(catalog, "calling", call=Call(60, True, "SG")).credits == 32
    assert quote(catalog, "calling", call=Call(60, True, "ES")).credits == 8


def test_an_unknown_destination_uses_the_default_tier(catalog: Catalog) -> None:
    q = quote(catalog, "calling", call=Call(60, True, "ZZ"))
    default = catalog.calling.default_tier
    assert q.tier == default
    assert q.credits == 4 * catalog.calling.tiers[default]
    assert quote(catalog, "calling", call=Call(60, True, None)).tier == default


@pytest.mark.parametrize("outcome", [None, "unanswered", "failed"])
def test_an_unanswered_call_costs_nothing(catalog: Catalog, outcome: str | None) -> None:
    q = quote(catalog, "calling", outcome=outcome, call=Call(300, answered=False, destination="AU"))
    assert q.credits == 0
    assert not q.billable


def test_an_answered_call_reported_as_failed_costs_nothing(catalog: Catalog) -> None:
    assert quote(catalog, "calling", outcome="failed", call=Call(300, True, "AU")).credits == 0


def test_calling_needs_the_call(catalog: Catalog) -> None:
    with pytest.raises(InvalidInput, match="metered by call"):
        quote(catalog, "calling")


def test_a_call_is_refused_for_a_feature_not_metered_by_call(catalog: Catalog) -> None:
    with pytest.raises(InvalidInput, match="only to call-metered features"):
        quote(catalog, "email_finder", call=Call(60, True))


@pytest.mark.parametrize("seconds", [-1, 86_401, 1.5, True, "60"])
def test_a_call_duration_must_be_whole_seconds_within_the_limit(
    catalog: Catalog, seconds: object
) -> None:
    with pytest.raises(InvalidQuantity, match="call duration"):
        quote(catalog, "calling", call=Call(seconds, True, "US"))  # type: ignore[arg-type]


@pytest.mark.parametrize("quantity", [0, -1, 100_001, True, 1.0, "1", None])
def test_a_quantity_must_be_a_whole_number_within_the_limit(
    catalog: Catalog, quantity: object
) -> None:
    with pytest.raises(InvalidQuantity, match="quantity"):
        quote(catalog, "email_finder", quantity=quantity)  # type: ignore[arg-type]
    with pytest.raises(InvalidQuantity, match="quantity"):
        max_quote(catalog, "email_finder", quantity=quantity)  # type: ignore[arg-type]


def test_the_largest_allowed_quantity_is_accepted(catalog: Catalog) -> None:
    assert quote(catalog, "phone_finder", quantity=100_000).credits == 2_000_000


def test_an_operation_above_the_credit_limit_is_refused() -> None:
    small = dataclasses.replace(load_catalog(), limits=Limits(max_credits_per_operation=99))
    with pytest.raises(InvalidQuantity, match="above the limit of 99"):
        quote(small, "email_finder", quantity=20)
    with pytest.raises(InvalidQuantity, match="above the limit of 99"):
        max_quote(small, "calling", quantity=4, call=Call(0, True, "premium"))
    assert quote(small, "email_finder", quantity=20, outcome="undeliverable").credits == 0


def test_unknown_feature_and_outcome_are_refused_with_the_valid_values(catalog: Catalog) -> None:
    with pytest.raises(UnknownFeature, match="'fax'; valid features"):
        quote(catalog, "fax")
    with pytest.raises(UnknownOutcome, match="'maybe' for feature 'email_finder'"):
        quote(catalog, "email_finder", outcome="maybe")
    with pytest.raises(UnknownOutcome):
        quote(catalog, "calling", outcome="maybe", call=Call(60, True, "US"))


def test_the_most_a_use_can_cost_is_what_a_hold_reserves(catalog: Catalog) -> None:
    assert max_quote(catalog, "email_finder", quantity=3).credits == 15
    assert max_quote(catalog, "phone_finder").credits == 20
    calls = max_quote(catalog, "calling", quantity=10, call=Call(0, True, "AU"))
    assert (calls.credits, calls.tier, calls.multiplier) == (160, "global", 4)
    default = max_quote(catalog, "calling", quantity=1)
    assert default.tier == catalog.calling.default_tier
