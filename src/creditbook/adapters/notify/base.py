"""The webhook sender interface and the HMAC-SHA256 signature of creditbook's webhooks.

Each webhook carries ``Creditbook-Signature: t=<unix time>,v1=<hex>`` where the
hex is HMAC-SHA256 with the team's webhook secret over ``f"{t}.{raw body}"``
(Stripe's scheme, so receivers know it). ``verify_signature`` is what a
receiver runs; the timestamp bounds replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

SIGNATURE_HEADER = "Creditbook-Signature"
EVENT_ID_HEADER = "Creditbook-Event-Id"
DEFAULT_TOLERANCE_SECONDS = 300


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one delivery attempt: ``ok`` for a 2xx answer.

    ``refused``: the outbound-URL guard refused the destination before any
    connection was made (retrying cannot help; nothing was sent).
    """

    ok: bool
    status_code: int | None = None
    error: str | None = None
    refused: bool = False


@runtime_checkable
class WebhookSender(Protocol):
    """Posts a body to a URL with headers; never raises for network or HTTP failures."""

    def send(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult: ...


def sign_body(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Creditbook-Signature`` header value for ``body`` signed with ``secret``."""
    moment = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(
        secret.encode("utf-8"), str(moment).encode("ascii") + b"." + body, hashlib.sha256
    ).hexdigest()
    return f"t={moment},v1={digest}"


def verify_signature(
    body: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: int | None = None,
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` less than the tolerance ago."""
    if not header:
        return False
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        moment = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    current = int(time.time()) if now is None else now
    if abs(current - moment) > tolerance_seconds:
        return False
    expected = sign_body(body, secret, moment).partition(",v1=")[2]
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))
