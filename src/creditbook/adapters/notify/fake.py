"""A recording webhook sender for unit tests: script failures, inspect what was sent."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from creditbook.adapters.notify.base import SendResult


@dataclass(frozen=True, slots=True)
class SentWebhook:
    url: str
    body: bytes
    headers: dict[str, str]


class FakeWebhookSender:
    """Every attempt is kept in ``attempts``; those answered 2xx also in ``delivered``."""

    def __init__(self) -> None:
        self.attempts: list[SentWebhook] = []
        self.delivered: list[SentWebhook] = []
        self._failures: deque[str] = deque()

    def fail_next(self, times: int = 1, error: str = "connection refused") -> None:
        self._failures.extend(error for _ in range(times))

    def send(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
        sent = SentWebhook(url, body, dict(headers))
        self.attempts.append(sent)
        if self._failures:
            return SendResult(ok=False, error=self._failures.popleft())
        self.delivered.append(sent)
        return SendResult(ok=True, status_code=200)
