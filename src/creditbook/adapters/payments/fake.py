"""A scriptable in-memory payment provider for unit tests of the purchase service.

By default every payment succeeds at once. Script the next outcomes with
``succeed_next``, ``pend_next``, ``fail_next`` or ``error_next``; inspect
``calls`` (every call, retries included), ``payments`` and ``refunds``.
It keeps Stripe's contracts that the service relies on: an idempotency key
replays the first answer (and is a conflict with a different request), a
refund never exceeds what was paid, and ``webhook(...)`` makes a signed body
that ``verify_webhook`` accepts, so webhook handling is tested end to end
without a network.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from creditbook.adapters.payments.base import (
    InvalidWebhookPayload,
    PaymentEvent,
    PaymentEventType,
    PaymentIntentResult,
    PaymentProviderError,
    PaymentStatus,
    RefundResult,
)
from creditbook.adapters.payments.signing import sign_webhook_payload, verify_webhook_signature
from creditbook.domain.errors import IdempotencyConflict, InvalidAmount
from creditbook.domain.money import Money


@dataclass(frozen=True, slots=True)
class FakeCall:
    """One call the fake received, with its keyword arguments."""

    method: str
    kwargs: dict[str, Any]


@dataclass(slots=True)
class FakePayment:
    """A payment the fake created, and how much of it was refunded."""

    purchase_id: str
    team_id: str
    result: PaymentIntentResult
    customer: str | None
    payment_method: str | None
    refunded: Money


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: PaymentStatus
    failure_code: str | None = None
    failure_message: str | None = None
    error: PaymentProviderError | None = None


@dataclass(slots=True)
class _Replay:
    request: tuple[Any, ...]
    answer: Any = field(default=None)


class FakePaymentProvider:
    """An in-memory ``PaymentProvider`` whose outcomes the test decides."""

    def __init__(
        self,
        name: str = "fake",
        *,
        webhook_secret: str = "whsec_fake",
        default_status: PaymentStatus = PaymentStatus.SUCCEEDED,
    ) -> None:
        self.name = name
        self.webhook_secret = webhook_secret
        self.default_status = default_status
        self.calls: list[FakeCall] = []
        self.payments: dict[str, FakePayment] = {}
        self.refunds: list[RefundResult] = []
        self._script: deque[_Outcome] = deque()
        self._replays: dict[tuple[str, str], _Replay] = {}
        self._ids = itertools.count(1)

    # -- scripting ---------------------------------------------------------

    def succeed_next(self, times: int = 1) -> None:
        self._script.extend(_Outcome(PaymentStatus.SUCCEEDED) for _ in range(times))

    def pend_next(self, times: int = 1) -> None:
        self._script.extend(_Outcome(PaymentStatus.PENDING) for _ in range(times))

    def fail_next(
        self, code: str = "card_declined", message: str = "Your card was declined."
    ) -> None:
        self._script.append(_Outcome(PaymentStatus.FAILED, code, message))

    def error_next(self, *, retryable: bool = True, message: str = "provider unreachable") -> None:
        error = PaymentProviderError(message, provider=self.name, retryable=retryable)
        self._script.append(_Outcome(PaymentStatus.FAILED, error=error))

    def calls_to(self, method: str) -> list[FakeCall]:
        return [call for call in self.calls if call.method == method]

    # -- PaymentProvider ---------------------------------------------------

    def create_payment(
        self,
        *,
        purchase_id: str,
        team_id: str,
        amount: Money,
        idempotency_key: str,
        customer: str | None = None,
        payment_method: str | None = None,
    ) -> PaymentIntentResult:
        kwargs: dict[str, Any] = {
            "purchase_id": purchase_id,
            "team_id": team_id,
            "amount": amount,
            "idempotency_key": idempotency_key,
            "customer": customer,
            "payment_method": payment_method,
        }
        self.calls.append(FakeCall("create_payment", kwargs))
        if amount.amount <= 0:
            raise InvalidAmount(f"a payment must be more than zero, got {amount}")
        request = (purchase_id, team_id, amount, customer, payment_method)
        replay = self._replay("create_payment", idempotency_key, request)
        if replay is not None:
            answer: PaymentIntentResult = replay
            return answer
        outcome = self._script.popleft() if self._script else _Outcome(self.default_status)
        if outcome.error is not None:
            # A provider error leaves nothing behind: the same key may be retried.
            del self._replays[("create_payment", idempotency_key)]
            raise outcome.error
        reference = f"fake_pi_{next(self._ids)}"
        result = PaymentIntentResult(
            status=outcome.status,
            reference=reference,
            amount=amount,
            client_secret=(
                f"{reference}_secret" if outcome.status is PaymentStatus.PENDING else None
            ),
            provider_status=outcome.status.value,
            failure_code=outcome.failure_code,
            failure_message=outcome.failure_message,
        )
        self.payments[reference] = FakePayment(
            purchase_id=purchase_id,
            team_id=team_id,
            result=result,
            customer=customer,
            payment_method=payment_method,
            refunded=Money.of(0, amount.currency),
        )
        self._replays[("create_payment", idempotency_key)].answer = result
        return result

    def refund(self, *, reference: str, amount: Money, idempotency_key: str) -> RefundResult:
        self.calls.append(
            FakeCall(
                "refund",
                {"reference": reference, "amount": amount, "idempotency_key": idempotency_key},
            )
        )
        replay = self._replay("refund", idempotency_key, (reference, amount))
        if replay is not None:
            answer: RefundResult = replay
            return answer
        try:
            result = self._refund(reference, amount)
        except Exception:
            del self._replays[("refund", idempotency_key)]
            raise
        self._replays[("refund", idempotency_key)].answer = result
        return result

    def verify_webhook(self, payload: bytes, signature_header: str) -> PaymentEvent:
        verify_webhook_signature(payload, signature_header, self.webhook_secret)
        try:
            body = json.loads(payload)
            amount = None
            if body.get("amount") is not None:
                amount = Money.of(body["amount"], body["currency"])
            return PaymentEvent(
                event_id=str(body["id"]),
                type=PaymentEventType(body["type"]),
                provider=self.name,
                provider_type=str(body["type"]),
                reference=body.get("reference"),
                purchase_id=body.get("purchase_id"),
                team_id=body.get("team_id"),
                amount=amount,
                created=datetime.fromtimestamp(int(body["created"]), UTC),
                failure_message=body.get("failure_message"),
                raw=body,
            )
        except (ValueError, KeyError, TypeError, InvalidAmount) as exc:
            raise InvalidWebhookPayload(f"the webhook body is not a fake event: {exc}") from exc

    # -- webhooks for tests ------------------------------------------------

    def webhook(
        self,
        event_type: PaymentEventType,
        reference: str,
        *,
        amount: Money | None = None,
        event_id: str | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
        failure_message: str | None = None,
    ) -> tuple[bytes, str]:
        """A (body, Stripe-Signature header) pair announcing ``event_type`` for a payment.

        Purchase and team ids and the amount default to those of the payment
        ``reference`` (for ``REFUNDED``, to the total refunded so far).
        """
        payment = self.payments.get(reference)
        if amount is None and payment is not None:
            amount = (
                payment.refunded
                if event_type is PaymentEventType.REFUNDED
                else payment.result.amount
            )
        moment = int(datetime.now(UTC).timestamp()) if timestamp is None else timestamp
        body = {
            "id": event_id or f"fake_evt_{next(self._ids)}",
            "type": event_type.value,
            "created": moment,
            "reference": reference,
            "purchase_id": payment.purchase_id if payment else None,
            "team_id": payment.team_id if payment else None,
            "amount": str(amount.amount) if amount else None,
            "currency": amount.currency if amount else None,
            "failure_message": failure_message,
        }
        payload = json.dumps(body, sort_keys=True).encode("utf-8")
        return payload, sign_webhook_payload(payload, secret or self.webhook_secret, moment)

    # -- internals ---------------------------------------------------------

    def _replay(self, method: str, key: str, request: tuple[Any, ...]) -> Any:
        seen = self._replays.get((method, key))
        if seen is None:
            self._replays[(method, key)] = _Replay(request)
            return None
        if seen.request != request:
            raise IdempotencyConflict(key)
        return seen.answer

    def _refund(self, reference: str, amount: Money) -> RefundResult:
        payment = self.payments.get(reference)
        if payment is None:
            raise PaymentProviderError(
                f"no payment {reference!r} to refund", provider=self.name, retryable=False
            )
        if payment.result.status is not PaymentStatus.SUCCEEDED:
            raise PaymentProviderError(
                f"payment {reference!r} is {payment.result.status.value}; "
                "only a succeeded payment can be refunded",
                provider=self.name,
                retryable=False,
            )
        if amount.currency != payment.result.amount.currency or amount.amount <= 0:
            raise InvalidAmount(
                f"refund of {amount} refused: give a positive amount in "
                f"{payment.result.amount.currency}"
            )
        left = payment.result.amount.amount - payment.refunded.amount
        if amount.amount > left:
            raise PaymentProviderError(
                f"refund of {amount} refused: only {left} {amount.currency} of payment "
                f"{reference!r} is left to refund",
                provider=self.name,
                retryable=False,
            )
        payment.refunded = Money.of(payment.refunded.amount + amount.amount, amount.currency)
        result = RefundResult(
            status=PaymentStatus.SUCCEEDED,
            reference=f"fake_re_{next(self._ids)}",
            payment_reference=reference,
            amount=amount,
            provider_status="succeeded",
        )
        self.refunds.append(result)
        return result

    def mark_succeeded(self, reference: str) -> None:
        """Settle a ``PENDING`` payment, as the provider would before sending its webhook."""
        payment = self.payments[reference]
        result = payment.result
        payment.result = PaymentIntentResult(
            status=PaymentStatus.SUCCEEDED,
            reference=result.reference,
            amount=result.amount,
            provider_status="succeeded",
        )
