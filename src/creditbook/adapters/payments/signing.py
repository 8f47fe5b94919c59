"""Stripe-style webhook signatures: ``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256>``.

The HMAC is computed with the endpoint's secret over ``f"{t}.{raw body}"``.
Verification is the Stripe SDK's own (``stripe.WebhookSignature``), so
creditbook accepts exactly what Stripe sends; ``sign_webhook_payload`` makes
such headers for the fake provider and for tests that post webhooks.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import stripe

from creditbook.adapters.payments.base import WebhookSignatureError

DEFAULT_TOLERANCE_SECONDS = 300


def sign_webhook_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``payload`` signed with ``secret``."""
    moment = int(time.time()) if timestamp is None else timestamp
    signed = str(moment).encode("ascii") + b"." + payload
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


def verify_webhook_signature(
    payload: bytes,
    signature_header: str | None,
    secret: str,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Raise ``WebhookSignatureError`` unless ``payload`` was signed with ``secret`` recently.

    ``tolerance_seconds`` bounds the age of the signature's timestamp, which
    is what defeats the replay of an old, genuinely signed body, and how far
    in the future it may be (clock skew): the SDK checks only the past, and a
    body signed with a timestamp far ahead would stay replayable until then.
    """
    if tolerance_seconds <= 0:
        # The SDK skips the age check on a falsy tolerance; never allow that silently.
        raise ValueError("tolerance_seconds must be positive")
    if not signature_header:
        raise WebhookSignatureError(
            "the webhook has no Stripe-Signature header; "
            "expected 't=<unix time>,v1=<hex HMAC-SHA256 of \"t.body\">'"
        )
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookSignatureError("the webhook body is not UTF-8, so it was not signed") from exc
    try:
        stripe.WebhookSignature.verify_header(
            payload, signature_header, secret, tolerance=tolerance_seconds
        )
    except stripe.SignatureVerificationError as exc:
        raise WebhookSignatureError(
            f"webhook signature rejected: {exc.user_message or exc}; the body must be the "
            f"raw bytes received, signed with this endpoint's secret less than "
            f"{tolerance_seconds} s ago",
            tolerance_seconds=tolerance_seconds,
        ) from exc
    # The SDK has checked that t= is a whole number; only how far ahead is left.
    ahead = _timestamp(signature_header) - time.time()
    if ahead > tolerance_seconds:
        raise WebhookSignatureError(
            f"webhook signature rejected: its timestamp is {int(ahead)} s in the future, "
            f"beyond the tolerance of {tolerance_seconds} s; check the sender's clock",
            tolerance_seconds=tolerance_seconds,
        )


def _timestamp(signature_header: str) -> int:
    for item in signature_header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t":
            return int(value)
    raise WebhookSignatureError("the Stripe-Signature header has no timestamp (t=...)")
