"""The Stripe provider end to end against localstripe: real SDK, real HTTP, signed webhooks."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import pytest
from localstripe_server import Delivery, WebhookReceiver, free_port

from creditbook.adapters.payments import (
    PaymentEventType,
    PaymentProviderError,
    PaymentStatus,
    StripePaymentProvider,
    WebhookSignatureError,
)
from creditbook.catalog import load_catalog
from creditbook.domain.money import Money


def about(reference: str | None, event_type: str) -> Callable[[Delivery], bool]:
    def matches(delivery: Delivery) -> bool:
        body = json.loads(delivery.body)
        return bool(body["type"] == event_type and body["data"]["object"].get("id") == reference)

    return matches


def key() -> str:
    return f"test:{uuid.uuid4()}"


def test_a_confirmed_payment_is_granted_only_through_its_signed_succeeded_webhook(
    stripe_provider: StripePaymentProvider, webhook_receiver: WebhookReceiver
) -> None:
    price = load_catalog().price(1000)

    result = stripe_provider.create_payment(
        purchase_id="pur_int_1",
        team_id="team_int",
        amount=price,
        idempotency_key=key(),
        payment_method="pm_card_visa",
    )

    assert result.status is PaymentStatus.PENDING
    assert result.reference is not None and result.reference.startswith("pi_")
    assert result.provider_status == "succeeded"
    delivery = webhook_receiver.wait_for(about(result.reference, "payment_intent.succeeded"))

    event = stripe_provider.verify_webhook(delivery.body, delivery.signature)

    assert event.type is PaymentEventType.SUCCEEDED
    assert event.event_id.startswith("evt_")
    assert event.reference == result.reference
    assert event.purchase_id == "pur_int_1"
    assert event.team_id == "team_int"
    assert event.amount == Money.of("100.00", "USD")


def test_a_tampered_webhook_or_one_checked_with_another_secret_is_rejected(
    stripe_provider: StripePaymentProvider,
    webhook_receiver: WebhookReceiver,
    localstripe_url: str,
) -> None:
    result = stripe_provider.create_payment(
        purchase_id="pur_int_2",
        team_id="team_int",
        amount=Money.of("10.00", "USD"),
        idempotency_key=key(),
        payment_method="pm_card_visa",
    )
    delivery = webhook_receiver.wait_for(about(result.reference, "payment_intent.succeeded"))
    tampered = delivery.body.replace(b'"amount": 1000,', b'"amount": 1000000,')
    assert tampered != delivery.body
    other_secret = StripePaymentProvider("sk_test_x", "whsec_not_ours", api_base=localstripe_url)

    with pytest.raises(WebhookSignatureError):
        stripe_provider.verify_webhook(tampered, delivery.signature)
    with pytest.raises(WebhookSignatureError):
        other_secret.verify_webhook(delivery.body, delivery.signature)
    assert stripe_provider.verify_webhook(delivery.body, delivery.signature).amount == Money.of(
        "10.00", "USD"
    )


def test_a_declined_card_fails_and_is_announced_as_failed_never_as_succeeded(
    stripe_provider: StripePaymentProvider, webhook_receiver: WebhookReceiver
) -> None:
    result = stripe_provider.create_payment(
        purchase_id="pur_int_3",
        team_id="team_int",
        amount=Money.of("50.00", "USD"),
        idempotency_key=key(),
        payment_method="pm_card_chargeCustomerFail",
    )

    assert result.status is PaymentStatus.FAILED
    assert result.failure_code == "card_declined"
    assert result.reference is not None and result.reference.startswith("pi_")
    delivery = webhook_receiver.wait_for(about(result.reference, "payment_intent.payment_failed"))
    event = stripe_provider.verify_webhook(delivery.body, delivery.signature)
    assert event.type is PaymentEventType.FAILED
    assert event.purchase_id == "pur_int_3"
    assert event.failure_message == "Your card was declined."
    time.sleep(0.3)  # any success event would have been sent with the failure
    assert webhook_receiver.matching(about(result.reference, "payment_intent.succeeded")) == []


def test_a_payment_without_a_card_waits_for_the_browser_and_sends_no_webhook(
    stripe_provider: StripePaymentProvider, webhook_receiver: WebhookReceiver
) -> None:
    result = stripe_provider.create_payment(
        purchase_id="pur_int_4",
        team_id="team_int",
        amount=Money.of("500.00", "USD"),
        idempotency_key=key(),
    )

    assert result.status is PaymentStatus.PENDING
    assert result.provider_status == "requires_payment_method"
    assert result.client_secret is not None and result.client_secret.startswith(
        f"{result.reference}_secret"
    )
    assert webhook_receiver.matching(about(result.reference, "payment_intent.succeeded")) == []


def test_a_succeeded_payment_is_refunded_in_part_through_stripe(
    stripe_provider: StripePaymentProvider,
) -> None:
    payment = stripe_provider.create_payment(
        purchase_id="pur_int_5",
        team_id="team_int",
        amount=Money.of("100.00", "USD"),
        idempotency_key=key(),
        payment_method="pm_card_visa",
    )
    assert payment.reference is not None

    refund = stripe_provider.refund(
        reference=payment.reference, amount=Money.of("40.00", "USD"), idempotency_key=key()
    )

    assert refund.status is PaymentStatus.SUCCEEDED
    assert refund.reference.startswith("re_")
    assert refund.payment_reference == payment.reference
    assert refund.amount == Money.of("40.00", "USD")


def test_a_failed_payment_cannot_be_refunded(stripe_provider: StripePaymentProvider) -> None:
    payment = stripe_provider.create_payment(
        purchase_id="pur_int_6",
        team_id="team_int",
        amount=Money.of("20.00", "USD"),
        idempotency_key=key(),
        payment_method="pm_card_chargeCustomerFail",
    )
    assert payment.reference is not None

    with pytest.raises(PaymentProviderError) as caught:
        stripe_provider.refund(
            reference=payment.reference, amount=Money.of("20.00", "USD"), idempotency_key=key()
        )

    assert caught.value.retryable is False
    assert "Cannot refund a failed payment" in caught.value.message


def test_a_saved_card_is_charged_off_session_for_auto_recharge(
    stripe_provider: StripePaymentProvider, webhook_receiver: WebhookReceiver
) -> None:
    customer = stripe_provider.create_customer(
        team_id="team_auto", idempotency_key=key(), email="admin@example.com"
    )
    card = stripe_provider.attach_payment_method(customer=customer, payment_method="pm_card_visa")

    result = stripe_provider.create_payment(
        purchase_id="pur_int_7",
        team_id="team_auto",
        amount=Money.of("25.00", "USD"),
        idempotency_key=key(),
        customer=customer,
        payment_method=card,
    )

    assert customer.startswith("cus_")
    assert card.startswith("pm_") and card != "pm_card_visa"
    assert result.status is PaymentStatus.PENDING
    delivery = webhook_receiver.wait_for(about(result.reference, "payment_intent.succeeded"))
    event = stripe_provider.verify_webhook(delivery.body, delivery.signature)
    assert event.team_id == "team_auto"
    assert event.purchase_id == "pur_int_7"


def test_an_unreachable_stripe_is_a_retryable_provider_error() -> None:
    nowhere = StripePaymentProvider(
        "sk_test_x",
        "whsec_x",
        api_base=f"http://127.0.0.1:{free_port()}",
        max_network_retries=0,
    )

    with pytest.raises(PaymentProviderError) as caught:
        nowhere.create_payment(
            purchase_id="p", team_id="t", amount=Money.of("1.00", "USD"), idempotency_key=key()
        )

    assert caught.value.retryable is True
