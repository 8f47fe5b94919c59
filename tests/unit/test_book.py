"""Worked examples of every rule of TeamBook, each followed by a full audit of the book.

After every example the fixture checks what ``creditbook audit`` checks: each
entry balances, the materialized grants equal what the postings say, and
``check_invariants`` finds nothing.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from creditbook.catalog import load_catalog
from creditbook.domain.book import NewGrant, TeamBook, check_invariants
from creditbook.domain.catalog import Catalog
from creditbook.domain.errors import (
    CaptureExceedsHold,
    GrantNotFound,
    HoldNotActive,
    InsufficientCredits,
    InvalidAmount,
    InvalidInput,
    InvalidQuantity,
    UnknownFeature,
    UnknownOutcome,
)
from creditbook.domain.grants import Category, Grant, Source
from creditbook.domain.holds import Hold, HoldStatus
from creditbook.domain.ledger import (
    SYSTEM,
    Account,
    Actor,
    EntryKind,
    GrantBalance,
    Posting,
    balances_from_postings,
)
from creditbook.domain.pricing import Call

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
CATALOG = load_catalog()
ALICE = Actor(member_id="mem_alice")


def audit(book: TeamBook) -> None:
    assert check_invariants(book.grants.values(), book.holds.values()) == []
    for entry in book.entries:
        assert entry.is_balanced(), entry
        assert all(p.amount != 0 for p in entry.postings), entry
    recomputed = balances_from_postings(p for e in book.entries for p in e.postings)
    assert recomputed == {
        g.id: GrantBalance(g.amount, g.remaining, g.reserved) for g in book.grants.values()
    }
    for g in book.grants.values():
        assert 0 <= g.reserved <= g.remaining <= g.amount
    resolutions: dict[str, int] = {}
    for entry in book.entries:
        if entry.kind in (EntryKind.CAPTURE, EntryKind.RELEASE) and entry.hold_id:
            resolutions[entry.hold_id] = resolutions.get(entry.hold_id, 0) + 1
    assert all(n == 1 for n in resolutions.values()), "a hold was resolved twice"
    for h in book.holds.values():
        assert (h.status is HoldStatus.ACTIVE) == (h.id not in resolutions)
        assert 0 <= h.captured <= h.amount


@pytest.fixture
def book() -> Iterator[TeamBook]:
    b = TeamBook.load("team_1", CATALOG, NOW, [])
    yield b
    audit(b)


def give(
    book: TeamBook,
    credits: int,
    *,
    category: Category = Category.FREE,
    expires_in: timedelta | None = timedelta(days=30),
    scope: frozenset[str] | None = None,
) -> Grant:
    return book.issue(
        credits=credits,
        source=Source.GIFT if category is Category.FREE else Source.PURCHASE,
        category=category,
        bucket="gifted" if category is Category.FREE else "purchased",
        scope=scope,
        expires_at=None if expires_in is None else book.now + expires_in,
    )


def snapshot(book: TeamBook) -> tuple[Any, ...]:
    return (copy.deepcopy(book.grants), copy.deepcopy(book.holds), list(book.entries))


def used(book: TeamBook, account: Account = Account.USED) -> dict[str, int]:
    """Credits per grant posted to ``account`` over the whole ledger."""
    out: dict[str, int] = {}
    for e in book.entries:
        for p in e.postings:
            if p.account is account:
                out[p.grant_id] = out.get(p.grant_id, 0) + p.amount
    return out


# ---- issuing ---------------------------------------------------------------


def test_issuing_a_grant_posts_issued_to_available(book: TeamBook) -> None:
    g = give(book, 500)
    (entry,) = book.entries
    assert entry.kind is EntryKind.GRANT
    assert entry.credits == 500
    assert entry.postings == (
        Posting(g.id, Account.ISSUED, -500),
        Posting(g.id, Account.AVAILABLE, 500),
    )
    assert (g.amount, g.remaining, g.reserved, g.available) == (500, 500, 0, 500)
    assert book.available_for("email_finder") == 500


# ---- one-step charges --------------------------------------------------------


def test_a_billable_charge_moves_credits_from_available_to_used(book: TeamBook) -> None:
    g = give(book, 100)
    result = book.charge("email_finder", quantity=2, outcome="deliverable", actor=ALICE)
    assert result.credits == 10
    assert result.grants == {g.id: 10}
    entry = result.entry
    assert entry.kind is EntryKind.CHARGE
    assert entry.postings == (
        Posting(g.id, Account.AVAILABLE, -10),
        Posting(g.id, Account.USED, 10),
    )
    assert (entry.feature, entry.quantity, entry.outcome) == ("email_finder", 2, "deliverable")
    assert (entry.unit_cost, entry.multiplier, entry.actor) == (5, 1, ALICE)
    assert g.remaining == 90
    assert book.balance().available == 90


@pytest.mark.parametrize(
    ("outcome", "credits"),
    [("deliverable", 5), ("risky", 5), ("undeliverable", 0), ("unknown", 0), ("not_found", 0)],
)
def test_email_finder_charges_5_for_deliverable_or_risky_and_nothing_otherwise(
    book: TeamBook, outcome: str, credits: int
) -> None:
    g = give(book, 100)
    result = book.charge("email_finder", outcome=outcome)
    assert result.credits == credits
    assert g.remaining == 100 - credits


def test_a_non_billable_outcome_is_an_attempt_with_no_postings_even_at_zero_balance(
    book: TeamBook,
) -> None:
    result = book.charge("phone_finder", outcome="not_found", idempotency_key="k1")
    entry = result.entry
    assert entry.kind is EntryKind.ATTEMPT
    assert entry.credits == 0
    assert entry.postings == ()
    assert (entry.feature, entry.outcome, entry.idempotency_key) == (
        "phone_finder",
        "not_found",
        "k1",
    )
    assert result.grants == {}


def test_a_61_second_answered_call_to_a_global_destination_costs_32(book: TeamBook) -> None:
    give(book, 100)
    result = book.charge("calling", call=Call(61, answered=True, destination="global"))
    assert result.credits == 32  # 2 minutes x 4 credits x global 4
    assert (result.entry.quantity, result.entry.multiplier, result.quote.tier) == (2, 4, "global")


def test_an_unanswered_call_costs_nothing(book: TeamBook) -> None:
    give(book, 100)
    result = book.charge("calling", call=Call(61, answered=False, destination="AU"))
    assert result.credits == 0
    assert result.entry.kind is EntryKind.ATTEMPT
    assert result.entry.outcome == "unanswered"


def test_the_calling_tier_comes_from_the_destination_country(book: TeamBook) -> None:
    give(book, 100)
    assert book.charge("calling", call=Call(61, True, "AU")).quote.tier == "global"
    assert book.charge("calling", call=Call(61, True, "AU")).credits == 32


def test_an_unknown_destination_uses_the_default_tier(book: TeamBook) -> None:
    give(book, 100)
    result = book.charge("calling", call=Call(61, True, "ZZ"))
    assert result.quote.tier == CATALOG.calling.default_tier == "standard"
    assert result.credits == 2 * 4 * 2


def test_a_call_takes_the_calling_allowance_before_general_credits(book: TeamBook) -> None:
    general = give(book, 1000)
    allowance = give(book, 400, scope=frozenset({"calling"}))
    result = book.charge("calling", call=Call(100 * 60 + 1, True, "US"))  # 101 minutes, basic
    assert result.grants == {allowance.id: 400, general.id: 4}


def test_a_charge_keeps_the_price_it_used_when_the_catalog_changes(book: TeamBook) -> None:
    give(book, 100)
    first = book.charge("email_finder")
    features = dict(CATALOG.features)
    features["email_finder"] = dataclasses.replace(features["email_finder"], cost=7)
    book.catalog = dataclasses.replace(CATALOG, features=features)
    second = book.charge("email_finder")
    assert (first.entry.unit_cost, first.credits) == (5, 5)
    assert (second.entry.unit_cost, second.credits) == (7, 7)


# ---- running out -------------------------------------------------------------


def test_a_charge_the_balance_cannot_cover_is_refused_whole_and_changes_nothing(
    book: TeamBook,
) -> None:
    give(book, 12)
    give(book, 7, category=Category.PURCHASED, expires_in=None)
    before = snapshot(book)
    with pytest.raises(InsufficientCredits) as info:
        book.charge("phone_finder")
    assert info.value.details == {"needed": 20, "available": 19, "feature": "phone_finder"}
    assert info.value.message == "insufficient credits for phone_finder: 20 needed, 19 available"
    assert info.value.code == "insufficient_credits"
    assert snapshot(book) == before


def test_a_hold_the_balance_cannot_cover_is_refused_and_changes_nothing(book: TeamBook) -> None:
    give(book, 12)
    before = snapshot(book)
    with pytest.raises(InsufficientCredits) as info:
        book.hold("email_finder", quantity=3)
    assert (info.value.details["needed"], info.value.details["available"]) == (15, 12)
    assert snapshot(book) == before
    assert book.holds == {}


# ---- holds ---------------------------------------------------------------------


def test_a_hold_reserves_the_maximum_cost_without_spending_it(book: TeamBook) -> None:
    g = give(book, 100)
    hold = book.hold("email_finder", quantity=3, ttl_seconds=600, actor=ALICE)
    assert (hold.amount, hold.quantity, hold.unit_cost, hold.status) == (
        15,
        3,
        5,
        HoldStatus.ACTIVE,
    )
    assert hold.allocations == ((g.id, 15),)
    assert hold.expires_at == NOW + timedelta(seconds=600)
    assert (g.remaining, g.reserved, g.available) == (100, 15, 85)
    assert book.balance().reserved == 15
    assert book.balance().available == 85
    assert book.entries[-1].kind is EntryKind.HOLD
    assert book.entries[-1].postings == (
        Posting(g.id, Account.AVAILABLE, -15),
        Posting(g.id, Account.HELD, 15),
    )


def test_a_hold_without_ttl_uses_the_configured_default(book: TeamBook) -> None:
    give(book, 100)
    hold = book.hold("ai_variable")
    assert hold.expires_at == NOW + timedelta(seconds=CATALOG.limits.default_hold_ttl_seconds)


def test_two_holds_never_reserve_the_same_credit(book: TeamBook) -> None:
    give(book, 10)
    first = book.hold("email_finder", quantity=2)
    with pytest.raises(InsufficientCredits) as info:
        book.hold("email_finder")
    assert info.value.details["available"] == 0
    with pytest.raises(InsufficientCredits):
        book.charge("ai_variable")
    book.release(first)
    assert book.hold("email_finder", quantity=2).amount == 10


def _two_grant_hold(book: TeamBook) -> tuple[Grant, Grant, Hold]:
    """A 15-credit hold drawn 10 from a free grant, then 5 from a purchased one."""
    free = give(book, 10)
    bought = give(book, 10, category=Category.PURCHASED, expires_in=None)
    hold = book.hold("email_finder", quantity=3)
    assert hold.allocations == ((free.id, 10), (bought.id, 5))
    return free, bought, hold


def test_capturing_less_than_held_returns_the_rest_last_drawn_first(book: TeamBook) -> None:
    free, bought, hold = _two_grant_hold(book)
    result = book.capture(hold, quantity=1, outcome="deliverable")
    assert result.credits == 5
    assert result.grants == {free.id: 5}
    assert result.entry.postings == (
        Posting(free.id, Account.HELD, -5),
        Posting(free.id, Account.USED, 5),
        Posting(bought.id, Account.HELD, -5),  # the last drawn comes back first
        Posting(bought.id, Account.AVAILABLE, 5),
        Posting(free.id, Account.HELD, -5),
        Posting(free.id, Account.AVAILABLE, 5),
    )
    assert (free.remaining, free.reserved, bought.remaining, bought.reserved) == (5, 0, 10, 0)
    assert (hold.status, hold.captured, hold.resolved_at) == (HoldStatus.CAPTURED, 5, NOW)


def test_a_capture_charges_the_grants_in_the_order_they_were_held(book: TeamBook) -> None:
    free, bought, hold = _two_grant_hold(book)
    result = book.capture(hold, quantity=3)
    assert result.grants == {free.id: 10, bought.id: 5}
    assert (free.remaining, bought.remaining) == (0, 5)


def test_capturing_more_than_held_is_refused_and_changes_nothing(book: TeamBook) -> None:
    _, _, hold = _two_grant_hold(book)
    before = snapshot(book)
    with pytest.raises(CaptureExceedsHold) as info:
        book.capture(hold, quantity=4)
    assert (info.value.details["held"], info.value.details["requested"]) == (15, 20)
    assert snapshot(book) == before
    assert book.capture(hold, quantity=3).credits == 15  # still active: it can be captured


def test_capturing_a_longer_call_than_held_is_refused(book: TeamBook) -> None:
    give(book, 1000)
    hold = book.hold("calling", quantity=2, call=Call(0, True, "US"))  # 2 min x 4 x basic 1
    assert hold.amount == 8
    before = snapshot(book)
    with pytest.raises(CaptureExceedsHold):
        book.capture(hold, call=Call(121, True, "US"))
    with pytest.raises(CaptureExceedsHold):
        book.capture(hold, call=Call(61, True, "AU"))  # a dearer tier than was held
    assert snapshot(book) == before


def test_a_call_capture_without_a_destination_uses_the_tier_held(book: TeamBook) -> None:
    give(book, 1000)
    hold = book.hold("calling", quantity=3, call=Call(0, True, "AU"))  # 3 x 4 x 4 = 48
    result = book.capture(hold, call=Call(61, True, None))
    assert (result.credits, result.quote.tier) == (32, "global")
    assert book.balance().available == 1000 - 32


def test_an_unanswered_call_captures_nothing(book: TeamBook) -> None:
    g = give(book, 1000)
    hold = book.hold("calling", quantity=3, call=Call(0, True, "AU"))
    result = book.capture(hold, call=Call(61, False, "AU"))
    assert result.credits == 0
    assert (g.remaining, g.reserved) == (1000, 0)


def test_a_call_capture_without_the_call_charges_what_was_held(book: TeamBook) -> None:
    give(book, 1000)
    hold = book.hold("calling", quantity=2, call=Call(0, True, "AU"))
    assert book.capture(hold).credits == 32


def test_a_call_capture_with_a_non_billable_outcome_and_no_call_charges_nothing(
    book: TeamBook,
) -> None:
    give(book, 1000)
    hold = book.hold("calling", quantity=2, call=Call(0, True, "AU"))
    assert book.capture(hold, outcome="unanswered").credits == 0


def test_a_call_capture_with_an_unknown_outcome_and_no_call_is_refused(book: TeamBook) -> None:
    give(book, 1000)
    hold = book.hold("calling", quantity=2)
    with pytest.raises(UnknownOutcome):
        book.capture(hold, outcome="bogus")


@pytest.mark.parametrize("outcome", ["undeliverable", "unknown", "not_found"])
def test_a_capture_with_a_non_billable_outcome_charges_nothing_and_returns_everything(
    book: TeamBook, outcome: str
) -> None:
    free, bought, hold = _two_grant_hold(book)
    result = book.capture(hold, outcome=outcome)
    assert result.credits == 0
    assert result.grants == {}
    assert (hold.status, hold.captured) == (HoldStatus.CAPTURED, 0)
    assert [(g.remaining, g.reserved) for g in (free, bought)] == [(10, 0), (10, 0)]


def test_a_capture_of_zero_uses_charges_nothing(book: TeamBook) -> None:
    g = give(book, 100)
    hold = book.hold("phone_finder", quantity=2)
    assert book.capture(hold, quantity=0).credits == 0
    assert (g.remaining, g.reserved) == (100, 0)


def test_a_capture_charges_the_price_fixed_at_hold_time(book: TeamBook) -> None:
    give(book, 100)
    hold = book.hold("email_finder", quantity=2)
    features = dict(CATALOG.features)
    features["email_finder"] = dataclasses.replace(features["email_finder"], cost=9)
    book.catalog = dataclasses.replace(CATALOG, features=features)
    result = book.capture(hold, quantity=2)
    assert (result.credits, result.entry.unit_cost) == (10, 5)


def test_releasing_a_hold_returns_every_credit_to_its_grants(book: TeamBook) -> None:
    free, bought, hold = _two_grant_hold(book)
    entry = book.release(hold)
    assert entry.kind is EntryKind.RELEASE
    assert entry.credits == 15
    assert entry.hold_id == hold.id
    assert entry.postings == (
        Posting(bought.id, Account.HELD, -5),
        Posting(bought.id, Account.AVAILABLE, 5),
        Posting(free.id, Account.HELD, -10),
        Posting(free.id, Account.AVAILABLE, 10),
    )
    assert hold.status is HoldStatus.RELEASED
    assert [(g.remaining, g.reserved) for g in (free, bought)] == [(10, 0), (10, 0)]
    assert used(book) == {}


@pytest.mark.parametrize("first", ["capture", "release"])
@pytest.mark.parametrize("second", ["capture", "release"])
def test_a_resolved_hold_cannot_be_acted_on_again(book: TeamBook, first: str, second: str) -> None:
    give(book, 100)
    hold = book.hold("email_finder", quantity=2)
    getattr(book, first)(hold)
    before = snapshot(book)
    with pytest.raises(HoldNotActive) as info:
        getattr(book, second)(hold)
    assert info.value.details["hold_status"] == ("captured" if first == "capture" else "released")
    assert snapshot(book) == before


def test_a_capture_and_a_release_are_booked_to_the_holds_owner_whoever_settles_them(
    book: TeamBook,
) -> None:
    give(book, 100)
    owner = Actor(member_id="mem_bob", api_key_id="key_bob")
    captured, released = (
        book.hold("email_finder", actor=owner),
        book.hold("email_finder", actor=owner),
    )
    capture = book.capture(captured, outcome="deliverable", settled_by=ALICE).entry
    release = book.release(released, settled_by=ALICE)
    for entry in (capture, release):
        assert entry.actor == owner
        assert entry.meta == {"settled_by": "member=mem_alice"}  # who settled, for the record
    own = book.capture(
        book.hold("email_finder", actor=owner), outcome="deliverable", settled_by=owner
    )
    assert own.entry.actor == owner and own.entry.meta == {}


def test_an_expired_hold_is_released_by_the_system(book: TeamBook) -> None:
    give(book, 100)
    book.hold("email_finder", actor=ALICE)
    book.now += timedelta(days=2)
    (entry,) = book.expire_holds()
    assert entry.actor == SYSTEM and entry.memo == "hold expired" and entry.meta == {}


def test_a_hold_past_its_ttl_cannot_be_captured(book: TeamBook) -> None:
    give(book, 100)
    hold = book.hold("email_finder", ttl_seconds=60)
    book.now = NOW + timedelta(seconds=60)  # the TTL's end is exclusive
    before = snapshot(book)
    with pytest.raises(HoldNotActive) as info:
        book.capture(hold)
    assert info.value.details["hold_status"] == "expired"
    assert snapshot(book) == before


def test_a_hold_can_be_captured_up_to_the_last_second_of_its_ttl(book: TeamBook) -> None:
    give(book, 100)
    hold = book.hold("email_finder", ttl_seconds=60)
    book.now = NOW + timedelta(seconds=59)
    assert book.capture(hold).credits == 5


def test_expire_holds_leaves_holds_within_their_ttl_alone(book: TeamBook) -> None:
    give(book, 100)
    hold = book.hold("email_finder", ttl_seconds=60)
    book.now = NOW + timedelta(seconds=59)
    assert book.expire_holds() == []
    assert hold.is_active


def test_expire_holds_releases_every_hold_past_its_ttl(book: TeamBook) -> None:
    g = give(book, 100)
    old = book.hold("email_finder", ttl_seconds=60)
    young = book.hold("email_finder", ttl_seconds=600)
    book.now = NOW + timedelta(seconds=61)
    entries = book.expire_holds()
    assert [e.hold_id for e in entries] == [old.id]
    assert entries[0].memo == "hold expired"
    assert (old.status, young.status) == (HoldStatus.EXPIRED, HoldStatus.ACTIVE)
    assert (g.remaining, g.reserved) == (100, 5)
    with pytest.raises(HoldNotActive):
        book.capture(old)


# ---- expiry and revocation -------------------------------------------------------


def test_grant_expiry_writes_off_only_the_available_credits(book: TeamBook) -> None:
    g = give(book, 20, expires_in=timedelta(hours=1))
    hold = book.hold("email_finder", ttl_seconds=86_400)
    book.charge("email_finder")
    book.now = NOW + timedelta(hours=1)
    (entry,) = book.expire_grants()
    assert entry.kind is EntryKind.EXPIRE
    assert entry.credits == 10
    assert entry.postings == (
        Posting(g.id, Account.AVAILABLE, -10),
        Posting(g.id, Account.EXPIRED, 10),
    )
    assert (g.closed, g.remaining, g.reserved) == (True, 5, 5)
    assert book.expire_grants() == []  # written off once
    # The reserved credits go to `expired` when their hold later releases.
    release = book.release(hold)
    assert release.postings == (Posting(g.id, Account.HELD, -5), Posting(g.id, Account.EXPIRED, 5))
    assert (g.remaining, g.reserved) == (0, 0)
    assert used(book, Account.EXPIRED) == {g.id: 15}
    assert book.available_for("email_finder") == 0


def test_a_hold_made_before_its_grant_expired_can_still_be_captured(book: TeamBook) -> None:
    g = give(book, 20, expires_in=timedelta(hours=1))
    hold = book.hold("email_finder", quantity=2, ttl_seconds=86_400)
    book.now = NOW + timedelta(hours=2)
    book.expire_grants()
    result = book.capture(hold, quantity=1)
    assert result.grants == {g.id: 5}
    assert used(book, Account.EXPIRED) == {g.id: 15}  # 10 at expiry, 5 returned by the capture
    assert g.remaining == 0


def test_an_expired_grant_is_never_spent_even_before_the_write_off(book: TeamBook) -> None:
    give(book, 20, expires_in=timedelta(hours=1))
    book.now = NOW + timedelta(hours=1)
    with pytest.raises(InsufficientCredits):
        book.charge("ai_variable")
    assert book.balance().available == 0


def test_grants_without_expiry_or_not_yet_expired_are_not_written_off(book: TeamBook) -> None:
    give(book, 20, expires_in=None)
    give(book, 20, expires_in=timedelta(hours=2))
    book.now = NOW + timedelta(hours=1)
    assert book.expire_grants() == []


def test_revoke_takes_at_most_what_is_left(book: TeamBook) -> None:
    g = give(book, 100, category=Category.PURCHASED, expires_in=None)
    book.charge("phone_finder")
    entry = book.revoke(g.id, 500, memo="refund")
    assert entry.kind is EntryKind.REVOKE
    assert entry.credits == 80
    assert entry.postings == (
        Posting(g.id, Account.AVAILABLE, -80),
        Posting(g.id, Account.REVOKED, 80),
    )
    assert (g.remaining, g.closed) == (0, True)
    assert book.revoke(g.id).credits == 0


def test_revoke_leaves_reserved_credits_to_their_hold(book: TeamBook) -> None:
    g = give(book, 100, category=Category.PURCHASED, expires_in=None)
    hold = book.hold("phone_finder")
    assert book.revoke(g.id).credits == 80
    assert (g.remaining, g.reserved, g.closed) == (20, 20, False)
    book.release(hold)
    assert g.available == 20


def test_revoke_of_part_of_a_grant(book: TeamBook) -> None:
    g = give(book, 100)
    assert book.revoke(g.id, 30).credits == 30
    assert (g.remaining, g.closed) == (70, False)


@pytest.mark.parametrize("credits", [0, -5, True])
def test_revoke_refuses_a_non_positive_amount(book: TeamBook, credits: int) -> None:
    g = give(book, 100)
    before = snapshot(book)
    with pytest.raises(InvalidAmount, match="at least 1"):
        book.revoke(g.id, credits)
    assert snapshot(book) == before


def test_revoke_refuses_a_float(book: TeamBook) -> None:
    g = give(book, 100)
    with pytest.raises(InvalidAmount):
        book.revoke(g.id, 2.5)  # type: ignore[arg-type]


def test_revoke_of_an_unknown_grant_is_not_found(book: TeamBook) -> None:
    with pytest.raises(GrantNotFound, match="no grant 'grt_nope'"):
        book.revoke("grt_nope")


# ---- bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"quantity": 0}, InvalidQuantity, "between 1 and 100000"),
        ({"quantity": -3}, InvalidQuantity, "between 1 and 100000"),
        ({"quantity": 100_001}, InvalidQuantity, "between 1 and 100000"),
        ({"quantity": True}, InvalidQuantity, "whole number"),
        ({"quantity": 1.0}, InvalidQuantity, "whole number"),
        ({"quantity": 2.5}, InvalidQuantity, "whole number"),
        ({"outcome": "maybe"}, UnknownOutcome, "valid outcomes: deliverable, risky"),
        ({"call": Call(60, True)}, InvalidInput, "call-metered"),
    ],
)
def test_charge_refuses_bad_input_with_a_clear_message_and_changes_nothing(
    book: TeamBook, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    give(book, 100)
    before = snapshot(book)
    with pytest.raises(error, match=message):
        book.charge("email_finder", **kwargs)
    assert snapshot(book) == before


def test_charge_refuses_an_unknown_feature_naming_the_valid_ones(book: TeamBook) -> None:
    with pytest.raises(UnknownFeature, match="'fax'; valid features: ai_variable"):
        book.charge("fax")


@pytest.mark.parametrize("ttl", [0, -1, 86_401, True, 1.5])
def test_hold_refuses_a_ttl_out_of_range(book: TeamBook, ttl: Any) -> None:
    give(book, 100)
    before = snapshot(book)
    with pytest.raises(InvalidQuantity, match="ttl_seconds must be between 1 and 86400"):
        book.hold("email_finder", ttl_seconds=ttl)
    assert snapshot(book) == before


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"quantity": 0}, InvalidQuantity),
        ({"quantity": 100_001}, InvalidQuantity),
        ({"quantity": 2.0}, InvalidQuantity),
    ],
)
def test_hold_refuses_a_bad_quantity(
    book: TeamBook, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    give(book, 100)
    with pytest.raises(error):
        book.hold("email_finder", **kwargs)
    with pytest.raises(UnknownFeature):
        book.hold("fax")
    assert book.holds == {}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"quantity": -1}, InvalidQuantity),
        ({"quantity": 1.5}, InvalidQuantity),
        ({"outcome": "maybe"}, UnknownOutcome),
        ({"quantity": 0, "outcome": "maybe"}, UnknownOutcome),
    ],
)
def test_capture_refuses_bad_input_and_leaves_the_hold_active(
    book: TeamBook, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    give(book, 100)
    hold = book.hold("email_finder", quantity=2)
    before = snapshot(book)
    with pytest.raises(error):
        book.capture(hold, **kwargs)
    assert snapshot(book) == before
    assert hold.is_active


def test_capture_refuses_a_bool_quantity(book: TeamBook) -> None:
    give(book, 100)
    hold = book.hold("email_finder", quantity=2)
    with pytest.raises(InvalidQuantity):
        book.capture(hold, quantity=False)


@pytest.mark.parametrize("credits", [0, -1, True, 1.5, 1_000_000_001])
def test_issue_refuses_a_bad_amount(book: TeamBook, credits: Any) -> None:
    with pytest.raises(InvalidAmount, match="between 1 and 1000000000"):
        give(book, credits)
    assert book.grants == {}


def test_issue_refuses_inconsistent_grants(book: TeamBook) -> None:
    with pytest.raises(InvalidInput, match="cannot expire before it becomes effective"):
        book.issue(
            credits=5,
            source=Source.GIFT,
            category=Category.FREE,
            bucket="gifted",
            effective_at=NOW,
            expires_at=NOW - timedelta(seconds=1),
        )
    with pytest.raises(UnknownFeature):
        give(book, 5, scope=frozenset({"fax"}))
    with pytest.raises(InvalidInput, match="at least one feature"):
        give(book, 5, scope=frozenset())
    with pytest.raises(InvalidInput, match="unknown bucket 'pocket'"):
        book.issue(credits=5, source=Source.GIFT, category=Category.FREE, bucket="pocket")
    assert book.grants == {}
    assert book.entries == []


# ---- reading and persistence bookkeeping --------------------------------------------


def test_the_balance_shows_buckets_reserved_and_what_expires(book: TeamBook) -> None:
    give(book, 100, expires_in=timedelta(days=3))
    give(book, 50, category=Category.PURCHASED, expires_in=None)
    give(book, 400, scope=frozenset({"calling"}))
    book.hold("phone_finder")
    balance = book.balance()
    assert balance.reserved == 20
    assert balance.available == 80 + 50 + 400
    assert balance.buckets["gifted"] == 80 + 400
    assert balance.buckets["purchased"] == 50
    assert [(e.credits, e.expires_at) for e in balance.expiring] == [
        (80, NOW + timedelta(days=3)),
        (400, NOW + timedelta(days=30)),
    ]


def test_pending_lists_what_a_transaction_must_persist(book: TeamBook) -> None:
    loaded = Grant(
        id="grt_old",
        team_id="team_1",
        source=Source.PURCHASE,
        category=Category.PURCHASED,
        scope=None,
        amount=50,
        remaining=50,
        reserved=0,
        effective_at=NOW - timedelta(days=1),
        expires_at=None,
        created_at=NOW - timedelta(days=1),
    )
    other = TeamBook.load("team_1", CATALOG, NOW, [loaded])
    new = give(other, 10)
    other.charge("phone_finder")  # 10 from the new grant, 10 from the loaded one
    new_grants, changed_grants, new_holds, changed_holds, entries = other.pending()
    assert [g.id for g in new_grants] == [new.id]
    assert [g.id for g in changed_grants] == ["grt_old"]
    assert (new_holds, changed_holds) == ([], [])
    assert [e.kind for e in entries] == [EntryKind.GRANT, EntryKind.CHARGE]
    other.clear_pending()
    assert other.pending() == ([], [], [], [], [])
    assert check_invariants(other.grants.values()) == []


def test_check_invariants_reports_a_corrupted_grant(book: TeamBook) -> None:
    g = give(book, 10)
    hold = book.hold("email_finder")
    broken = dataclasses.replace(g, reserved=20)
    problems = check_invariants([broken], [hold])
    assert any("reserved 20 > remaining 10" in p for p in problems)
    assert any("active holds reserve 5" in p for p in problems)


def test_catalog_fixture_is_the_default(book: TeamBook) -> None:
    assert isinstance(book.catalog, Catalog)
    assert book.catalog.feature("calling").cost == 4


# ---- several grants as one entry, and expiries grouped by instant --------------------------


def test_issue_all_posts_one_balanced_entry_with_a_pair_of_postings_per_grant(
    book: TeamBook,
) -> None:
    ends = NOW + timedelta(days=30)
    made = book.issue_all(
        [
            NewGrant(1500, Source.PLAN, Category.FREE, "subscription", expires_at=ends),
            NewGrant(
                400,
                Source.ALLOWANCE,
                Category.FREE,
                "calling",
                frozenset({"calling"}),
                expires_at=ends,
            ),
        ],
        memo="period 0",
    )
    [entry] = book.entries
    assert entry.kind is EntryKind.GRANT and entry.credits == 1900 and entry.memo == "period 0"
    assert entry.meta == {"source": "plan,allowance", "category": "free"}
    assert [(p.grant_id, p.account, p.amount) for p in entry.postings] == [
        (made[0].id, Account.ISSUED, -1500),
        (made[0].id, Account.AVAILABLE, 1500),
        (made[1].id, Account.ISSUED, -400),
        (made[1].id, Account.AVAILABLE, 400),
    ]
    assert book.available_for("calling") == 1900 and book.available_for("email_finder") == 1500


def test_issue_all_checks_every_grant_before_changing_anything(book: TeamBook) -> None:
    before = snapshot(book)
    with pytest.raises(InvalidInput, match="unknown bucket"):
        book.issue_all(
            [
                NewGrant(100, Source.GIFT, Category.FREE, "gifted"),
                NewGrant(100, Source.GIFT, Category.FREE, "no-such-bucket"),
            ]
        )
    with pytest.raises(InvalidInput, match="at least one"):
        book.issue_all([])
    assert snapshot(book) == before


def test_grants_ending_at_one_instant_expire_as_one_entry(book: TeamBook) -> None:
    first = give(book, 100, expires_in=timedelta(days=1))
    second = give(book, 50, expires_in=timedelta(days=1))
    later = give(book, 70, expires_in=timedelta(days=2))
    book.now = NOW + timedelta(days=1)
    [entry] = book.expire_grants()
    assert entry.kind is EntryKind.EXPIRE and entry.credits == 150
    assert set(entry.meta["grant_ids"].split(",")) == {first.id, second.id}
    assert sorted(p.amount for p in entry.postings if p.account is Account.EXPIRED) == [50, 100]
    assert entry.memo == "gifted credits expired"
    assert not later.closed
    book.now = NOW + timedelta(days=2)
    [entry] = book.expire_grants()
    assert entry.meta["grant_ids"] == later.id and entry.credits == 70
