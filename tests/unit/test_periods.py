"""Billing periods: monthly from the anchor, in the team's time zone, DST-proof."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditbook.domain.errors import InvalidAmount, InvalidInput
from creditbook.domain.periods import (
    Period,
    period,
    period_at,
    period_start,
    periods_between,
    prorate,
    time_zone,
)

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Paris",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Apia",
    "America/Sao_Paulo",
]


def local(tz: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# ---- worked examples --------------------------------------------------------


def test_an_anchor_on_31_january_renews_on_the_last_day_of_shorter_months() -> None:
    anchor = utc(2026, 1, 31, 9, 0)
    starts = [period_start(anchor, "UTC", i) for i in range(5)]
    assert starts == [
        utc(2026, 1, 31, 9),
        utc(2026, 2, 28, 9),
        utc(2026, 3, 31, 9),
        utc(2026, 4, 30, 9),
        utc(2026, 5, 31, 9),
    ]


def test_an_anchor_on_31_january_renews_on_29_february_in_a_leap_year() -> None:
    anchor = utc(2028, 1, 31, 9, 0)
    assert period_start(anchor, "UTC", 1) == utc(2028, 2, 29, 9)
    assert period_start(anchor, "UTC", 2) == utc(2028, 3, 31, 9)


def test_a_paris_10_oclock_anchor_stays_10_oclock_local_across_the_march_dst_change() -> None:
    anchor = local("Europe/Paris", 2026, 2, 15, 10, 0)
    march, april = period_start(anchor, "Europe/Paris", 1), period_start(anchor, "Europe/Paris", 2)
    assert march == utc(2026, 3, 15, 9)  # CET, UTC+1
    assert april == utc(2026, 4, 15, 8)  # CEST, UTC+2
    for start in (march, april):
        assert start.astimezone(ZoneInfo("Europe/Paris")).time().hour == 10
    # The period spanning the change is an hour shorter than its 31 calendar days.
    assert period(anchor, "Europe/Paris", 1).duration == timedelta(days=31, hours=-1)


def test_a_boundary_in_a_dst_gap_moves_forward_by_the_gap() -> None:
    # New York skips 02:00-03:00 on 8 March 2026; 02:30 resolves to 03:30 EDT.
    anchor = local("America/New_York", 2026, 2, 8, 2, 30)
    start = period_start(anchor, "America/New_York", 1)
    assert start == utc(2026, 3, 8, 7, 30)
    assert start.astimezone(ZoneInfo("America/New_York")).hour == 3


def test_an_ambiguous_boundary_takes_the_first_occurrence() -> None:
    # New York repeats 01:00-02:00 on 1 November 2026 (EDT first, then EST).
    anchor = local("America/New_York", 2026, 10, 1, 1, 30)
    assert period_start(anchor, "America/New_York", 1) == utc(2026, 11, 1, 5, 30)


def test_period_zero_starts_at_the_anchor_even_on_a_second_occurrence() -> None:
    second = datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo("America/New_York"), fold=1)
    assert period_start(second, "America/New_York", 0) == utc(2026, 11, 1, 6, 30)
    assert period(second, "America/New_York", 0).end == utc(2026, 12, 1, 6, 30)


def test_period_at_before_the_anchor_has_a_negative_index() -> None:
    anchor = utc(2026, 3, 31, 12)
    p = period_at(anchor, "UTC", utc(2026, 3, 1))
    assert p == Period(-1, utc(2026, 2, 28, 12), anchor)


def test_an_instant_on_a_boundary_belongs_to_the_period_it_starts() -> None:
    anchor = utc(2026, 1, 31, 9)
    assert period_at(anchor, "UTC", utc(2026, 2, 28, 9)).index == 1
    assert period_at(anchor, "UTC", utc(2026, 2, 28, 9) - timedelta(microseconds=1)).index == 0
    assert period_at(anchor, "UTC", anchor).index == 0


def test_periods_between_lists_the_boundaries_crossed() -> None:
    anchor = utc(2026, 1, 31, 9)
    crossed = periods_between(anchor, "UTC", utc(2026, 2, 1), utc(2026, 5, 1))
    assert [p.index for p in crossed] == [1, 2, 3]
    assert [p.start.day for p in crossed] == [28, 31, 30]
    # A boundary equal to `after` was already crossed; one equal to `until` is crossed now.
    assert periods_between(anchor, "UTC", utc(2026, 2, 28, 9), utc(2026, 3, 31, 9)) == [
        period(anchor, "UTC", 2)
    ]
    assert periods_between(anchor, "UTC", utc(2026, 5, 1), utc(2026, 2, 1)) == []


def test_a_seat_added_halfway_through_a_30_day_period_gets_half_the_allowance() -> None:
    p = period(utc(2026, 4, 1), "UTC", 0)
    assert p.duration == timedelta(days=30)
    assert prorate(1500, p, utc(2026, 4, 16)) == 750


def test_prorate_rounds_down_and_is_whole_before_and_nothing_after() -> None:
    p = period(utc(2026, 4, 1), "UTC", 0)
    assert prorate(1000, p, utc(2026, 4, 1) + timedelta(microseconds=1)) == 999
    assert prorate(1000, p, utc(2026, 3, 1)) == 1000
    assert prorate(1000, p, p.start) == 1000
    assert prorate(1000, p, p.end) == 0
    assert prorate(0, p, utc(2026, 4, 10)) == 0
    with pytest.raises(InvalidAmount):
        prorate(-1, p, utc(2026, 4, 10))


def test_an_unknown_time_zone_is_refused_with_its_name() -> None:
    with pytest.raises(InvalidInput, match="Mars/Olympus_Mons"):
        period_start(utc(2026, 1, 1), "Mars/Olympus_Mons", 1)
    for bad in ("", "../etc/passwd", "/etc/localtime"):
        with pytest.raises(InvalidInput):
            time_zone(bad)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(InvalidInput, match="no time zone"):
        period_start(datetime(2026, 1, 1), "UTC", 1)
    with pytest.raises(InvalidInput, match="no time zone"):
        period_at(utc(2026, 1, 1), "UTC", datetime(2026, 2, 1))
    with pytest.raises(InvalidInput):
        period(utc(2026, 1, 1), "UTC", 0).contains(datetime(2026, 1, 2))


def test_contains_is_start_inclusive_end_exclusive() -> None:
    p = period(utc(2026, 1, 31), "UTC", 0)
    assert p.contains(p.start)
    assert p.contains(p.end - timedelta(microseconds=1))
    assert not p.contains(p.end)


# ---- properties -------------------------------------------------------------

anchors = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 31, 23, 59, 59))
zones = st.sampled_from(ZONES)
offsets = st.integers(min_value=-3_000 * 86_400, max_value=3_000 * 86_400)
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _anchor(naive: datetime, tz: str) -> datetime:
    return naive.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


@PROPS
@given(anchors, zones, st.integers(min_value=-30, max_value=30))
def test_periods_are_contiguous_and_never_overlap(naive: datetime, tz: str, i: int) -> None:
    anchor = _anchor(naive, tz)
    a, b = period(anchor, tz, i), period(anchor, tz, i + 1)
    assert a.end == b.start
    assert a.start < a.end
    assert a.duration >= timedelta(days=27)  # 28 days less a DST or Apia-style jump


@PROPS
@given(anchors, zones, offsets)
def test_period_at_returns_the_period_containing_the_instant(
    naive: datetime, tz: str, seconds: int
) -> None:
    anchor = _anchor(naive, tz)
    at = anchor + timedelta(seconds=seconds)
    p = period_at(anchor, tz, at)
    assert p.contains(at)
    assert p == period(anchor, tz, p.index)
    assert (p.index < 0) == (at < anchor)


@PROPS
@given(anchors, zones, st.integers(min_value=-24, max_value=240))
def test_each_period_starts_on_the_anchor_day_and_local_time(
    naive: datetime, tz: str, i: int
) -> None:
    zone = ZoneInfo(tz)
    anchor = _anchor(naive, tz)
    wall = anchor.astimezone(zone)
    start = period_start(anchor, tz, i)
    months = wall.year * 12 + wall.month - 1 + i
    year, month = months // 12, months % 12 + 1
    day = min(wall.day, calendar.monthrange(year, month)[1])
    expected = datetime(year, month, day, wall.hour, wall.minute, wall.second, wall.microsecond)
    got = start.astimezone(zone).replace(tzinfo=None)
    if i == 0:
        assert start == anchor
    elif got != expected:
        # Only a wall time that does not exist (a DST gap) may move, and only forward.
        assert (
            expected.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None)
            != expected
        )
        assert timedelta(0) < got - expected <= timedelta(days=1)
    else:
        # An ambiguous wall time takes its first occurrence.
        first = expected.replace(tzinfo=zone, fold=0).astimezone(UTC)
        assert start == first


@PROPS
@given(anchors, zones, offsets, st.integers(min_value=0, max_value=200 * 86_400))
def test_periods_between_lists_each_boundary_once(
    naive: datetime, tz: str, seconds: int, span: int
) -> None:
    anchor = _anchor(naive, tz)
    after = anchor + timedelta(seconds=seconds)
    until = after + timedelta(seconds=span)
    crossed = periods_between(anchor, tz, after, until)
    first, last = period_at(anchor, tz, after), period_at(anchor, tz, until)
    assert [p.index for p in crossed] == list(range(first.index + 1, last.index + 1))
    assert all(after < p.start <= until for p in crossed)


@PROPS
@given(
    anchors,
    zones,
    st.integers(min_value=0, max_value=10_000_000),
    st.integers(min_value=0, max_value=10**6),
)
def test_prorate_is_between_nothing_and_everything_and_shrinks_with_time(
    naive: datetime, tz: str, credits: int, permille: int
) -> None:
    anchor = _anchor(naive, tz)
    p = period(anchor, tz, 0)
    at = p.start + p.duration * permille / 10**6
    later = at + timedelta(hours=1)
    assert 0 <= prorate(credits, p, later) <= prorate(credits, p, at) <= credits
