"""The real webhook sender: one HTTP POST through the outbound-URL guard, short timeout.

The guard (``creditbook.adapters.net.guard``) checks the URL's scheme, resolves
the host once, refuses it when any address is not public (unless the guard
allows private addresses), and connects to the checked address; redirects are
never followed. A refusal is reported as ``SendResult(refused=True)`` with the
guard's reason, never as a network failure, so a delivery status tells an
admin nothing about what listens inside the server's network.
"""

from __future__ import annotations

import httpx

from creditbook.adapters.net.guard import OutboundGuard
from creditbook.adapters.notify.base import SendResult
from creditbook.domain.errors import InvalidInput

REFUSED = "refused by the outbound URL guard: "


class HttpWebhookSender:
    """Posts webhooks over HTTP(S); a non-2xx answer or a network error is a failed attempt."""

    def __init__(self, timeout_seconds: float = 5.0, guard: OutboundGuard | None = None) -> None:
        self._timeout = timeout_seconds
        self.guard = guard or OutboundGuard()

    def send(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
        try:
            self.guard.check_scheme(url)
            with self.guard.client(self._timeout) as client:
                response = client.post(
                    url, content=body, headers={"Content-Type": "application/json", **headers}
                )
        except InvalidInput as exc:  # UnsafeUrl included: nothing was sent
            return SendResult(ok=False, error=REFUSED + exc.message, refused=True)
        except httpx.HTTPError as exc:
            return SendResult(ok=False, error=f"{type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return SendResult(ok=True, status_code=response.status_code)
        return SendResult(
            ok=False,
            status_code=response.status_code,
            error=f"HTTP {response.status_code} from the receiver",
        )
