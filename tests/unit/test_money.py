"""Money is exact: Decimal with its currency, quantized to the minor unit, never float."""

from __future__ import annotations

from decimal import Decimal

import pytest

from creditbook.catalog import load_catalog
from creditbook.domain.errors import InvalidAmount
from creditbook.domain.money import Money, minor_unit_exponent


def test_a_thousand_credits_cost_one_hundred_dollars_at_the_default_price() -> None:
    assert load_catalog().price(1_000) == Money.of("100.00", "USD")


def test_1234_credits_cost_123_dollars_40() -> None:
    price = load_catalog().price(1_234)
    assert price.amount == Decimal("123.40")
    assert price.currency == "USD"
    assert str(price) == "123.40 USD"
    assert price.minor_units == 12_340


@pytest.mark.parametrize(
    ("credits", "expected"),
    [(1, "0.10"), (1_000, "100.00"), (5_000, "500.00"), (10_000, "1000.00"), (50_000, "5000.00")],
)
def test_the_default_packages_are_priced_exactly(credits: int, expected: str) -> None:
    assert load_catalog().price(credits).amount == Decimal(expected)


def test_amounts_are_quantized_to_the_currencys_minor_unit() -> None:
    assert Money.of(5, "usd") == Money(Decimal("5.00"), "USD")
    assert str(Money.of(5, "USD").amount) == "5.00"
    assert Money.of("1200", "JPY").amount == Decimal("1200")
    assert minor_unit_exponent("jpy") == 0
    assert minor_unit_exponent("EUR") == 2


def test_a_float_is_refused_with_a_message_saying_never_float() -> None:
    with pytest.raises(InvalidAmount, match="never a float"):
        Money.of(0.1, "USD")  # type: ignore[arg-type]


def test_a_bool_is_not_an_amount() -> None:
    with pytest.raises(InvalidAmount):
        Money.of(True, "USD")


@pytest.mark.parametrize(
    ("amount", "currency"), [("0.001", "USD"), ("1.234", "EUR"), ("5.5", "JPY")]
)
def test_more_decimals_than_the_currency_allows_are_refused(amount: str, currency: str) -> None:
    with pytest.raises(InvalidAmount, match=f"more decimals than {currency} allows"):
        Money.of(amount, currency)


@pytest.mark.parametrize("currency", ["US", "USDX", "U$D", ""])
def test_a_currency_must_be_a_three_letter_code(currency: str) -> None:
    with pytest.raises(InvalidAmount, match="3-letter ISO 4217"):
        Money.of("1.00", currency)


@pytest.mark.parametrize("amount", ["ten", "1,00", ""])
def test_a_non_number_is_refused_as_not_a_decimal(amount: str) -> None:
    with pytest.raises(InvalidAmount, match="not a decimal number"):
        Money.of(amount, "USD")


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity", Decimal("sNaN")])
def test_non_finite_amounts_are_refused(amount: str | Decimal) -> None:
    with pytest.raises(InvalidAmount, match="not a finite number"):
        Money.of(amount, "USD")


def test_an_absurdly_large_amount_is_refused_as_invalid_amount() -> None:
    with pytest.raises(InvalidAmount, match="too large"):
        Money.of("1e30", "USD")


def test_minor_units_round_trip() -> None:
    assert Money.from_minor(12_340, "USD") == Money.of("123.40", "USD")
    assert Money.from_minor(500, "JPY").amount == Decimal("500")
    assert Money.of("0.07", "USD").minor_units == 7


def test_times_multiplies_exactly_without_float_drift() -> None:
    ten_cents = Money.of("0.10", "USD")
    assert ten_cents.times(3) == Money.of("0.30", "USD")
    assert ten_cents.times(0) == Money.of("0.00", "USD")
