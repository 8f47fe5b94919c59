"""An in-process token bucket per API key (default 20 requests per 2 seconds, as lemlist's).

Each key's bucket holds ``requests`` tokens and refills at ``requests /
window`` tokens per second, so a key may burst its whole allowance and then
goes at the average rate. The limit is per process: with N server processes
a key gets up to N times the rate, which is the usual trade for no shared
state on the hot path (document it; put a shared limiter in front if needed).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBucketLimiter:
    def __init__(
        self,
        requests: int,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if requests < 1 or window_seconds <= 0:
            raise ValueError("a rate limit needs requests >= 1 and a positive window")
        self.capacity = float(requests)
        self.rate = requests / window_seconds
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token: 0.0 if allowed, else the seconds until one is available."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_keys:
                    self._forget_full(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: drop those.
        full = [
            k
            for k, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate >= self.capacity
        ]
        for k in full:
            del self._buckets[k]


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
