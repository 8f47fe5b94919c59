"""Subscriptions: period grants, seats, plans, trial and cancellation, as the spec words them."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from creditbook.catalog import load_catalog
from creditbook.domain.book import TeamBook, check_invariants
from creditbook.domain.catalog import Catalog
from creditbook.domain.errors import InvalidInput, UnknownPlan
from creditbook.domain.grants import Category, Source
from creditbook.domain.ledger import Account, EntryKind
from creditbook.domain.pricing import Call
from creditbook.domain.subscriptions import (
    EventKind,
    Subscription,
    SubscriptionStatus,
    TrialAlreadyUsed,
    cancel,
    catch_up,
    change_plan,
    change_seats,
    current_period,
    new_subscription,
    reactivate,
    start_trial,
)

CATALOG = load_catalog()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def setup(
    plan: str = "multichannel_expert",
    seats: int = 3,
    anchor: datetime = utc(2026, 4, 1, 9),
    catalog: Catalog = CATALOG,
    tz: str = "UTC",
) -> tuple[Subscription, TeamBook]:
    sub = new_subscription("team_1", catalog, plan=plan, anchor=anchor, time_zone=tz, seats=seats)
    book = TeamBook(team_id="team_1", catalog=catalog, now=anchor)
    catch_up(sub, book, catalog, anchor)
    return sub, book


def at(book: TeamBook, when: datetime) -> datetime:
    """Move the book to ``when``, as the service would load it at that time."""
    book.now = when
    return when


def buckets(book: TeamBook) -> dict[str, int]:
    return {k: v for k, v in book.balance().buckets.items() if v}


def kinds(book: TeamBook) -> Counter[EntryKind]:
    return Counter(e.kind for e in book.entries)


# ---- monthly allowances --------------------------------------------------------


def test_a_3_seat_multichannel_expert_team_has_4500_general_and_1200_calling_credits() -> None:
    sub, book = setup()
    assert buckets(book) == {"subscription": 4500, "calling": 1200}
    assert book.balance().available == 5700
    assert sub.issued_through == 0
    calling = next(g for g in book.grants.values() if g.bucket == "calling")
    assert calling.scope == frozenset({"calling"})
    assert calling.source is Source.ALLOWANCE
    assert calling.category is Category.FREE
    assert calling.expires_at == utc(2026, 5, 1, 9)
    general = next(g for g in book.grants.values() if g.bucket == "subscription")
    assert (general.source, general.scope, general.effective_at) == (
        Source.PLAN,
        None,
        utc(2026, 4, 1, 9),
    )


def test_calls_spend_the_calling_allowance_before_general_credits() -> None:
    _, book = setup()
    at(book, utc(2026, 4, 2))
    # 150 s to the US: 3 billed minutes x basic tier x 4 credits = 12.
    result = book.charge(
        "calling", call=Call(duration_seconds=150, answered=True, destination="US")
    )
    assert result.credits == 12
    assert buckets(book) == {"subscription": 4500, "calling": 1188}
    # A call bigger than what is left of the allowance spills into general credits.
    book.charge("calling", call=Call(duration_seconds=300 * 60, answered=True, destination="US"))
    assert buckets(book) == {"subscription": 4488}


def test_free_credits_never_roll_over() -> None:
    sub, book = setup(seats=1)
    at(book, utc(2026, 4, 10))
    book.charge("email_finder", quantity=100, outcome="deliverable")  # 500 credits
    assert buckets(book) == {"subscription": 1000, "calling": 400}
    book.entries.clear()

    events = catch_up(sub, book, CATALOG, at(book, utc(2026, 5, 1, 9)))

    # The period's general and calling credits end together: one entry, a posting each.
    [expired] = [e for e in book.entries if e.kind is EntryKind.EXPIRE]
    assert expired.credits == 1400
    assert sorted(p.amount for p in expired.postings if p.account is Account.EXPIRED) == [
        400,
        1000,
    ]
    assert expired.memo == "subscription and calling credits expired"
    assert buckets(book) == {"subscription": 1500, "calling": 400}
    assert {e.kind for e in events} == {EventKind.GRANT_EXPIRED, EventKind.GRANT_ISSUED}
    assert sub.issued_through == 1


def test_credits_reserved_at_the_boundary_stay_until_their_hold_resolves() -> None:
    sub, book = setup(seats=1)
    at(book, utc(2026, 5, 1, 8))
    hold = book.hold("calling", quantity=10, ttl_seconds=7200, call=Call(0, True, "US"))  # 40
    catch_up(sub, book, CATALOG, at(book, utc(2026, 5, 1, 9, 30)))
    old_calling = next(g for g in book.grants.values() if g.id == hold.allocations[0][0])
    assert old_calling.closed
    assert (old_calling.remaining, old_calling.reserved) == (40, 40)
    assert buckets(book) == {"subscription": 1500, "calling": 400}
    book.capture(hold, call=Call(duration_seconds=60, answered=True, destination="US"))
    assert check_invariants(book.grants.values(), book.holds.values()) == []


# ---- catching up ---------------------------------------------------------------


def test_a_team_untouched_for_three_months_catches_up_once_per_boundary() -> None:
    sub, book = setup(seats=2, anchor=utc(2026, 1, 31, 9))
    events = catch_up(sub, book, CATALOG, at(book, utc(2026, 5, 15)))

    assert sub.issued_through == 3
    issued = [e for e in book.entries if e.kind is EntryKind.GRANT]
    assert len(issued) == 4  # one entry per period, with both allowances
    granted = [p.grant_id for e in issued for p in e.postings if p.account is Account.ISSUED]
    origins = [book.grants[g].origin for g in granted]
    assert len(origins) == len(set(origins)) == 8  # 4 periods x 2 allowances, each once
    starts = sorted({book.grants[g].effective_at for g in granted})
    assert starts == [
        utc(2026, 1, 31, 9),
        utc(2026, 2, 28, 9),
        utc(2026, 3, 31, 9),
        utc(2026, 4, 30, 9),
    ]
    expired = [e for e in book.entries if e.kind is EntryKind.EXPIRE]
    assert len(expired) == 3  # periods 0, 1, 2: both grants of each written off once
    assert sum(len(e.meta["grant_ids"].split(",")) for e in expired) == 6
    assert sum(e.credits for e in expired) == 3 * (3000 + 800)
    assert buckets(book) == {"subscription": 3000, "calling": 800}
    assert [e.period for e in events if e.kind is EventKind.GRANT_ISSUED] == [1, 1, 2, 2, 3, 3]

    count = len(book.entries)
    assert catch_up(sub, book, CATALOG, book.now) == []
    assert len(book.entries) == count


def test_catching_up_before_the_anchor_issues_nothing() -> None:
    sub = new_subscription(
        "team_1", CATALOG, plan="email_pro", anchor=utc(2026, 6, 1), time_zone="Europe/Paris"
    )
    book = TeamBook(team_id="team_1", catalog=CATALOG, now=utc(2026, 5, 20))
    assert catch_up(sub, book, CATALOG, book.now) == []
    assert sub.issued_through == -1
    catch_up(sub, book, CATALOG, at(book, utc(2026, 6, 1)))
    assert buckets(book) == {"subscription": 1000}


def test_a_book_loaded_at_another_time_is_refused() -> None:
    sub, book = setup()
    with pytest.raises(ValueError, match=r"book\.now"):
        catch_up(sub, book, CATALOG, utc(2026, 4, 2))


# ---- trial ---------------------------------------------------------------------


def test_the_trial_is_granted_once_per_team_ever() -> None:
    sub, book = setup(plan="trial", seats=1)
    assert sub.status is SubscriptionStatus.TRIALING
    assert buckets(book) == {}
    start_trial(sub, book, CATALOG, book.now)
    assert buckets(book) == {"trial": 500}
    trial = next(iter(book.grants.values()))
    assert (trial.source, trial.category) == (Source.TRIAL, Category.FREE)
    assert trial.expires_at == sub.trial_ends_at == utc(2026, 4, 15, 9)
    with pytest.raises(TrialAlreadyUsed) as raised:
        start_trial(sub, book, CATALOG, book.now)
    assert raised.value.code == "trial_already_used"

    # Subscribing, cancelling and coming back never gives a second trial.
    change_plan(sub, book, CATALOG, "email_pro", at(book, utc(2026, 4, 10)))
    cancel(sub, book.now)
    reactivate(sub, book, CATALOG, at(book, utc(2026, 7, 1)))
    with pytest.raises(TrialAlreadyUsed):
        start_trial(sub, book, CATALOG, book.now)


def test_trial_credits_expire_when_the_trial_ends() -> None:
    sub, book = setup(plan="trial", seats=1)
    start_trial(sub, book, CATALOG, book.now)
    catch_up(sub, book, CATALOG, at(book, utc(2026, 4, 15, 9)))
    assert buckets(book) == {}
    assert [e.credits for e in book.entries if e.kind is EntryKind.EXPIRE] == [500]


def test_subscribing_from_a_trial_starts_a_full_period_now() -> None:
    sub, book = setup(plan="trial", seats=2)
    start_trial(sub, book, CATALOG, book.now)
    now = at(book, utc(2026, 4, 10, 15))
    change_plan(sub, book, CATALOG, "email_pro", now)
    assert (sub.status, sub.plan, sub.anchor, sub.issued_through) == (
        SubscriptionStatus.ACTIVE,
        "email_pro",
        now,
        0,
    )
    assert buckets(book) == {"trial": 500, "subscription": 2000}


# ---- seats ---------------------------------------------------------------------


def test_a_seat_added_halfway_through_a_30_day_period_adds_half_an_allowance() -> None:
    sub, book = setup(seats=1)  # April: 30 days
    change_seats(sub, book, CATALOG, 2, at(book, utc(2026, 4, 16, 9)))
    assert sub.seats == 2
    assert buckets(book) == {"subscription": 1500 + 750, "calling": 400 + 200}
    added = [g for g in book.grants.values() if g.effective_at == utc(2026, 4, 16, 9)]
    assert {g.expires_at for g in added} == {utc(2026, 5, 1, 9)}
    # The next period issues both seats in full.
    catch_up(sub, book, CATALOG, at(book, utc(2026, 5, 1, 9)))
    assert buckets(book) == {"subscription": 3000, "calling": 800}


@pytest.mark.parametrize(("policy", "general"), [("full", 1500), ("none", 0)])
def test_the_seat_policy_decides_what_added_seats_grant(policy: str, general: int) -> None:
    catalog = dataclasses.replace(CATALOG, seat_policy=policy)
    sub, book = setup(seats=1, catalog=catalog)
    change_seats(sub, book, catalog, 2, at(book, utc(2026, 4, 16, 9)))
    assert book.balance().buckets["subscription"] == 1500 + general


def test_removed_seats_take_nothing_back() -> None:
    sub, book = setup(seats=3)
    change_seats(sub, book, CATALOG, 1, at(book, utc(2026, 4, 16, 9)))
    assert buckets(book) == {"subscription": 4500, "calling": 1200}
    catch_up(sub, book, CATALOG, at(book, utc(2026, 5, 1, 9)))
    assert buckets(book) == {"subscription": 1500, "calling": 400}


@pytest.mark.parametrize("seats", [0, -1, 10_001, True, 2.5])
def test_seats_outside_1_to_10000_are_refused(seats: object) -> None:
    sub, book = setup(seats=1)
    with pytest.raises(InvalidInput, match="between 1 and 10000"):
        change_seats(sub, book, CATALOG, seats, book.now)  # type: ignore[arg-type]
    assert sub.seats == 1


# ---- plans ---------------------------------------------------------------------


def test_an_upgrade_takes_effect_at_once_with_the_prorated_difference() -> None:
    sub, book = setup(plan="email_pro", seats=2)
    change_plan(sub, book, CATALOG, "multichannel_expert", at(book, utc(2026, 4, 16, 9)))
    assert sub.plan == "multichannel_expert"
    # Half of (1500 - 1000) x 2 seats, and half of 400 x 2 seats of calling.
    assert buckets(book) == {"subscription": 2000 + 500, "calling": 400}
    catch_up(sub, book, CATALOG, at(book, utc(2026, 5, 1, 9)))
    assert buckets(book) == {"subscription": 3000, "calling": 800}


def test_a_downgrade_waits_for_the_next_period() -> None:
    sub, book = setup(plan="multichannel_expert", seats=1)
    events = change_plan(sub, book, CATALOG, "email_pro", at(book, utc(2026, 4, 16, 9)))
    assert (sub.plan, sub.pending_plan) == ("multichannel_expert", "email_pro")
    assert events[-1].kind is EventKind.DOWNGRADE_SCHEDULED
    assert events[-1].at == utc(2026, 5, 1, 9)
    assert buckets(book) == {"subscription": 1500, "calling": 400}
    catch_up(sub, book, CATALOG, at(book, utc(2026, 5, 1, 9)))
    assert (sub.plan, sub.pending_plan) == ("email_pro", None)
    assert buckets(book) == {"subscription": 1000}


def test_choosing_the_current_plan_again_drops_a_pending_downgrade() -> None:
    sub, book = setup(plan="multichannel_expert", seats=1)
    change_plan(sub, book, CATALOG, "email_pro", at(book, utc(2026, 4, 16, 9)))
    change_plan(sub, book, CATALOG, "multichannel_expert", book.now)
    assert sub.pending_plan is None
    assert buckets(book) == {"subscription": 1500, "calling": 400}  # nothing extra granted
    catch_up(sub, book, CATALOG, at(book, utc(2026, 5, 1, 9)))
    assert buckets(book) == {"subscription": 1500, "calling": 400}


def test_an_immediate_downgrade_changes_the_plan_now_and_takes_nothing_back() -> None:
    catalog = dataclasses.replace(CATALOG, downgrade_policy="immediate")
    sub, book = setup(plan="multichannel_expert", seats=1, catalog=catalog)
    change_plan(sub, book, catalog, "email_pro", at(book, utc(2026, 4, 16, 9)))
    assert (sub.plan, sub.pending_plan) == ("email_pro", None)
    assert buckets(book) == {"subscription": 1500, "calling": 400}
    catch_up(sub, book, catalog, at(book, utc(2026, 5, 1, 9)))
    assert buckets(book) == {"subscription": 1000}


def test_an_unknown_plan_is_refused() -> None:
    sub, book = setup()
    with pytest.raises(UnknownPlan, match="valid plans"):
        change_plan(sub, book, CATALOG, "platinum", book.now)


# ---- cancellation --------------------------------------------------------------


def _buy(book: TeamBook, credits: int) -> None:
    book.issue(
        credits=credits, source=Source.PURCHASE, category=Category.PURCHASED, bucket="purchased"
    )


def test_cancellation_stops_new_grants_while_purchased_credits_stay() -> None:
    sub, book = setup(seats=1)
    _buy(book, 1000)
    cancel(sub, at(book, utc(2026, 4, 20)))
    assert sub.status is SubscriptionStatus.CANCELLED
    assert sub.cancel_at == utc(2026, 5, 1, 9)
    # The current period runs to its end.
    assert buckets(book) == {"subscription": 1500, "calling": 400, "purchased": 1000}

    catch_up(sub, book, CATALOG, at(book, utc(2026, 8, 1)))
    assert buckets(book) == {"purchased": 1000}
    assert kinds(book)[EntryKind.GRANT] == 2  # the first period and the purchase only
    book.charge("phone_finder", outcome="found")
    assert buckets(book) == {"purchased": 980}


def test_a_cancellation_issued_late_still_pays_the_periods_before_it() -> None:
    sub, book = setup(seats=1)
    # The service cancels without catching up first: period 1 started before cancel_at.
    cancel(sub, utc(2026, 5, 10))
    catch_up(sub, book, CATALOG, at(book, utc(2026, 5, 10)))
    assert buckets(book) == {"subscription": 1500, "calling": 400}
    catch_up(sub, book, CATALOG, at(book, utc(2026, 6, 2)))
    assert buckets(book) == {}


def test_reactivating_before_the_period_ends_undoes_the_cancellation() -> None:
    sub, book = setup(seats=1)
    cancel(sub, at(book, utc(2026, 4, 20)))
    reactivate(sub, book, CATALOG, at(book, utc(2026, 4, 25)))
    assert (sub.status, sub.cancel_at, sub.anchor) == (
        SubscriptionStatus.ACTIVE,
        None,
        utc(2026, 4, 1, 9),
    )
    assert buckets(book) == {"subscription": 1500, "calling": 400}  # no double grant
    catch_up(sub, book, CATALOG, at(book, utc(2026, 5, 1, 9)))
    assert buckets(book) == {"subscription": 1500, "calling": 400}


def test_reactivating_after_the_cancellation_starts_a_new_period_now() -> None:
    sub, book = setup(seats=1)
    cancel(sub, at(book, utc(2026, 4, 20)))
    now = at(book, utc(2026, 7, 3, 14))
    reactivate(sub, book, CATALOG, now)
    assert (sub.status, sub.anchor, sub.issued_through) == (SubscriptionStatus.ACTIVE, now, 0)
    assert buckets(book) == {"subscription": 1500, "calling": 400}
    assert {g.expires_at for g in book.grants.values() if not g.closed} == {utc(2026, 8, 3, 14)}


def test_a_trialing_team_must_choose_a_paid_plan_to_reactivate() -> None:
    sub, book = setup(plan="trial", seats=1)
    with pytest.raises(InvalidInput, match="email_pro, multichannel_expert"):
        reactivate(sub, book, CATALOG, book.now)


def test_every_command_keeps_the_ledger_balanced_and_the_grants_consistent() -> None:
    sub, book = setup(plan="trial", seats=1)
    start_trial(sub, book, CATALOG, book.now)
    change_plan(sub, book, CATALOG, "email_pro", at(book, utc(2026, 4, 3)))
    change_seats(sub, book, CATALOG, 4, at(book, utc(2026, 4, 9)))
    change_plan(sub, book, CATALOG, "multichannel_expert", at(book, utc(2026, 4, 19)))
    cancel(sub, at(book, utc(2026, 5, 2)))
    catch_up(sub, book, CATALOG, at(book, utc(2026, 9, 1)))
    assert all(e.is_balanced() for e in book.entries)
    assert check_invariants(book.grants.values(), book.holds.values()) == []
    assert buckets(book) == {}


# ---- properties ----------------------------------------------------------------

ZONES = ["UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "Pacific/Apia"]


@settings(max_examples=60, deadline=None)
@given(
    anchor=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)),
    tz=st.sampled_from(ZONES),
    steps=st.lists(st.integers(min_value=0, max_value=120 * 86_400), min_size=1, max_size=6),
)
def test_however_often_it_runs_catch_up_issues_and_expires_each_period_exactly_once(
    anchor: datetime, tz: str, steps: list[int]
) -> None:
    start = anchor.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)
    sub, book = setup(seats=2, anchor=start, tz=tz)
    now = start
    for seconds in steps:
        now += timedelta(seconds=seconds)
        catch_up(sub, book, CATALOG, at(book, now))
        catch_up(sub, book, CATALOG, now)
    last = current_period(sub, now).index
    assert sub.issued_through == last
    origins = Counter(g.origin for g in book.grants.values())
    assert len(origins) == 2 * (last + 1)
    assert set(origins.values()) == {1}
    closed_by_expiry = [
        e.meta["grant_ids"].split(",") for e in book.entries if e.kind is EntryKind.EXPIRE
    ]
    expired = Counter(g for grant_ids in closed_by_expiry for g in grant_ids)
    assert set(expired.values()) <= {1}
    assert len(expired) == 2 * last  # every period before the current one, once
    assert buckets(book) == {"subscription": 3000, "calling": 800}
