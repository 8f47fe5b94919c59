"""How many requests were refused because the database was unavailable.

One ``OutageCounter`` per HTTP application (``Services.outages``): the request
middleware counts every answer it gives ``database_unavailable``, whichever
route (API or dashboard) gave it, so a metrics endpoint can export
``refused`` as a counter and an operator can see when the last refusal was.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class OutageCounter:
    """Requests refused for a database outage since the process started (thread-safe)."""

    refused: int = 0
    # Wall-clock time (``time.time()``) and driver message of the latest refusal.
    last_refused_at: float | None = None
    last_cause: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, cause: str) -> None:
        with self._lock:
            self.refused += 1
            self.last_refused_at = time.time()
            self.last_cause = cause
