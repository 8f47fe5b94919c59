"""What the Stripe provider sends and how it reads Stripe's answers.

The real SDK runs; only its transport is replaced by a recording one that
answers like Stripe (including the shapes localstripe does not produce,
such as a decline that names its PaymentIntent).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe

from creditbook.adapters.payments import (
    PaymentProvider,
    PaymentProviderError,
    PaymentStatus,
    StripePaymentProvider,
)
from creditbook.domain.errors import IdempotencyConflict
from creditbook.domain.money import Money


@dataclass
class Sent:
    method: str
    path: str
    headers: Mapping[str, str]
    form: dict[str, str]


Answer = Callable[[Sent], tuple[int, dict[str, Any]]]


class RecordingClient(stripe.HTTPClient):
    name: ClassVar[str] = "recording"

    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self.answer = answer
        self.sent: list[Sent] = []

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: Any = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        form = dict(parse_qsl(post_data or "", keep_blank_values=True))
        sent = Sent(method, urlsplit(url).path, dict(headers or {}), form)
        self.sent.append(sent)
        status, body = self.answer(sent)
        return json.dumps(body), status, {}

    def close(self) -> None:
        pass


def intent_answer(status: str = "succeeded") -> Answer:
    def answer(sent: Sent) -> tuple[int, dict[str, Any]]:
        return 200, {
            "id": "pi_123",
            "object": "payment_intent",
            "amount": int(sent.form.get("amount", "0")),
            "currency": sent.form.get("currency", "usd"),
            "status": status,
            "client_secret": "pi_123_secret_abc",
            "last_payment_error": None,
        }

    return answer


def provider_with(answer: Answer) -> tuple[StripePaymentProvider, RecordingClient]:
    client = RecordingClient(answer)
    provider = StripePaymentProvider(
        "sk_test_unit", "whsec_unit", max_network_retries=0, http_client=client
    )
    return provider, client


def test_a_payment_is_created_in_minor_units_with_metadata_and_the_idempotency_key() -> None:
    provider, client = provider_with(intent_answer("requires_payment_method"))

    result = provider.create_payment(
        purchase_id="pur_9",
        team_id="team_9",
        amount=Money.of("100.00", "USD"),
        idempotency_key="purchase:pur_9",
    )

    assert isinstance(provider, PaymentProvider)
    (sent,) = client.sent
    assert (sent.method, sent.path) == ("post", "/v1/payment_intents")
    assert sent.headers["Idempotency-Key"] == "purchase:pur_9"
    assert sent.form == {
        "amount": "10000",
        "currency": "usd",
        "metadata[purchase_id]": "pur_9",
        "metadata[team_id]": "team_9",
    }
    assert result.status is PaymentStatus.PENDING
    assert result.reference == "pi_123"
    assert result.client_secret == "pi_123_secret_abc"
    assert result.provider_status == "requires_payment_method"


def test_a_payment_stripe_calls_succeeded_is_still_pending_until_its_webhook() -> None:
    provider, client = provider_with(intent_answer("succeeded"))

    result = provider.create_payment(
        purchase_id="p",
        team_id="t",
        amount=Money.of("5.00", "USD"),
        idempotency_key="k",
        payment_method="pm_card_visa",
    )

    assert client.sent[0].form["confirm"] == "true"
    assert "off_session" not in client.sent[0].form
    assert result.status is PaymentStatus.PENDING
    assert result.provider_status == "succeeded"


def test_a_saved_card_is_charged_off_session() -> None:
    provider, client = provider_with(intent_answer("succeeded"))

    provider.create_payment(
        purchase_id="p",
        team_id="t",
        amount=Money.of("50.00", "EUR"),
        idempotency_key="k",
        customer="cus_1",
        payment_method="pm_saved",
    )

    form = client.sent[0].form
    assert form["customer"] == "cus_1"
    assert form["payment_method"] == "pm_saved"
    assert form["confirm"] == "true"
    assert form["off_session"] == "true"
    assert form["currency"] == "eur"


def test_a_zero_decimal_currency_is_sent_in_whole_units() -> None:
    provider, client = provider_with(intent_answer("requires_payment_method"))

    provider.create_payment(
        purchase_id="p", team_id="t", amount=Money.of(1500, "JPY"), idempotency_key="k"
    )

    assert client.sent[0].form["amount"] == "1500"


def test_a_decline_that_names_its_payment_intent_fails_with_that_reference() -> None:
    def decline(sent: Sent) -> tuple[int, dict[str, Any]]:
        return 402, {
            "error": {
                "type": "card_error",
                "code": "card_declined",
                "message": "Your card was declined.",
                "charge": "ch_1",
                "payment_intent": {"id": "pi_declined", "object": "payment_intent"},
            }
        }

    provider, client = provider_with(decline)

    result = provider.create_payment(
        purchase_id="p",
        team_id="t",
        amount=Money.of("5.00", "USD"),
        idempotency_key="k",
        payment_method="pm_card_chargeDeclined",
    )

    assert result.status is PaymentStatus.FAILED
    assert result.reference == "pi_declined"
    assert result.failure_code == "card_declined"
    assert result.failure_message == "Your card was declined."
    assert len(client.sent) == 1


def test_a_key_reused_with_another_request_is_an_idempotency_conflict() -> None:
    def conflict(sent: Sent) -> tuple[int, dict[str, Any]]:
        return 400, {
            "error": {
                "type": "idempotency_error",
                "message": "Keys for idempotent requests can only be used with the same "
                "parameters they were first used with.",
            }
        }

    provider, _ = provider_with(conflict)

    with pytest.raises(IdempotencyConflict) as caught:
        provider.create_payment(
            purchase_id="p", team_id="t", amount=Money.of("1.00", "USD"), idempotency_key="k"
        )

    assert caught.value.details["idempotency_key"] == "k"


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        (500, "api_error", True),
        (429, "rate_limit_error", True),
        (401, "authentication_error", False),
        (400, "invalid_request_error", False),
    ],
)
def test_stripe_errors_become_provider_errors_that_say_whether_to_retry(
    status: int, error_type: str, retryable: bool
) -> None:
    def fail(sent: Sent) -> tuple[int, dict[str, Any]]:
        return status, {"error": {"type": error_type, "message": "stripe says no"}}

    provider, _ = provider_with(fail)

    with pytest.raises(PaymentProviderError) as caught:
        provider.refund(reference="pi_1", amount=Money.of("1.00", "USD"), idempotency_key="r")

    assert caught.value.retryable is retryable
    assert caught.value.status == 502
    assert "stripe says no" in caught.value.message


def test_a_refund_names_the_payment_intent_amount_and_idempotency_key() -> None:
    def refund(sent: Sent) -> tuple[int, dict[str, Any]]:
        return 200, {
            "id": "re_1",
            "object": "refund",
            "amount": int(sent.form["amount"]),
            "currency": "usd",
            "payment_intent": sent.form["payment_intent"],
            "status": "pending",
        }

    provider, client = provider_with(refund)

    result = provider.refund(
        reference="pi_1", amount=Money.of("12.34", "USD"), idempotency_key="refund:pur_1:1"
    )

    (sent,) = client.sent
    assert sent.path == "/v1/refunds"
    assert sent.form == {"payment_intent": "pi_1", "amount": "1234"}
    assert sent.headers["Idempotency-Key"] == "refund:pur_1:1"
    assert result.status is PaymentStatus.PENDING
    assert result.reference == "re_1"
    assert result.amount == Money.of("12.34", "USD")
