"""Fixtures for Stripe tests against localstripe: the server, a webhook receiver, a provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from localstripe_server import WebhookReceiver, register_webhook, run_localstripe

from creditbook.adapters.payments import StripePaymentProvider

WEBHOOK_SECRET = "whsec_creditbook_integration"
API_KEY = "sk_test_creditbook"


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    with run_localstripe() as base_url:
        yield base_url


@pytest.fixture(scope="session")
def webhook_receiver(localstripe_url: str) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    register_webhook(localstripe_url, "creditbook", url=receiver.url, secret=WEBHOOK_SECRET)
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def stripe_provider(localstripe_url: str) -> StripePaymentProvider:
    return StripePaymentProvider(
        API_KEY, WEBHOOK_SECRET, api_base=localstripe_url, max_network_retries=0
    )
