"""The manual provider: payments and refunds complete at once, with the catalog price."""

from __future__ import annotations

import pytest

from creditbook.adapters.payments import (
    ManualPaymentProvider,
    PaymentProvider,
    PaymentStatus,
    WebhookSignatureError,
)
from creditbook.catalog import load_catalog
from creditbook.domain.errors import InvalidAmount
from creditbook.domain.money import Money


def test_a_manual_payment_succeeds_at_once_with_the_catalog_price() -> None:
    price = load_catalog().price(1000)

    result = ManualPaymentProvider().create_payment(
        purchase_id="pur_1", team_id="team_1", amount=price, idempotency_key="k1"
    )

    assert result.status is PaymentStatus.SUCCEEDED
    assert result.amount == Money.of("100.00", "USD")
    assert result.reference == "manual_pur_1"
    assert result.client_secret is None


def test_a_retried_manual_payment_answers_the_same_reference() -> None:
    provider = ManualPaymentProvider()
    amount = Money.of("10.00", "USD")

    first = provider.create_payment(
        purchase_id="pur_1", team_id="t", amount=amount, idempotency_key="k"
    )
    again = provider.create_payment(
        purchase_id="pur_1", team_id="t", amount=amount, idempotency_key="k"
    )
    other = provider.create_payment(
        purchase_id="pur_2", team_id="t", amount=amount, idempotency_key="k2"
    )

    assert first == again
    assert other.reference != first.reference


def test_a_manual_payment_of_nothing_is_refused() -> None:
    with pytest.raises(InvalidAmount, match="more than zero"):
        ManualPaymentProvider().create_payment(
            purchase_id="p", team_id="t", amount=Money.of(0, "USD"), idempotency_key="k"
        )


def test_a_manual_refund_succeeds_at_once_and_a_retry_answers_the_same_refund() -> None:
    provider = ManualPaymentProvider()
    amount = Money.of("25.50", "EUR")

    refund = provider.refund(reference="manual_pur_1", amount=amount, idempotency_key="r1")
    again = provider.refund(reference="manual_pur_1", amount=amount, idempotency_key="r1")
    other = provider.refund(reference="manual_pur_1", amount=amount, idempotency_key="r2")

    assert refund.status is PaymentStatus.SUCCEEDED
    assert refund.amount == amount
    assert refund.payment_reference == "manual_pur_1"
    assert refund == again
    assert other.reference != refund.reference


def test_the_manual_provider_accepts_no_webhook() -> None:
    with pytest.raises(WebhookSignatureError) as caught:
        ManualPaymentProvider().verify_webhook(b"{}", "t=1,v1=00")

    assert caught.value.code == "invalid_signature"
    assert "manual payment provider sends no webhooks" in caught.value.message


def test_the_manual_provider_is_a_payment_provider() -> None:
    provider = ManualPaymentProvider()

    assert isinstance(provider, PaymentProvider)
    assert provider.name == "manual"
