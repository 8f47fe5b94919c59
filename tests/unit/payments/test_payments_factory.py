"""Choosing and configuring the payment provider from settings."""

from __future__ import annotations

import pytest

from creditbook.adapters.payments import (
    ManualPaymentProvider,
    StripePaymentProvider,
    UnknownPaymentProvider,
    build_payment_provider,
)
from creditbook.domain.errors import InvalidInput


def test_manual_needs_no_settings() -> None:
    assert isinstance(build_payment_provider("manual", {}), ManualPaymentProvider)


def test_stripe_is_built_from_its_keys() -> None:
    provider = build_payment_provider(
        "stripe",
        {
            "stripe_api_key": "sk_test_1",
            "stripe_webhook_secret": "whsec_1",
            "stripe_api_base": "http://127.0.0.1:8420",
        },
    )

    assert isinstance(provider, StripePaymentProvider)
    assert provider.name == "stripe"


def test_stripe_accepts_environment_style_names() -> None:
    provider = build_payment_provider(
        "Stripe",
        {"CREDITBOOK_STRIPE_API_KEY": "sk_test_1", "CREDITBOOK_STRIPE_WEBHOOK_SECRET": "whsec_1"},
    )

    assert isinstance(provider, StripePaymentProvider)


def test_stripe_without_its_secrets_says_which_are_missing() -> None:
    with pytest.raises(InvalidInput) as caught:
        build_payment_provider("stripe", {"stripe_api_key": "sk_test_1"})

    assert caught.value.details["missing"] == ["stripe_webhook_secret"]
    assert "stripe_webhook_secret" in caught.value.message


def test_a_bad_tolerance_is_refused() -> None:
    with pytest.raises(InvalidInput, match="stripe_webhook_tolerance_seconds"):
        build_payment_provider(
            "stripe",
            {
                "stripe_api_key": "sk_test_1",
                "stripe_webhook_secret": "whsec_1",
                "stripe_webhook_tolerance_seconds": "0",
            },
        )


def test_an_unknown_provider_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownPaymentProvider) as caught:
        build_payment_provider("paypal", {})

    assert caught.value.code == "unknown_payment_provider"
    assert caught.value.details["valid"] == ["manual", "stripe"]
