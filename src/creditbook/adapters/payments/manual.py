"""The ``manual`` provider, the default for local use: every payment succeeds at once.

No money moves through creditbook; the operator collects it by other means
(an invoice, a bank transfer). The purchase is recorded with its price and
its credits granted immediately. References are derived from the purchase id
and the idempotency key, so retries answer the same and nothing is stored.
Manual payments never produce webhooks.
"""

from __future__ import annotations

import hashlib

from creditbook.adapters.payments.base import (
    PaymentEvent,
    PaymentIntentResult,
    PaymentStatus,
    RefundResult,
    WebhookSignatureError,
)
from creditbook.domain.errors import InvalidAmount
from creditbook.domain.money import Money


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _require_positive(amount: Money, what: str) -> None:
    if amount.amount <= 0:
        raise InvalidAmount(f"{what} must be more than zero, got {amount}")


class ManualPaymentProvider:
    """Payments and refunds that complete at once, recorded only by the caller."""

    name = "manual"

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
        _require_positive(amount, "a payment")
        return PaymentIntentResult(
            status=PaymentStatus.SUCCEEDED,
            reference=f"manual_{purchase_id}",
            amount=amount,
            provider_status="succeeded",
        )

    def refund(self, *, reference: str, amount: Money, idempotency_key: str) -> RefundResult:
        _require_positive(amount, "a refund")
        return RefundResult(
            status=PaymentStatus.SUCCEEDED,
            reference=f"manual_refund_{_digest(idempotency_key)}",
            payment_reference=reference,
            amount=amount,
            provider_status="succeeded",
        )

    def verify_webhook(self, payload: bytes, signature_header: str) -> PaymentEvent:
        raise WebhookSignatureError(
            "the manual payment provider sends no webhooks; "
            "configure the stripe provider to receive payment notifications"
        )
