"""Time as an injectable dependency: every rule reads ``clock.now()``.

All datetimes in creditbook are time-zone aware and compared in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that moves only when told to, for tests and simulations."""

    def __init__(self, start: datetime) -> None:
        self._now = ensure_aware(start)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = ensure_aware(when)

    def advance(self, delta: timedelta) -> None:
        self._now = self._now + delta


def ensure_aware(when: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is refused, never guessed."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when!r}: creditbook needs time-zone aware datetimes")
    return when.astimezone(UTC)
