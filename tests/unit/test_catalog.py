"""The catalog is data: the default TOML holds the seed's numbers; bad files are refused clearly."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from creditbook.catalog import default_catalog_text, load_catalog, parse_catalog
from creditbook.domain.catalog import Catalog
from creditbook.domain.errors import InvalidCatalog, UnknownFeature, UnknownOutcome, UnknownPlan
from creditbook.domain.money import Money


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.mark.parametrize(
    ("feature", "cost", "billable"),
    [
        ("email_finder", 5, {"deliverable", "risky"}),
        ("linkedin_enrichment", 1, {"found"}),
        ("phone_finder", 20, {"found"}),
        ("calling", 4, {"answered"}),
        ("ai_variable", 1, {"succeeded"}),
    ],
)
def test_the_default_catalog_has_the_seeds_feature_costs(
    catalog: Catalog, feature: str, cost: int, billable: set[str]
) -> None:
    assert catalog.feature(feature).cost == cost
    assert catalog.feature(feature).billable_outcomes == billable


def test_the_default_catalog_has_exactly_the_five_seed_features(catalog: Catalog) -> None:
    assert set(catalog.features) == {
        "email_finder",
        "linkedin_enrichment",
        "phone_finder",
        "calling",
        "ai_variable",
    }
    assert [f.key for f in catalog.features.values() if f.metered_by_call] == ["calling"]
    assert catalog.feature("calling").unit == "minute"


def test_email_finder_does_not_bill_undeliverable_unknown_or_not_found(catalog: Catalog) -> None:
    email = catalog.feature("email_finder")
    assert not email.is_billable("undeliverable")
    assert not email.is_billable("unknown")
    assert not email.is_billable("not_found")
    assert email.is_billable("risky")


def test_the_default_calling_tiers_are_basic_1_standard_2_global_4_premium_8(
    catalog: Catalog,
) -> None:
    assert catalog.calling.tiers == {"basic": 1, "standard": 2, "global": 4, "premium": 8}
    assert catalog.calling.default_tier in catalog.calling.tiers


def test_a_destination_maps_to_its_tier_and_unknown_ones_to_the_default(catalog: Catalog) -> None:
    rates = catalog.calling
    assert rates.tier_for("AU") == "global"
    assert rates.tier_for("au") == "global"
    assert rates.tier_for(" US ") == "basic"
    assert rates.tier_for("SG") == "premium"
    assert rates.tier_for("premium") == "premium"  # a tier name is accepted as is
    assert rates.tier_for("ZZ") == rates.default_tier
    assert rates.tier_for(None) == rates.default_tier


def test_the_default_plans_grant_the_seeds_allowances(catalog: Catalog) -> None:
    trial = catalog.plan("trial")
    assert trial.trial_credits == 500 and trial.is_trial
    email_pro = catalog.plan("email_pro")
    assert [(a.credits_per_seat, a.scope) for a in email_pro.allowances] == [(1000, None)]
    expert = catalog.plan("multichannel_expert")
    assert [(a.credits_per_seat, a.scope, a.bucket) for a in expert.allowances] == [
        (1500, None, "subscription"),
        (400, frozenset({"calling"}), "calling"),
    ]
    assert trial.rank < email_pro.rank < expert.rank


def test_the_default_packages_and_price(catalog: Catalog) -> None:
    assert sorted(catalog.pricing.packages.values()) == [1_000, 5_000, 10_000, 50_000]
    assert catalog.pricing.price_per_credit == Money.of("0.10", "USD")
    assert catalog.price_per_credit == Decimal("0.10")
    assert catalog.pricing.custom_min <= 1_000 <= catalog.pricing.custom_max


def test_the_default_limits(catalog: Catalog) -> None:
    assert catalog.limits.max_hold_ttl_seconds == 86_400  # the spec's 24-hour maximum
    assert catalog.limits.default_hold_ttl_seconds <= catalog.limits.max_hold_ttl_seconds


def test_unknown_names_are_refused_with_the_valid_ones(catalog: Catalog) -> None:
    with pytest.raises(UnknownFeature, match="valid features: ai_variable, calling"):
        catalog.feature("fax")
    with pytest.raises(UnknownPlan, match="valid plans: email_pro"):
        catalog.plan("gold")
    with pytest.raises(UnknownOutcome, match="valid outcomes: found, not_found"):
        catalog.feature("phone_finder").check_outcome("maybe")


def _edited(old: str, new: str) -> str:
    text = default_catalog_text()
    assert old in text, f"default.toml no longer contains {old!r}"
    return text.replace(old, new, 1)


def test_an_operator_file_overrides_the_default(tmp_path: Path) -> None:
    text = _edited("cost = 5\n", "cost = 7\n").replace(
        'price_per_credit = "0.10"', 'price_per_credit = "0.08"'
    )
    text += '\n[features.summary]\nname = "Summary"\ncost = 3\noutcomes = ["ok", "ko"]\n'
    text += 'billable_outcomes = ["ok"]\ndefault_outcome = "ok"\n'
    path = tmp_path / "catalog.toml"
    path.write_text(text, "utf-8")
    custom = load_catalog(path)
    assert custom.feature("email_finder").cost == 7
    assert custom.feature("summary").cost == 3
    assert custom.price(1_000) == Money.of("80.00", "USD")
    assert load_catalog().feature("email_finder").cost == 5  # the default is untouched


def test_load_catalog_accepts_a_string_path(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(default_catalog_text(), "utf-8")
    assert load_catalog(str(path)).feature("phone_finder").cost == 20


def test_a_missing_file_is_an_invalid_catalog_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(InvalidCatalog, match=r"cannot read catalog .*nope\.toml"):
        load_catalog(missing)


@pytest.mark.parametrize(
    ("old", "new", "field", "why"),
    [
        (
            'billable_outcomes = ["deliverable", "risky"]',
            'billable_outcomes = ["deliverable", "maybe"]',
            "features.email_finder",
            "billable_outcomes .*maybe.* are not in outcomes",
        ),
        (
            'default_outcome = "deliverable"',
            'default_outcome = "great"',
            "features.email_finder",
            "default_outcome 'great' is not in outcomes",
        ),
        ('AU = "global"', 'AU = "galactic"', "calling", "unknown tiers.*galactic"),
        ('default_tier = "standard"', 'default_tier = "gold"', "calling", "default_tier 'gold'"),
        ("cost = 5\n", "cost = -5\n", "features.email_finder.cost", "greater than or equal to 0"),
        ("premium = 8", "premium = 0", "calling", "multipliers are whole numbers >= 1"),
        (
            "cost = 5\n",
            'cost = 5\ncolour = "red"\n',
            "features.email_finder.colour",
            "Extra inputs",
        ),
        ("seat_policy = ", "sea_policy = ", "sea_policy", "Extra inputs"),
        ('scope = ["calling"]', 'scope = ["fax"]', "plan 'multichannel_expert'", "fax"),
        ('currency = "USD"', 'currency = "usd"', "pricing.currency", "pattern"),
        ('price_per_credit = "0.10"', 'price_per_credit = "0"', "pricing.price_per_credit", ""),
        ("custom_min = 100", "custom_min = 2000000", "pricing", "custom_min is above custom_max"),
        ("[features.ai_variable]", "[features.AI-Variable]", "AI-Variable", "must match"),
    ],
)
def test_an_invalid_catalog_is_refused_with_a_message_naming_the_field(
    old: str, new: str, field: str, why: str
) -> None:
    with pytest.raises(InvalidCatalog) as info:
        parse_catalog(_edited(old, new), source="op.toml")
    message = info.value.message
    assert message.startswith("op.toml: invalid catalog")
    assert field in message
    assert why == "" or re.search(why, message), message
    assert info.value.code == "invalid_catalog"


def test_text_that_is_not_toml_is_refused_as_not_valid_toml() -> None:
    with pytest.raises(InvalidCatalog, match=r"op\.toml: not valid TOML"):
        parse_catalog("[features\ncost = ", source="op.toml")


def test_a_catalog_without_features_is_refused() -> None:
    text = default_catalog_text()
    no_features = text[: text.index("[features.")] + text[text.index("[calling]") :]
    with pytest.raises(InvalidCatalog, match=r"features: Field required"):
        parse_catalog(no_features)
