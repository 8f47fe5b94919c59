"""Outgoing team webhooks: the sender interface, an HTTP sender, a fake, and the signature.

The notification service (``creditbook.service.notifications``) signs each
alert with the team's secret and hands it to a ``WebhookSender``; the HTTP
sender posts it, the fake records it for unit tests.
"""

from creditbook.adapters.notify.base import (
    SIGNATURE_HEADER,
    SendResult,
    WebhookSender,
    sign_body,
    verify_signature,
)
from creditbook.adapters.notify.fake import FakeWebhookSender, SentWebhook
from creditbook.adapters.notify.http import HttpWebhookSender

__all__ = [
    "SIGNATURE_HEADER",
    "FakeWebhookSender",
    "HttpWebhookSender",
    "SendResult",
    "SentWebhook",
    "WebhookSender",
    "sign_body",
    "verify_signature",
]
