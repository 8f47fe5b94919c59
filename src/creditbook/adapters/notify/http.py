"""The real webhook sender: one HTTP POST with httpx and a short timeout."""

from __future__ import annotations

import httpx

from creditbook.adapters.notify.base import SendResult


class HttpWebhookSender:
    """Posts webhooks over HTTP(S); a non-2xx answer or a network error is a failed attempt."""

    def __init__(self, timeout_seconds: float = 5.0) -> None:
        self._timeout = timeout_seconds

    def send(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
        try:
            response = httpx.post(
                url,
                content=body,
                headers={"Content-Type": "application/json", **headers},
                timeout=self._timeout,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            return SendResult(ok=False, error=f"{type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return SendResult(ok=True, status_code=response.status_code)
        return SendResult(
            ok=False,
            status_code=response.status_code,
            error=f"HTTP {response.status_code} from the receiver",
        )
