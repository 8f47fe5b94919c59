"""Pure rules of buying credits and alerts: prices, bounds, signatures, backoff (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from creditbook import FrozenClock, InvalidInput, load_catalog
from creditbook.adapters.notify import FakeWebhookSender, sign_body, verify_signature
from creditbook.domain.money import Money
from creditbook.service.kernel import Kernel
from creditbook.service.notifications import NotificationService
from creditbook.service.purchases import PurchaseService


def _no_database() -> object:
    raise AssertionError("pricing must not touch the database")


@pytest.fixture
def shop() -> PurchaseService:
    clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    return PurchaseService(Kernel(_no_database, load_catalog(), clock))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("package", "credits", "price"),
    [
        ("1k", 1000, "100.00"),
        ("5k", 5000, "500.00"),
        ("10k", 10000, "1000.00"),
        ("50k", 50000, "5000.00"),
    ],
)
def test_each_package_costs_ten_cents_a_credit(
    shop: PurchaseService, package: str, credits: int, price: str
) -> None:
    assert shop.quote(package=package) == (credits, Money.of(price, "USD"))


def test_a_custom_1234_credits_cost_exactly_usd_123_40(shop: PurchaseService) -> None:
    credits, price = shop.quote(credits=1234)
    assert credits == 1234
    assert price.amount == Decimal("123.40") and price.currency == "USD"
    assert price.minor_units == 12340


@pytest.mark.parametrize("credits", [99, 1_000_001, 0, -5])
def test_a_custom_amount_outside_the_bounds_is_refused_with_the_bounds(
    shop: PurchaseService, credits: int
) -> None:
    with pytest.raises(InvalidInput, match="between 100 and 1000000 credits"):
        shop.quote(credits=credits)


def test_the_bounds_themselves_can_be_bought(shop: PurchaseService) -> None:
    assert shop.quote(credits=100)[1] == Money.of("10.00", "USD")
    assert shop.quote(credits=1_000_000)[1] == Money.of("100000.00", "USD")


def test_an_unknown_package_is_refused_naming_the_packages(shop: PurchaseService) -> None:
    with pytest.raises(InvalidInput, match=r"1k \(1000 credits\), 5k"):
        shop.quote(package="2k")


def test_a_purchase_names_either_a_package_or_credits(shop: PurchaseService) -> None:
    with pytest.raises(InvalidInput, match="either a package"):
        shop.quote()
    with pytest.raises(InvalidInput, match="either a package"):
        shop.quote(credits=1000, package="1k")


def test_a_webhook_signature_verifies_only_for_its_body_secret_and_time() -> None:
    body = b'{"type": "low_balance"}'
    header = sign_body(body, "whsec_team_secret_123", timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature(body, header, "whsec_team_secret_123", now=1_700_000_100)
    assert not verify_signature(body, header, "whsec_other_secret_12", now=1_700_000_100)
    assert not verify_signature(body + b"x", header, "whsec_team_secret_123", now=1_700_000_100)
    assert not verify_signature(body, header, "whsec_team_secret_123", now=1_700_001_000)
    assert not verify_signature(body, "", "whsec_team_secret_123")
    assert not verify_signature(body, "t=abc,v1=00", "whsec_team_secret_123")


def test_delivery_backoff_doubles_and_is_capped() -> None:
    service = NotificationService(
        _no_database,  # type: ignore[arg-type]
        FrozenClock(datetime(2026, 1, 1, tzinfo=UTC)),
        FakeWebhookSender(),
        base_delay=timedelta(seconds=5),
        max_delay=timedelta(minutes=1),
    )
    assert [service.backoff(n).total_seconds() for n in range(1, 6)] == [5, 10, 20, 40, 60]


def test_the_fake_sender_fails_as_scripted_then_delivers() -> None:
    sender = FakeWebhookSender()
    sender.fail_next(2)
    results = [sender.send("http://x", b"{}", {}).ok for _ in range(3)]
    assert results == [False, False, True]
    assert len(sender.attempts) == 3 and len(sender.delivered) == 1
