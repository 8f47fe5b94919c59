"""Stripe webhook verification against signatures computed here, independently of the code."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from creditbook.adapters.payments import (
    FakePaymentProvider,
    InvalidWebhookPayload,
    PaymentEventType,
    StripePaymentProvider,
    WebhookSignatureError,
    sign_webhook_payload,
)
from creditbook.domain.money import Money

SECRET = "whsec_unit_test_secret"


def stripe_header(payload: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    moment = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{moment}.".encode() + payload, hashlib.sha256)
    return f"t={moment},v1={mac.hexdigest()}"


def event_body(event_type: str, obj: dict[str, Any], event_id: str = "evt_123") -> bytes:
    body = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "api_version": "2017-08-15",
        "data": {"object": obj},
    }
    return json.dumps(body, indent=2).encode()


def intent(status: str = "succeeded", **extra: Any) -> dict[str, Any]:
    return {
        "id": "pi_abc",
        "object": "payment_intent",
        "amount": 10000,
        "currency": "usd",
        "status": status,
        "metadata": {"purchase_id": "pur_1", "team_id": "team_1"},
        **extra,
    }


@pytest.fixture
def provider() -> StripePaymentProvider:
    # No request is made by verify_webhook; the URL only proves that.
    return StripePaymentProvider(
        SECRET.replace("whsec", "sk"), SECRET, api_base="http://127.0.0.1:9"
    )


def test_a_signed_payment_succeeded_event_becomes_a_typed_success(
    provider: StripePaymentProvider,
) -> None:
    payload = event_body("payment_intent.succeeded", intent())

    event = provider.verify_webhook(payload, stripe_header(payload))

    assert event.event_id == "evt_123"
    assert event.type is PaymentEventType.SUCCEEDED
    assert event.provider == "stripe"
    assert event.provider_type == "payment_intent.succeeded"
    assert event.reference == "pi_abc"
    assert event.purchase_id == "pur_1"
    assert event.team_id == "team_1"
    assert event.amount == Money.of("100.00", "USD")
    assert event.created is not None


def test_a_payment_failed_event_carries_the_reason(provider: StripePaymentProvider) -> None:
    obj = intent(
        "requires_payment_method", last_payment_error={"message": "Your card was declined."}
    )
    payload = event_body("payment_intent.payment_failed", obj)

    event = provider.verify_webhook(payload, stripe_header(payload))

    assert event.type is PaymentEventType.FAILED
    assert event.reference == "pi_abc"
    assert event.failure_message == "Your card was declined."


def test_a_charge_refunded_event_names_the_payment_and_the_total_refunded(
    provider: StripePaymentProvider,
) -> None:
    charge = {
        "id": "ch_1",
        "object": "charge",
        "amount": 10000,
        "amount_refunded": 2550,
        "currency": "usd",
        "payment_intent": "pi_abc",
        "metadata": {},
    }
    payload = event_body("charge.refunded", charge)

    event = provider.verify_webhook(payload, stripe_header(payload))

    assert event.type is PaymentEventType.REFUNDED
    assert event.reference == "pi_abc"
    assert event.amount == Money.of("25.50", "USD")
    assert event.purchase_id is None


def test_an_event_of_no_interest_is_verified_as_other(provider: StripePaymentProvider) -> None:
    payload = event_body("customer.created", {"id": "cus_1", "object": "customer"})

    event = provider.verify_webhook(payload, stripe_header(payload))

    assert event.type is PaymentEventType.OTHER
    assert event.reference is None
    assert event.amount is None


def test_a_tampered_body_is_rejected_with_invalid_signature(
    provider: StripePaymentProvider,
) -> None:
    payload = event_body("payment_intent.succeeded", intent())
    header = stripe_header(payload)
    tampered = payload.replace(b"10000", b"99999")

    with pytest.raises(WebhookSignatureError) as caught:
        provider.verify_webhook(tampered, header)

    assert caught.value.code == "invalid_signature"
    assert caught.value.status == 400


def test_a_body_signed_with_another_secret_is_rejected(provider: StripePaymentProvider) -> None:
    payload = event_body("payment_intent.succeeded", intent())

    with pytest.raises(WebhookSignatureError):
        provider.verify_webhook(payload, stripe_header(payload, secret="whsec_someone_else"))


def test_a_stale_signature_is_rejected_even_when_genuine(provider: StripePaymentProvider) -> None:
    payload = event_body("payment_intent.succeeded", intent())
    old = int(time.time()) - 301

    with pytest.raises(WebhookSignatureError, match="tolerance"):
        provider.verify_webhook(payload, stripe_header(payload, timestamp=old))


@pytest.mark.parametrize("ahead", [301, 3600])
def test_a_signature_timestamped_in_the_future_beyond_the_tolerance_is_rejected(
    provider: StripePaymentProvider, ahead: int
) -> None:
    payload = event_body("payment_intent.succeeded", intent())
    later = int(time.time()) + ahead

    with pytest.raises(WebhookSignatureError, match="in the future"):
        provider.verify_webhook(payload, stripe_header(payload, timestamp=later))


def test_a_signature_a_little_ahead_of_our_clock_is_accepted(
    provider: StripePaymentProvider,
) -> None:
    payload = event_body("payment_intent.succeeded", intent())
    skewed = int(time.time()) + 60

    event = provider.verify_webhook(payload, stripe_header(payload, timestamp=skewed))

    assert event.type is PaymentEventType.SUCCEEDED


def test_the_tolerance_is_configurable() -> None:
    lenient = StripePaymentProvider("sk_test_x", SECRET, tolerance_seconds=3600)
    payload = event_body("payment_intent.succeeded", intent())

    event = lenient.verify_webhook(
        payload, stripe_header(payload, timestamp=int(time.time()) - 1800)
    )

    assert event.type is PaymentEventType.SUCCEEDED


@pytest.mark.parametrize("header", ["", "garbage", "t=abc,v1=00", "t=1700000000", "v1=deadbeef"])
def test_a_missing_or_malformed_signature_header_is_rejected(
    provider: StripePaymentProvider, header: str
) -> None:
    payload = event_body("payment_intent.succeeded", intent())

    with pytest.raises(WebhookSignatureError):
        provider.verify_webhook(payload, header)


def test_one_valid_signature_among_several_is_accepted_for_secret_rotation(
    provider: StripePaymentProvider,
) -> None:
    payload = event_body("payment_intent.succeeded", intent())
    good = stripe_header(payload)
    moment, signature = good.split(",")
    header = f"{moment},v1={'0' * 64},{signature}"

    assert provider.verify_webhook(payload, header).type is PaymentEventType.SUCCEEDED


def test_a_signed_body_that_is_not_an_event_is_invalid_payload(
    provider: StripePaymentProvider,
) -> None:
    for payload in (b"not json", b'{"object": "charge"}', b'{"object": "event", "id": "evt_1"}'):
        with pytest.raises(InvalidWebhookPayload) as caught:
            provider.verify_webhook(payload, stripe_header(payload))
        assert caught.value.code == "invalid_webhook_payload"


def test_a_non_utf8_body_is_rejected_as_unsigned(provider: StripePaymentProvider) -> None:
    payload = b"\xff\xfe"

    with pytest.raises(WebhookSignatureError):
        provider.verify_webhook(payload, stripe_header(payload))


def test_the_signing_helper_matches_a_locally_computed_stripe_signature() -> None:
    payload = b'{"id": "evt_1"}'

    assert sign_webhook_payload(payload, SECRET, 1_700_000_000) == stripe_header(
        payload, timestamp=1_700_000_000
    )


def test_the_fake_provider_verifies_stripe_style_signatures_too() -> None:
    fake = FakePaymentProvider(webhook_secret=SECRET)
    payload = json.dumps(
        {"id": "e", "type": "failed", "created": int(time.time()), "reference": "pi_x"}
    ).encode()

    event = fake.verify_webhook(payload, stripe_header(payload))

    assert event.type is PaymentEventType.FAILED
    with pytest.raises(WebhookSignatureError):
        fake.verify_webhook(payload + b" ", stripe_header(payload))
