"""Build the configured payment provider from plain settings (used by the composition root).

Settings keys (case-insensitive, an optional ``creditbook_`` prefix is
ignored so environment-style names work too):

    stripe_api_key                    secret key, sk_...            (stripe: required)
    stripe_webhook_secret             endpoint signing secret       (stripe: required)
    stripe_api_base                   API base URL (localstripe)    (optional)
    stripe_webhook_tolerance_seconds  max signature age, default 300 (optional)
    stripe_max_network_retries        SDK retries, default 2        (optional)
"""

from __future__ import annotations

from collections.abc import Mapping

from creditbook.adapters.payments.base import PaymentProvider, UnknownPaymentProvider
from creditbook.adapters.payments.manual import ManualPaymentProvider
from creditbook.adapters.payments.signing import DEFAULT_TOLERANCE_SECONDS
from creditbook.adapters.payments.stripe_provider import StripePaymentProvider
from creditbook.domain.errors import InvalidInput

PROVIDER_NAMES = ("manual", "stripe")


def _normalized(settings: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in settings.items():
        name = key.lower()
        name = name.removeprefix("creditbook_")
        found[name] = value
    return found


def _positive_int(settings: Mapping[str, str], key: str, default: int) -> int:
    text = settings.get(key, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0 or (value == 0 and key.endswith("tolerance_seconds")):
        raise InvalidInput(f"setting {key} must be a whole number above zero, got {text!r}")
    return value


def build_payment_provider(name: str, settings: Mapping[str, str]) -> PaymentProvider:
    """The provider called ``name`` (``manual`` or ``stripe``), configured from ``settings``."""
    choice = name.strip().lower()
    if choice == "manual":
        return ManualPaymentProvider()
    if choice != "stripe":
        raise UnknownPaymentProvider(name, list(PROVIDER_NAMES))
    values = _normalized(settings)
    required = ("stripe_api_key", "stripe_webhook_secret")
    missing = [key for key in required if not values.get(key, "").strip()]
    if missing:
        raise InvalidInput(
            f"the stripe payment provider needs {' and '.join(missing)}; "
            "set them (e.g. CREDITBOOK_STRIPE_API_KEY=sk_..., "
            "CREDITBOOK_STRIPE_WEBHOOK_SECRET=whsec_...) or use the manual provider",
            missing=missing,
        )
    return StripePaymentProvider(
        values["stripe_api_key"].strip(),
        values["stripe_webhook_secret"].strip(),
        api_base=values.get("stripe_api_base", "").strip() or None,
        tolerance_seconds=_positive_int(
            values, "stripe_webhook_tolerance_seconds", DEFAULT_TOLERANCE_SECONDS
        ),
        max_network_retries=_positive_int(values, "stripe_max_network_retries", 2),
    )
