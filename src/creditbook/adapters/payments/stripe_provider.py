"""The ``stripe`` provider: PaymentIntents through the official SDK, credits on signed webhooks.

``create_payment`` creates a PaymentIntent (amount in minor units, metadata
``purchase_id`` and ``team_id``) and answers ``PENDING`` with the
PaymentIntent id as reference, even when Stripe already reports it
succeeded: credits are granted only when the signed
``payment_intent.succeeded`` webhook arrives, so there is one path to a
grant whatever the timing. A declined card answers ``FAILED``. Stripe's
``Idempotency-Key`` carries the caller's key, so a retried create or refund
never charges or refunds twice. ``api_base`` points the SDK at another server
(localstripe in tests).

Webhooks are verified on the raw body with the endpoint secret and a
timestamp tolerance; ``payment_intent.succeeded``,
``payment_intent.payment_failed`` and ``charge.refunded`` are mapped to typed
events, anything else is ``OTHER``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, NoReturn

import stripe
from stripe.params import CustomerCreateParams, PaymentIntentCreateParams, RefundCreateParams

from creditbook.adapters.payments.base import (
    InvalidWebhookPayload,
    PaymentEvent,
    PaymentEventType,
    PaymentIntentResult,
    PaymentProviderError,
    PaymentStatus,
    RefundResult,
)
from creditbook.adapters.payments.signing import (
    DEFAULT_TOLERANCE_SECONDS,
    verify_webhook_signature,
)
from creditbook.domain.errors import IdempotencyConflict, InvalidAmount
from creditbook.domain.money import Money

_EVENT_TYPES = {
    "payment_intent.succeeded": PaymentEventType.SUCCEEDED,
    "payment_intent.payment_failed": PaymentEventType.FAILED,
    "charge.refunded": PaymentEventType.REFUNDED,
}

_REFUND_STATUSES = {
    "succeeded": PaymentStatus.SUCCEEDED,
    "pending": PaymentStatus.PENDING,
    "requires_action": PaymentStatus.PENDING,
    "failed": PaymentStatus.FAILED,
    "canceled": PaymentStatus.FAILED,
}


class StripePaymentProvider:
    """A ``PaymentProvider`` backed by Stripe (or any server speaking its API)."""

    name = "stripe"

    def __init__(
        self,
        api_key: str,
        webhook_secret: str,
        *,
        api_base: str | None = None,
        tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
        max_network_retries: int = 2,
        http_client: stripe.HTTPClient | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a Stripe secret key (sk_...) is required")
        if not webhook_secret:
            raise ValueError("a Stripe webhook signing secret (whsec_...) is required")
        if tolerance_seconds <= 0:
            raise ValueError("tolerance_seconds must be positive")
        self._webhook_secret = webhook_secret
        self._tolerance_seconds = tolerance_seconds
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=http_client,
        )

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
        if amount.amount <= 0:
            raise InvalidAmount(f"a payment must be more than zero, got {amount}")
        params: PaymentIntentCreateParams = {
            "amount": amount.minor_units,
            "currency": amount.currency.lower(),
            "metadata": {"purchase_id": purchase_id, "team_id": team_id},
        }
        if customer is not None:
            params["customer"] = customer
        if payment_method is not None:
            params["payment_method"] = payment_method
            params["confirm"] = True
            if customer is not None:
                # A saved card charged while nobody is at the keyboard: auto-recharge.
                params["off_session"] = True
        try:
            intent = self._client.v1.payment_intents.create(
                params, {"idempotency_key": idempotency_key}
            )
        except stripe.CardError as exc:
            return self._declined(exc, amount)
        except stripe.StripeError as exc:
            self._raise(exc, "create a payment", idempotency_key)
        failed = intent.status == "canceled" or (
            payment_method is not None and intent.status == "requires_payment_method"
        )
        error = intent.last_payment_error
        return PaymentIntentResult(
            status=PaymentStatus.FAILED if failed else PaymentStatus.PENDING,
            reference=intent.id,
            amount=amount,
            client_secret=intent.client_secret,
            provider_status=intent.status,
            failure_code=error.code if failed and error is not None else None,
            failure_message=error.message if failed and error is not None else None,
        )

    def refund(self, *, reference: str, amount: Money, idempotency_key: str) -> RefundResult:
        if amount.amount <= 0:
            raise InvalidAmount(f"a refund must be more than zero, got {amount}")
        params: RefundCreateParams = {"payment_intent": reference, "amount": amount.minor_units}
        try:
            refund = self._client.v1.refunds.create(params, {"idempotency_key": idempotency_key})
        except stripe.StripeError as exc:
            self._raise(exc, f"refund payment {reference!r}", idempotency_key)
        status = refund.status or "pending"
        return RefundResult(
            status=_REFUND_STATUSES.get(status, PaymentStatus.PENDING),
            reference=refund.id,
            payment_reference=reference,
            amount=Money.from_minor(refund.amount, refund.currency.upper()),
            provider_status=status,
        )

    def verify_webhook(self, payload: bytes, signature_header: str) -> PaymentEvent:
        verify_webhook_signature(
            payload, signature_header, self._webhook_secret, self._tolerance_seconds
        )
        try:
            body = json.loads(payload)
        except ValueError as exc:
            raise InvalidWebhookPayload(f"the webhook body is not JSON: {exc}") from exc
        return parse_stripe_event(body, provider=self.name)

    # -- saved cards (auto-recharge) ----------------------------------------

    def create_customer(
        self, *, team_id: str, idempotency_key: str, email: str | None = None
    ) -> str:
        """A Stripe customer for a team, whose saved card auto-recharge will charge."""
        params: CustomerCreateParams = {"metadata": {"team_id": team_id}}
        if email:
            params["email"] = email
        try:
            customer = self._client.v1.customers.create(
                params, {"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            self._raise(exc, f"create a customer for team {team_id!r}", idempotency_key)
        return customer.id

    def attach_payment_method(self, *, customer: str, payment_method: str) -> str:
        """Save a card on a customer; returns the attached PaymentMethod id to charge later.

        Stripe's test ids (``pm_card_visa``) become a new ``pm_...`` when attached,
        so keep the returned id, not the one given.
        """
        try:
            attached = self._client.v1.payment_methods.attach(
                payment_method, {"customer": customer}
            )
        except stripe.CardError as exc:
            raise PaymentProviderError(
                f"the card was refused when saved: {exc.user_message or exc}",
                provider=self.name,
                retryable=False,
                provider_code=exc.code,
            ) from exc
        except stripe.StripeError as exc:
            self._raise(exc, f"save a card on customer {customer!r}", None)
        return attached.id

    # -- internals ---------------------------------------------------------

    def _declined(self, exc: stripe.CardError, amount: Money) -> PaymentIntentResult:
        error = exc.error
        reference: str | None = None
        if error is not None and error.payment_intent is not None:
            reference = error.payment_intent.id
        elif error is not None and error.charge:
            # Some servers (localstripe) omit the PaymentIntent from the error; its charge has it.
            reference = self._intent_of_charge(error.charge)
        return PaymentIntentResult(
            status=PaymentStatus.FAILED,
            reference=reference,
            amount=amount,
            provider_status="requires_payment_method",
            failure_code=exc.code or "card_declined",
            failure_message=exc.user_message or str(exc),
        )

    def _intent_of_charge(self, charge_id: str) -> str | None:
        try:
            charge = self._client.v1.charges.retrieve(charge_id)
        except stripe.StripeError:
            return None
        intent = charge.payment_intent
        if intent is None or isinstance(intent, str):
            return intent
        return intent.id

    def _raise(self, exc: stripe.StripeError, action: str, idempotency_key: str | None) -> NoReturn:
        if isinstance(exc, stripe.IdempotencyError) and idempotency_key is not None:
            raise IdempotencyConflict(idempotency_key) from exc
        retryable = isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or (
            exc.http_status is not None and exc.http_status >= 500
        )
        hint = ""
        if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
            hint = "; check the configured Stripe secret key"
        elif retryable:
            hint = "; retry later with the same idempotency key"
        raise PaymentProviderError(
            f"Stripe could not {action}: {exc.user_message or exc}{hint}",
            provider=self.name,
            retryable=retryable,
            provider_code=exc.code,
            provider_status=exc.http_status,
        ) from exc


def parse_stripe_event(body: Any, *, provider: str = "stripe") -> PaymentEvent:
    """A verified Stripe event body (parsed JSON) as a ``PaymentEvent``."""
    if not isinstance(body, dict) or body.get("object") != "event":
        raise InvalidWebhookPayload("the webhook body is not a Stripe event (object 'event')")
    try:
        event_id = str(body["id"])
        provider_type = str(body["type"])
        obj = body["data"]["object"]
        if not isinstance(obj, dict):
            raise TypeError("data.object is not an object")
        kind = _EVENT_TYPES.get(provider_type, PaymentEventType.OTHER)
        reference: str | None = None
        amount: Money | None = None
        failure_message: str | None = None
        if kind in (PaymentEventType.SUCCEEDED, PaymentEventType.FAILED):
            reference = str(obj["id"])
            amount = Money.from_minor(int(obj["amount"]), str(obj["currency"]).upper())
            error = obj.get("last_payment_error")
            if kind is PaymentEventType.FAILED and isinstance(error, dict):
                failure_message = error.get("message")
        elif kind is PaymentEventType.REFUNDED:
            intent = obj.get("payment_intent")
            reference = intent.get("id") if isinstance(intent, dict) else intent
            amount = Money.from_minor(int(obj["amount_refunded"]), str(obj["currency"]).upper())
        metadata = obj.get("metadata") or {}
        created = body.get("created")
        return PaymentEvent(
            event_id=event_id,
            type=kind,
            provider=provider,
            provider_type=provider_type,
            reference=reference,
            purchase_id=metadata.get("purchase_id") if kind is not PaymentEventType.OTHER else None,
            team_id=metadata.get("team_id") if kind is not PaymentEventType.OTHER else None,
            amount=amount,
            created=datetime.fromtimestamp(int(created), UTC) if created is not None else None,
            failure_message=failure_message,
            raw=body,
        )
    except (KeyError, TypeError, ValueError, AttributeError, InvalidAmount) as exc:
        raise InvalidWebhookPayload(
            f"the Stripe event is missing or has a malformed field: {exc!r}"
        ) from exc
