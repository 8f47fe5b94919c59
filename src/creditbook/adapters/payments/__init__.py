"""Payment providers behind one interface: ``manual``, ``stripe``, and a fake for tests.

The purchase service depends on ``PaymentProvider`` only; the composition
root picks the implementation with ``build_payment_provider(name, settings)``.
See ``base`` for the contract (results, events, errors).
"""

from creditbook.adapters.payments.base import (
    InvalidWebhookPayload,
    PaymentEvent,
    PaymentEventType,
    PaymentIntentResult,
    PaymentProvider,
    PaymentProviderError,
    PaymentStatus,
    RefundResult,
    UnknownPaymentProvider,
    WebhookSignatureError,
)
from creditbook.adapters.payments.factory import PROVIDER_NAMES, build_payment_provider
from creditbook.adapters.payments.fake import FakeCall, FakePayment, FakePaymentProvider
from creditbook.adapters.payments.manual import ManualPaymentProvider
from creditbook.adapters.payments.signing import (
    DEFAULT_TOLERANCE_SECONDS,
    sign_webhook_payload,
    verify_webhook_signature,
)
from creditbook.adapters.payments.stripe_provider import StripePaymentProvider, parse_stripe_event

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "PROVIDER_NAMES",
    "FakeCall",
    "FakePayment",
    "FakePaymentProvider",
    "InvalidWebhookPayload",
    "ManualPaymentProvider",
    "PaymentEvent",
    "PaymentEventType",
    "PaymentIntentResult",
    "PaymentProvider",
    "PaymentProviderError",
    "PaymentStatus",
    "RefundResult",
    "StripePaymentProvider",
    "UnknownPaymentProvider",
    "WebhookSignatureError",
    "build_payment_provider",
    "parse_stripe_event",
    "sign_webhook_payload",
    "verify_webhook_signature",
]
