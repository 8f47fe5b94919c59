"""The fake provider that unit tests of the purchase service script."""

from __future__ import annotations

import pytest

from creditbook.adapters.payments import (
    FakePaymentProvider,
    PaymentEventType,
    PaymentIntentResult,
    PaymentProvider,
    PaymentProviderError,
    PaymentStatus,
    WebhookSignatureError,
)
from creditbook.domain.errors import IdempotencyConflict, InvalidAmount
from creditbook.domain.money import Money

USD_100 = Money.of("100.00", "USD")


def pay(
    fake: FakePaymentProvider,
    key: str,
    purchase_id: str = "pur_1",
    *,
    customer: str | None = None,
    payment_method: str | None = None,
) -> PaymentIntentResult:
    return fake.create_payment(
        purchase_id=purchase_id,
        team_id="team_1",
        amount=USD_100,
        idempotency_key=key,
        customer=customer,
        payment_method=payment_method,
    )


def test_the_fake_succeeds_by_default_and_records_every_call() -> None:
    fake = FakePaymentProvider()

    result = pay(fake, "k1", customer="cus_1", payment_method="pm_1")

    assert isinstance(fake, PaymentProvider)
    assert result.status is PaymentStatus.SUCCEEDED
    assert result.amount == USD_100
    assert [call.method for call in fake.calls] == ["create_payment"]
    assert fake.calls[0].kwargs["payment_method"] == "pm_1"
    assert fake.payments[result.reference or ""].customer == "cus_1"


def test_scripted_outcomes_are_used_in_order_then_the_default_returns() -> None:
    fake = FakePaymentProvider()
    fake.fail_next(code="card_declined", message="declined by the test")
    fake.pend_next()

    failed = pay(fake, "k1", "p1")
    pending = pay(fake, "k2", "p2")
    default = pay(fake, "k3", "p3")

    assert failed.status is PaymentStatus.FAILED
    assert failed.failure_code == "card_declined"
    assert failed.failure_message == "declined by the test"
    assert pending.status is PaymentStatus.PENDING
    assert pending.client_secret is not None
    assert default.status is PaymentStatus.SUCCEEDED


def test_a_retried_key_replays_the_first_answer_without_using_the_script() -> None:
    fake = FakePaymentProvider()
    fake.pend_next()
    fake.fail_next()

    first = pay(fake, "same")
    again = pay(fake, "same")
    next_one = pay(fake, "other", "pur_2")

    assert first == again
    assert first.status is PaymentStatus.PENDING
    assert next_one.status is PaymentStatus.FAILED
    assert len(fake.payments) == 2
    assert len(fake.calls) == 3


def test_a_key_reused_for_another_purchase_is_a_conflict() -> None:
    fake = FakePaymentProvider()
    pay(fake, "same", "pur_1")

    with pytest.raises(IdempotencyConflict):
        pay(fake, "same", "pur_2")


def test_a_provider_error_leaves_the_key_free_for_a_retry() -> None:
    fake = FakePaymentProvider()
    fake.error_next(retryable=True)

    with pytest.raises(PaymentProviderError) as caught:
        pay(fake, "k")
    retried = pay(fake, "k")

    assert caught.value.retryable is True
    assert caught.value.code == "payment_provider_error"
    assert retried.status is PaymentStatus.SUCCEEDED
    assert len(fake.payments) == 1


def test_a_refund_never_exceeds_what_was_paid() -> None:
    fake = FakePaymentProvider()
    reference = pay(fake, "k").reference or ""

    first = fake.refund(reference=reference, amount=Money.of("60.00", "USD"), idempotency_key="r1")
    replay = fake.refund(reference=reference, amount=Money.of("60.00", "USD"), idempotency_key="r1")
    with pytest.raises(PaymentProviderError, match=r"only 40.00 USD .* left"):
        fake.refund(reference=reference, amount=Money.of("40.01", "USD"), idempotency_key="r2")
    rest = fake.refund(reference=reference, amount=Money.of("40.00", "USD"), idempotency_key="r2")

    assert first == replay
    assert first.status is PaymentStatus.SUCCEEDED
    assert rest.amount == Money.of("40.00", "USD")
    assert fake.payments[reference].refunded == USD_100
    assert len(fake.refunds) == 2


def test_a_failed_payment_cannot_be_refunded() -> None:
    fake = FakePaymentProvider()
    fake.fail_next()
    reference = pay(fake, "k").reference or ""

    with pytest.raises(PaymentProviderError, match="only a succeeded payment"):
        fake.refund(reference=reference, amount=USD_100, idempotency_key="r")


def test_a_refund_in_another_currency_is_refused() -> None:
    fake = FakePaymentProvider()
    reference = pay(fake, "k").reference or ""

    with pytest.raises(InvalidAmount):
        fake.refund(reference=reference, amount=Money.of("1.00", "EUR"), idempotency_key="r")


def test_a_fake_webhook_verifies_into_a_typed_event() -> None:
    fake = FakePaymentProvider()
    fake.pend_next()
    reference = pay(fake, "k").reference or ""
    fake.mark_succeeded(reference)

    payload, signature = fake.webhook(PaymentEventType.SUCCEEDED, reference, event_id="evt_1")
    event = fake.verify_webhook(payload, signature)

    assert event.event_id == "evt_1"
    assert event.type is PaymentEventType.SUCCEEDED
    assert event.reference == reference
    assert event.purchase_id == "pur_1"
    assert event.team_id == "team_1"
    assert event.amount == USD_100
    assert fake.payments[reference].result.status is PaymentStatus.SUCCEEDED


def test_a_fake_refund_webhook_carries_the_total_refunded() -> None:
    fake = FakePaymentProvider()
    reference = pay(fake, "k").reference or ""
    fake.refund(reference=reference, amount=Money.of("30.00", "USD"), idempotency_key="r1")
    fake.refund(reference=reference, amount=Money.of("20.00", "USD"), idempotency_key="r2")

    event = fake.verify_webhook(*fake.webhook(PaymentEventType.REFUNDED, reference))

    assert event.type is PaymentEventType.REFUNDED
    assert event.amount == Money.of("50.00", "USD")


def test_a_fake_webhook_signed_with_another_secret_is_rejected() -> None:
    fake = FakePaymentProvider()
    reference = pay(fake, "k").reference or ""

    payload, signature = fake.webhook(PaymentEventType.SUCCEEDED, reference, secret="whsec_evil")

    with pytest.raises(WebhookSignatureError):
        fake.verify_webhook(payload, signature)
