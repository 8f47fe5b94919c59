"""Billing periods: a team's months, in its time zone, from its anchor instant.

Period ``i`` starts at the anchor's local wall-clock date and time (in the
team's IANA time zone) shifted by ``i`` calendar months, and ends where
period ``i + 1`` starts, so periods are contiguous and never overlap.

- A month without the anchor's day uses its last day. The day is always
  taken from the original anchor, never from the previous period, so an
  anchor on 31 January gives 28 (or 29) February, 31 March, 30 April...
- Daylight-saving changes do not move the local time of a boundary: a 10:00
  anchor in Paris starts every period at 10:00 Paris time, so a period
  spanning a DST change is an hour shorter or longer than the calendar
  suggests in UTC.
- A local boundary time that does not exist (it falls in a DST gap, e.g.
  02:30 on the night clocks jump from 02:00 to 03:00) is resolved as
  ``zoneinfo`` resolves ``fold=0``: with the offset in force before the gap,
  which lands the boundary the length of the gap later on the wall clock
  (02:30 becomes 03:30). A local time that occurs twice (clocks go back)
  takes its first occurrence. Period 0 always starts at the anchor instant
  itself, whichever occurrence that was.
- Indices before the anchor are negative: ``period_at`` of an instant before
  the anchor answers period -1, -2, ... The arithmetic is the same in both
  directions; callers that bill only from the anchor ignore negative ones.

Every instant returned is an aware ``datetime`` in UTC. Naive datetimes and
unknown time zones are refused with ``InvalidInput``.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from creditbook.domain.errors import InvalidAmount, InvalidInput

__all__ = [
    "Period",
    "microseconds",
    "period",
    "period_at",
    "period_start",
    "periods_between",
    "prorate",
    "require_aware",
    "time_zone",
]


@dataclass(frozen=True, slots=True)
class Period:
    """One billing period: ``start`` inclusive, ``end`` exclusive, both UTC."""

    index: int
    start: datetime
    end: datetime

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def contains(self, at: datetime) -> bool:
        return self.start <= require_aware(at, "at") < self.end


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone called ``name``; ``InvalidInput`` naming it if there is none."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(
            f"time zone {name!r} is not a time zone name; use an IANA name such as "
            "'Europe/Paris', 'America/New_York' or 'UTC'",
            time_zone=str(name),
        )
    return _zone(name)


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError/OSError: names that are not even valid keys (absolute
        # paths, '..'), which zoneinfo refuses before looking them up.
        raise InvalidInput(
            f"unknown time zone {name!r}; use an IANA name such as "
            "'Europe/Paris', 'America/New_York' or 'UTC'",
            time_zone=name,
        ) from None


def require_aware(when: datetime, name: str = "datetime") -> datetime:
    """``when`` in UTC; a naive datetime is refused rather than guessed."""
    if not isinstance(when, datetime):
        raise InvalidInput(f"{name} must be a datetime, got {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidInput(
            f"{name} {when.isoformat()} has no time zone; give an aware datetime "
            "(for example with tzinfo=UTC)",
            field=name,
        )
    return when.astimezone(UTC)


def period_start(anchor: datetime, tz: str, index: int) -> datetime:
    """The UTC instant at which period ``index`` starts (period 0: the anchor)."""
    # A tick asks for the same few boundaries of a team many times (period_at,
    # period, next boundary); the answer is a pure function of the three values.
    # Only exact types take the cache, so hashing cannot refuse an argument and
    # ``True`` (refused as an index) never matches a cached ``1``; a failing
    # call is never cached, so errors stay the same.
    if type(anchor) is datetime and type(tz) is str and type(index) is int:
        return _cached_start(anchor, tz, index)
    return _period_start(anchor, tz, index)


@lru_cache(maxsize=65536)
def _cached_start(anchor: datetime, tz: str, index: int) -> datetime:
    return _period_start(anchor, tz, index)


def _period_start(anchor: datetime, tz: str, index: int) -> datetime:
    anchor_utc = require_aware(anchor, "anchor")
    zone = time_zone(tz)
    if isinstance(index, bool) or not isinstance(index, int):
        raise InvalidInput(f"a period index is a whole number, got {index!r}")
    if index == 0:
        return anchor_utc
    local = anchor_utc.astimezone(zone)
    months = local.year * 12 + (local.month - 1) + index
    year, month0 = divmod(months, 12)
    if not 1 <= year <= 9998:
        raise InvalidInput(
            f"period {index} from anchor {anchor_utc.isoformat()} falls in year {year}, "
            "outside the supported years 1-9998"
        )
    month = month0 + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    boundary = datetime(
        year,
        month,
        day,
        local.hour,
        local.minute,
        local.second,
        local.microsecond,
        tzinfo=zone,
        fold=0,
    )
    return boundary.astimezone(UTC)


def period(anchor: datetime, tz: str, index: int) -> Period:
    """Period ``index``, from its start to the start of the next."""
    return Period(index, period_start(anchor, tz, index), period_start(anchor, tz, index + 1))


def period_at(anchor: datetime, tz: str, at: datetime) -> Period:
    """The period containing ``at``; its index is negative when ``at`` is before the anchor."""
    anchor_utc = require_aware(anchor, "anchor")
    at_utc = require_aware(at, "at")
    zone = time_zone(tz)
    local_anchor = anchor_utc.astimezone(zone)
    local_at = at_utc.astimezone(zone)
    # The calendar-month difference is right or one off (the day/time within
    # the month decides); step to the exact period from there.
    index = (local_at.year - local_anchor.year) * 12 + (local_at.month - local_anchor.month)
    start = period_start(anchor_utc, tz, index)
    while start > at_utc:
        index -= 1
        start = period_start(anchor_utc, tz, index)
    end = period_start(anchor_utc, tz, index + 1)
    while end <= at_utc:
        index += 1
        start, end = end, period_start(anchor_utc, tz, index + 1)
    return Period(index, start, end)


def periods_between(anchor: datetime, tz: str, after: datetime, until: datetime) -> list[Period]:
    """Periods whose start lies in ``(after, until]``: the boundaries crossed going forward."""
    after_utc = require_aware(after, "after")
    until_utc = require_aware(until, "until")
    if until_utc <= after_utc:
        return []
    index = period_at(anchor, tz, after_utc).index + 1
    found: list[Period] = []
    start = period_start(anchor, tz, index)
    while start <= until_utc:
        end = period_start(anchor, tz, index + 1)
        found.append(Period(index, start, end))
        index, start = index + 1, end
    return found


def microseconds(delta: timedelta) -> int:
    """A timedelta as a whole number of microseconds (exact, no float)."""
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def prorate(credits: int, period: Period, at: datetime) -> int:
    """``credits`` times the share of ``period`` left at ``at``, rounded down.

    Before the period starts the whole amount is due; at or after its end,
    nothing. Integer arithmetic on microseconds: no float, no drift.
    """
    if isinstance(credits, bool) or not isinstance(credits, int) or credits < 0:
        raise InvalidAmount(f"credits to prorate must be a whole number >= 0, got {credits!r}")
    at_utc = require_aware(at, "at")
    if at_utc <= period.start:
        return credits
    if at_utc >= period.end:
        return 0
    left = microseconds(period.end - at_utc)
    length = microseconds(period.duration)
    return credits * left // length
