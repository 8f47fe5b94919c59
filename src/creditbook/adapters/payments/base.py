"""The payment provider interface: what the purchase service may ask of any provider.

A provider takes money for a purchase (``create_payment``), gives it back
(``refund``) and turns a provider's signed notification into a typed
``PaymentEvent`` (``verify_webhook``). Providers never touch credits: the
purchase service grants credits when a payment is known to have succeeded,
either at once (``PaymentIntentResult.status == SUCCEEDED``, the ``manual``
provider) or when a verified ``PaymentEvent`` of type ``SUCCEEDED`` arrives
(``stripe``). Every call that moves money carries an idempotency key that the
provider passes on, so a retried call never charges or refunds twice.

Card declines are answers, not exceptions: ``create_payment`` returns a
``FAILED`` result with the provider's reason. Exceptions are kept for what the
caller must handle differently: a provider that cannot be reached or refuses
the request (``PaymentProviderError``), a forged or stale webhook
(``WebhookSignatureError``), a verified webhook that is not an event
(``InvalidWebhookPayload``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from creditbook.domain.errors import CreditbookError, InvalidInput
from creditbook.domain.money import Money


class PaymentStatus(StrEnum):
    """Where a payment or refund stands after the provider answered."""

    SUCCEEDED = "succeeded"  # money moved; credits may be granted (or taken back) now
    PENDING = "pending"  # wait for a webhook; grant nothing yet
    FAILED = "failed"  # no money moved; the reason is in failure_code/failure_message


class PaymentEventType(StrEnum):
    """The kinds of provider notification the purchase service acts on."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"
    OTHER = "other"  # verified but of no interest; acknowledge and ignore


@dataclass(frozen=True, slots=True)
class PaymentIntentResult:
    """The provider's answer to ``create_payment``.

    ``reference`` is the provider's id for the payment (a Stripe PaymentIntent
    id ``pi_...``); store it on the purchase, webhooks name it. It is ``None``
    only when a provider refused before creating anything.
    ``client_secret`` lets a browser finish a ``PENDING`` payment (Stripe.js).
    ``provider_status`` is the provider's own word (``requires_action``...),
    for display and logs only.
    """

    status: PaymentStatus
    reference: str | None
    amount: Money
    client_secret: str | None = None
    provider_status: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True, slots=True)
class RefundResult:
    """The provider's answer to ``refund``; ``reference`` is the refund's id (``re_...``)."""

    status: PaymentStatus
    reference: str
    payment_reference: str
    amount: Money
    provider_status: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """A verified provider notification.

    ``event_id`` is unique per event and stable across the provider's retries:
    record it to act on each event exactly once. ``reference`` is the payment's
    provider reference (the PaymentIntent id), the key to find the purchase;
    ``purchase_id`` and ``team_id`` come from the metadata set at creation
    and may be ``None`` for payments made outside creditbook.
    ``amount`` is the amount paid for ``SUCCEEDED``/``FAILED`` and the
    cumulative amount refunded so far for ``REFUNDED`` (so acting on it is
    idempotent: take back credits up to that total).
    """

    event_id: str
    type: PaymentEventType
    provider: str
    provider_type: str
    reference: str | None
    purchase_id: str | None
    team_id: str | None
    amount: Money | None
    created: datetime | None = None
    failure_message: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@runtime_checkable
class PaymentProvider(Protocol):
    """A payment provider as the purchase service sees it."""

    @property
    def name(self) -> str: ...

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
        """Start taking ``amount`` for a purchase.

        With ``payment_method`` the payment is confirmed at once; with
        ``customer`` as well it is an off-session charge of a saved card
        (auto-recharge). Without it the result is ``PENDING`` with a
        ``client_secret`` for the browser. The same ``idempotency_key`` always
        designates the same payment.
        """
        ...

    def refund(self, *, reference: str, amount: Money, idempotency_key: str) -> RefundResult:
        """Give back ``amount`` (at most what was paid) of the payment ``reference``."""
        ...

    def verify_webhook(self, payload: bytes, signature_header: str) -> PaymentEvent:
        """Check a notification's signature on the raw body and return its event."""
        ...


class WebhookSignatureError(CreditbookError):
    """A webhook whose signature is missing, forged, made with another secret, or stale."""

    code = "invalid_signature"
    status = 400
    exit_code = 2
    title = "Invalid webhook signature"


class InvalidWebhookPayload(InvalidInput):
    """A correctly signed webhook whose body is not an event this provider understands."""

    code = "invalid_webhook_payload"


class UnknownPaymentProvider(InvalidInput):
    code = "unknown_payment_provider"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"unknown payment provider {name!r}; valid providers: {', '.join(sorted(known))}",
            provider=name,
            valid=sorted(known),
        )


class PaymentProviderError(CreditbookError):
    """The provider could not be reached or refused the request (not a card decline).

    ``retryable`` says whether sending the same request again with the same
    idempotency key may succeed (network trouble, provider outage) or not
    (the provider rejected the request itself).
    """

    code = "payment_provider_error"
    status = 502
    exit_code = 9
    title = "Payment provider error"

    def __init__(self, message: str, *, provider: str, retryable: bool, **details: Any) -> None:
        super().__init__(message, provider=provider, retryable=retryable, **details)
        self.retryable = retryable
