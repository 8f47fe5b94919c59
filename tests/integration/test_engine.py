"""The engine end to end on SQLite and PostgreSQL: charges, holds, idempotency, audit."""

from __future__ import annotations

from datetime import timedelta

import pytest

import creditbook
from creditbook import (
    Actor,
    Call,
    CaptureExceedsHold,
    Creditbook,
    FrozenClock,
    HoldNotActive,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidQuantity,
    TeamNotFound,
    UnknownFeature,
    UnknownOutcome,
)


def _team(book: Creditbook, free: int = 100, purchased: int = 1000) -> str:
    team = book.create_team("Acme")
    if free:
        book.grant(
            team.id,
            free,
            category="free",
            source="plan",
            expires_at=book.clock.now() + timedelta(days=30),
        )
    if purchased:
        book.grant(team.id, purchased, category="purchased", source="purchase")
    return team.id


def _ledger_count(book: Creditbook, team_id: str) -> int:
    return len(book.ledger(team_id, limit=500).entries)


def test_free_credits_are_spent_before_purchased_and_the_split_is_recorded(
    book: Creditbook,
) -> None:
    team = _team(book, free=12, purchased=100)
    receipt = book.charge(team, "phone_finder", outcome="found")
    assert receipt.credits == 20
    assert [(d.category, d.credits) for d in receipt.grants] == [("free", 12), ("purchased", 8)]
    assert book.balance(team).available == 92
    assert book.audit(team).clean


def test_a_non_billable_outcome_costs_nothing_but_is_recorded(book: Creditbook) -> None:
    team = _team(book)
    receipt = book.charge(team, "email_finder", outcome="undeliverable")
    assert receipt.credits == 0
    [entry] = book.ledger(team, kind="attempt").entries
    assert entry.outcome == "undeliverable" and entry.postings == ()
    assert book.balance(team).available == 1100


def test_each_entry_records_price_quantity_outcome_and_who(book: Creditbook) -> None:
    team = _team(book)
    member = book.add_member(team, "max@example.com", "member")
    book.charge(
        team,
        "email_finder",
        quantity=3,
        outcome="risky",
        actor=Actor(member_id=member.id, api_key_id="key_1", job_id="job_1"),
        idempotency_key="req-1",
    )
    [entry] = book.ledger(team, kind="charge").entries
    assert (entry.feature, entry.quantity, entry.outcome, entry.unit_cost, entry.credits) == (
        "email_finder",
        3,
        "risky",
        5,
        15,
    )
    assert entry.actor == Actor(member_id=member.id, api_key_id="key_1", job_id="job_1")
    assert entry.idempotency_key == "req-1"
    assert book.ledger(team, member_id=member.id).entries == (entry,)


def test_calls_are_billed_by_rounded_up_minutes_times_the_tier(book: Creditbook) -> None:
    team = _team(book)
    assert book.charge(team, "calling", call=Call(61, True, "premium")).credits == 2 * 4 * 8
    assert book.charge(team, "calling", call=Call(600, False, "US")).credits == 0


def test_a_charge_the_balance_cannot_cover_is_refused_whole(book: Creditbook) -> None:
    team = _team(book, free=10, purchased=0)
    before = _ledger_count(book, team)
    with pytest.raises(InsufficientCredits) as info:
        book.charge(team, "phone_finder", outcome="found")
    assert info.value.details == {"needed": 20, "available": 10, "feature": "phone_finder"}
    assert _ledger_count(book, team) == before
    assert book.balance(team).available == 10


def test_a_hold_reserves_then_a_smaller_capture_returns_the_rest(book: Creditbook) -> None:
    team = _team(book, free=50, purchased=100)
    hold = book.hold(team, "phone_finder", quantity=3)
    assert hold.credits == 60
    balance = book.balance(team)
    assert (balance.available, balance.reserved) == (90, 60)
    receipt = book.capture(team, hold.hold_id, quantity=1)
    assert (receipt.credits, receipt.returned) == (20, 40)
    # Charged in spending order: the free grant paid.
    assert [(d.category, d.credits) for d in receipt.grants] == [("free", 20)]
    balance = book.balance(team)
    assert (balance.available, balance.reserved) == (130, 0)
    assert book.audit(team).clean


def test_two_holds_never_reserve_the_same_credit(book: Creditbook) -> None:
    team = _team(book, free=30, purchased=0)
    book.hold(team, "phone_finder")
    with pytest.raises(InsufficientCredits):
        book.hold(team, "phone_finder")


def test_a_resolved_or_expired_hold_cannot_be_acted_on_again(
    book: Creditbook, clock: FrozenClock
) -> None:
    team = _team(book)
    captured = book.hold(team, "email_finder")
    book.capture(team, captured.hold_id, outcome="deliverable")
    with pytest.raises(HoldNotActive):
        book.capture(team, captured.hold_id)
    with pytest.raises(HoldNotActive):
        book.release(team, captured.hold_id)
    expiring = book.hold(team, "email_finder", ttl_seconds=60)
    clock.advance(timedelta(seconds=61))
    with pytest.raises(HoldNotActive):
        book.capture(team, expiring.hold_id)
    assert book.get_hold(team, expiring.hold_id).status.value == "expired"
    assert book.balance(team).reserved == 0
    assert book.audit(team).clean


def test_an_expired_hold_is_released_by_any_read_of_the_team(
    book: Creditbook, clock: FrozenClock
) -> None:
    team = _team(book, free=0, purchased=100)
    book.hold(team, "phone_finder", ttl_seconds=30)
    assert book.balance(team).available == 80
    clock.advance(timedelta(seconds=30))
    assert book.balance(team).available == 100
    [release] = book.ledger(team, kind="release").entries
    assert release.memo == "hold expired"


def test_capturing_above_the_hold_is_refused_and_changes_nothing(book: Creditbook) -> None:
    team = _team(book)
    hold = book.hold(team, "ai_variable", quantity=2)
    before = _ledger_count(book, team)
    with pytest.raises(CaptureExceedsHold):
        book.capture(team, hold.hold_id, quantity=3)
    assert _ledger_count(book, team) == before
    assert book.capture(team, hold.hold_id).credits == 2


def test_a_retried_charge_has_one_effect_and_the_same_answer(book: Creditbook) -> None:
    team = _team(book)
    first = book.charge(team, "email_finder", outcome="deliverable", idempotency_key="k")
    again = book.charge(team, "email_finder", outcome="deliverable", idempotency_key="k")
    assert again == first
    assert book.balance(team).available == 1095
    with pytest.raises(IdempotencyConflict):
        book.charge(team, "email_finder", outcome="risky", idempotency_key="k")


def test_a_refused_request_records_nothing_so_its_key_can_be_used_after_a_top_up(
    book: Creditbook,
) -> None:
    team = _team(book, free=0, purchased=10)
    with pytest.raises(InsufficientCredits):
        book.charge(team, "phone_finder", outcome="found", idempotency_key="retry-me")
    book.grant(team, 100, category="purchased", source="purchase")
    assert (
        book.charge(team, "phone_finder", outcome="found", idempotency_key="retry-me").credits == 20
    )


def test_idempotent_holds_captures_and_releases_replay(book: Creditbook) -> None:
    team = _team(book)
    hold = book.hold(team, "phone_finder", idempotency_key="h")
    assert book.hold(team, "phone_finder", idempotency_key="h") == hold
    capture = book.capture(team, hold.hold_id, outcome="found", idempotency_key="c")
    assert book.capture(team, hold.hold_id, outcome="found", idempotency_key="c") == capture
    other = book.hold(team, "phone_finder")
    release = book.release(team, other.hold_id, idempotency_key="r")
    assert book.release(team, other.hold_id, idempotency_key="r") == release
    assert book.balance(team).available == 1080


@pytest.mark.parametrize(
    ("feature", "kwargs", "error"),
    [
        ("teleport", {}, UnknownFeature),
        ("email_finder", {"outcome": "maybe"}, UnknownOutcome),
        ("email_finder", {"quantity": 0}, InvalidQuantity),
        ("email_finder", {"quantity": -3}, InvalidQuantity),
        ("email_finder", {"quantity": 10**12}, InvalidQuantity),
        ("calling", {"call": Call(-1, True)}, InvalidQuantity),
    ],
)
def test_bad_input_raises_a_specific_error_and_writes_nothing(
    book: Creditbook, feature: str, kwargs: dict[str, object], error: type[Exception]
) -> None:
    team = _team(book)
    before = _ledger_count(book, team)
    with pytest.raises(error):
        book.charge(team, feature, **kwargs)  # type: ignore[arg-type]
    assert _ledger_count(book, team) == before


def test_unknown_team_and_hold_are_not_found(book: Creditbook) -> None:
    with pytest.raises(TeamNotFound):
        book.charge("team_missing", "email_finder")
    team = _team(book)
    with pytest.raises(creditbook.HoldNotFound):
        book.capture(team, "hold_missing")


def test_expired_free_credits_are_written_off_and_reserved_ones_wait_for_their_hold(
    book: Creditbook, clock: FrozenClock
) -> None:
    team = book.create_team("Acme").id
    book.grant(
        team, 100, category="free", source="plan", expires_at=clock.now() + timedelta(hours=1)
    )
    hold = book.hold(team, "phone_finder", ttl_seconds=86_400)
    clock.advance(timedelta(hours=1, minutes=1))
    balance = book.balance(team)
    assert balance.available == 0 and balance.reserved == 20
    [expiry] = book.ledger(team, kind="expire").entries
    assert expiry.credits == 80
    # The held credits are still capturable after the grant expired.
    assert book.capture(team, hold.hold_id, outcome="found").credits == 20
    assert book.audit(team).clean


def test_revoke_takes_back_only_what_is_left(book: Creditbook) -> None:
    team = book.create_team("Acme").id
    grant = book.grant(team, 100, category="purchased", source="purchase")
    book.charge(team, "phone_finder", quantity=3, outcome="found")
    receipt = book.revoke(team, grant.grant_id, 1000, reason="refund")
    assert receipt.revoked == 40
    assert book.revoke(team, grant.grant_id).revoked == 0
    assert book.balance(team).available == 0
    assert book.audit(team).clean


def test_the_ledger_pages_newest_first_with_a_cursor(book: Creditbook) -> None:
    team = _team(book)
    for _ in range(5):
        book.charge(team, "ai_variable")
    first = book.ledger(team, limit=3, kind="charge")
    second = book.ledger(team, limit=3, kind="charge", cursor=first.next_cursor)
    ids = [e.id for e in first.entries + second.entries]
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)
    assert second.next_cursor is None
