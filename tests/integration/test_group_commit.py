"""Group commit and the batch API keep every rule of one-transaction-per-call, on both databases."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

import creditbook
from creditbook import (
    Actor,
    ChargeReceipt,
    CreditbookError,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidInput,
    InvalidQuantity,
    TeamNotFound,
    UnknownFeature,
    UnknownOutcome,
)
from creditbook.adapters.db.repository import SqlUnitOfWork
from creditbook.domain.book import TeamBook
from creditbook.domain.pricing import Call
from creditbook.service.group_commit import ChargeItem

COST = 5  # email_finder, deliverable


def _team(book: creditbook.Creditbook, credits: int) -> str:
    team = book.create_team("Batch team").id
    book.grant(team, credits, category="purchased", source="purchase")
    return team


def _charge_entries(book: creditbook.Creditbook, team: str) -> list[creditbook.Entry]:
    return list(reversed(book.ledger(team, kind="charge", limit=500).entries))


def _in_threads(count: int, work: object) -> None:
    assert callable(work)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)


def test_threads_charging_through_group_commit_succeed_exactly_as_often_as_the_balance_covers(
    grouped: creditbook.Creditbook,
) -> None:
    covered = 37
    team = _team(grouped, covered * COST)
    ok: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        for i in range(12):
            try:
                receipt = grouped.charge(
                    team, "email_finder", outcome="deliverable", idempotency_key=f"w{worker}-{i}"
                )
            except InsufficientCredits:
                with lock:
                    refused.append(f"w{worker}-{i}")
            else:
                with lock:
                    ok.append(receipt.charge_id)

    _in_threads(8, work)
    assert len(ok) == covered
    assert len(refused) == 8 * 12 - covered
    assert grouped.balance(team).available == 0
    assert len(_charge_entries(grouped, team)) == covered
    assert grouped.group_commit is not None
    assert grouped.group_commit.stats.commands == 8 * 12
    assert grouped.audit(team).clean


def test_concurrent_callers_share_one_transaction_and_each_gets_its_own_receipt(
    book: creditbook.Creditbook,
) -> None:
    group = book.enable_group_commit()
    team = _team(book, 1000)
    receipts: dict[int, ChargeReceipt] = {}

    def work(worker: int) -> None:
        receipts[worker] = book.charge(
            team, "email_finder", outcome="deliverable", actor=Actor(job_id=f"job{worker}")
        )

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    try:
        with group.paused():
            for t in threads:
                t.start()
            while group.queued() < 6:
                threading.Event().wait(0.01)
        for t in threads:
            t.join(60)
    finally:
        book.disable_group_commit()
    assert group.stats.batches == 1 and group.stats.commands == 6
    assert len({r.charge_id for r in receipts.values()}) == 6
    assert book.balance(team).available == 1000 - 6 * COST
    assert {e.actor.job_id for e in _charge_entries(book, team)} == {f"job{i}" for i in range(6)}
    assert book.audit(team).clean


def test_a_failing_item_in_a_batch_fails_alone_and_leaves_no_trace(
    book: creditbook.Creditbook,
) -> None:
    team = _team(book, 3 * COST + 2)
    results = book.charge_many(
        team,
        [
            ChargeItem("email_finder", outcome="deliverable", idempotency_key="a"),
            ChargeItem("no_such_feature", idempotency_key="b"),
            ChargeItem("email_finder", outcome="deliverable", idempotency_key="c"),
            ChargeItem("email_finder", quantity=50, outcome="deliverable", idempotency_key="d"),
            ChargeItem("email_finder", outcome="deliverable", idempotency_key="e"),
        ],
    )
    assert [type(r) for r in results] == [
        ChargeReceipt,
        UnknownFeature,
        ChargeReceipt,
        InsufficientCredits,
        ChargeReceipt,
    ]
    assert book.balance(team).available == 2
    assert [e.idempotency_key for e in _charge_entries(book, team)] == ["a", "c", "e"]
    # The failed items stored no receipt: retried alone they run (and fail) again.
    with pytest.raises(InsufficientCredits):
        book.charge(team, "email_finder", quantity=50, outcome="deliverable", idempotency_key="d")
    assert book.audit(team).clean


def test_a_spend_guard_refusing_one_item_refuses_only_that_item(
    book: creditbook.Creditbook,
) -> None:
    def no_job_x(uow: SqlUnitOfWork, team_book: TeamBook) -> None:
        if any(e.actor.job_id == "x" for e in team_book.entries):
            raise InvalidInput("job x may not spend")

    book.spend_guards.append(no_job_x)
    team = _team(book, 100)
    other = _team(book, 100)
    results = book.charge_many(
        None,
        [
            ChargeItem("email_finder", outcome="deliverable", team_id=team),
            ChargeItem("email_finder", outcome="deliverable", team_id=other),
            ChargeItem(
                "email_finder", outcome="deliverable", team_id=team, actor=Actor(job_id="x")
            ),
            ChargeItem("email_finder", outcome="deliverable", team_id=team),
        ],
    )
    assert [type(r) for r in results] == [ChargeReceipt, ChargeReceipt, InvalidInput, ChargeReceipt]
    assert book.balance(team).available == 100 - 2 * COST
    assert book.balance(other).available == 100 - COST
    assert all(e.actor.job_id != "x" for e in _charge_entries(book, team))
    assert book.audit(team).clean and book.audit(other).clean


def test_idempotent_retries_within_and_across_batches_charge_once(
    grouped: creditbook.Creditbook,
) -> None:
    team = _team(grouped, 100)
    first, again, conflict = grouped.charge_many(
        team,
        [
            ChargeItem("email_finder", outcome="deliverable", idempotency_key="k1"),
            ChargeItem("email_finder", outcome="deliverable", idempotency_key="k1"),
            ChargeItem("email_finder", quantity=2, outcome="deliverable", idempotency_key="k1"),
        ],
    )
    assert isinstance(first, ChargeReceipt) and first == again
    assert isinstance(conflict, IdempotencyConflict)
    # Across batches: through the committer and through another batch.
    retried = grouped.charge(team, "email_finder", outcome="deliverable", idempotency_key="k1")
    (batched,) = grouped.charge_many(
        team, [ChargeItem("email_finder", outcome="deliverable", idempotency_key="k1")]
    )
    assert retried == first == batched
    with pytest.raises(IdempotencyConflict):
        grouped.charge(team, "phone_finder", outcome="found", idempotency_key="k1")
    assert grouped.balance(team).available == 100 - COST
    assert grouped.audit(team).clean


# Requests that differ in one field each: ``charge_many`` hashes each distinct request
# once per call, so every field must tell two requests apart.
DISTINCT_REQUESTS: list[dict[str, Any]] = [
    {"feature": "email_finder", "outcome": "deliverable"},
    {"feature": "phone_finder", "outcome": "found"},
    {"feature": "linkedin_enrichment", "outcome": "found"},
    {"feature": "email_finder", "outcome": "risky"},
    {"feature": "email_finder", "outcome": "deliverable", "quantity": 2},
    {"feature": "email_finder", "outcome": "deliverable", "actor": Actor(member_id="mem_x")},
    {"feature": "calling", "call": Call(60, True, "US")},
    {"feature": "calling", "call": Call(61, True, "US")},
]


def test_each_distinct_request_of_a_batch_keeps_its_own_hash(
    grouped: creditbook.Creditbook,
) -> None:
    team = _team(grouped, 1000)
    # Twice each, under distinct keys and interleaved: repeats share the call's hash.
    keyed = [(f"k{i}-{n}", r) for n in range(2) for i, r in enumerate(DISTINCT_REQUESTS)]
    receipts = grouped.charge_many(team, [ChargeItem(**r, idempotency_key=k) for k, r in keyed])
    assert all(isinstance(r, ChargeReceipt) for r in receipts)
    for (key, request), receipt in zip(keyed, receipts, strict=True):
        # A retry alone, hashed without the batch: the same request answers the receipt...
        assert grouped.charge(team, idempotency_key=key, **request) == receipt
        # ...and any other request under the same key is a conflict.
        for other in DISTINCT_REQUESTS:
            if other is not request:
                with pytest.raises(IdempotencyConflict):
                    grouped.charge(team, idempotency_key=key, **other)
    assert grouped.audit(team).clean


def test_values_that_compare_equal_but_encode_apart_keep_their_own_hash(
    book: creditbook.Creditbook,
) -> None:
    team = _team(book, 1000)
    answered_as_int = Call(60, cast(Any, 1), "US")  # == Call(60, True, "US"), encodes 1
    results = book.charge_many(
        team,
        [
            ChargeItem("email_finder", quantity=cast(Any, True), idempotency_key="bool"),
            ChargeItem("email_finder", quantity=1, idempotency_key="int"),
            ChargeItem("email_finder", quantity=cast(Any, [1]), idempotency_key="list"),
            ChargeItem("email_finder", outcome=cast(Any, ["x"]), idempotency_key="outcome"),
            ChargeItem("calling", call=answered_as_int, idempotency_key="call-1"),
            ChargeItem("calling", call=Call(60, True, "US"), idempotency_key="call-true"),
        ],
    )
    assert [type(r) for r in results] == [
        InvalidQuantity, ChargeReceipt, InvalidQuantity, UnknownOutcome, ChargeReceipt,
        ChargeReceipt,
    ]  # fmt: skip
    # Each stored receipt is found again by its own request, hashed alone.
    assert book.charge(team, "email_finder", quantity=1, idempotency_key="int") == results[1]
    again = book.charge(team, "calling", call=Call(60, True, "US"), idempotency_key="call-true")
    assert again == results[5]
    assert book.audit(team).clean


def test_many_threads_retrying_the_same_keys_charge_each_key_once(
    grouped: creditbook.Creditbook,
) -> None:
    team = _team(grouped, 1000)
    seen: dict[str, set[str]] = {}
    lock = threading.Lock()

    def work(worker: int) -> None:
        for i in range(10):
            key = f"order-{i}"
            receipt = grouped.charge(
                team, "email_finder", outcome="deliverable", idempotency_key=key
            )
            with lock:
                seen.setdefault(key, set()).add(receipt.charge_id)

    _in_threads(6, work)
    assert all(len(ids) == 1 for ids in seen.values()) and len(seen) == 10
    assert grouped.balance(team).available == 1000 - 10 * COST
    assert grouped.audit(team).clean


def test_order_within_a_team_is_kept_in_a_batch(book: creditbook.Creditbook) -> None:
    team = _team(book, 2 * COST)
    results = book.charge_many(
        team,
        [
            ChargeItem("email_finder", outcome="deliverable", idempotency_key=f"o{i}")
            for i in range(4)
        ],
    )
    assert [isinstance(r, ChargeReceipt) for r in results] == [True, True, False, False]
    assert [e.idempotency_key for e in _charge_entries(book, team)] == ["o0", "o1"]


def test_order_of_one_callers_calls_is_kept_through_group_commit(
    grouped: creditbook.Creditbook,
) -> None:
    team = _team(grouped, 1000)
    for i in range(5):
        grouped.charge(team, "email_finder", outcome="deliverable", idempotency_key=f"s{i}")
    entries = _charge_entries(grouped, team)
    assert [e.idempotency_key for e in entries] == [f"s{i}" for i in range(5)]
    assert [e.id for e in entries] == sorted(e.id for e in entries)


def test_holds_captures_and_releases_from_many_threads_balance(
    grouped: creditbook.Creditbook,
) -> None:
    team = _team(grouped, 1000)

    def work(worker: int) -> None:
        for i in range(4):
            hold = grouped.hold(team, "email_finder", quantity=2)
            if i % 2:
                grouped.capture(team, hold.hold_id, quantity=1, outcome="deliverable")
            else:
                grouped.release(team, hold.hold_id)

    _in_threads(6, work)
    balance = grouped.balance(team)
    assert balance.reserved == 0
    assert balance.available == 1000 - 6 * 2 * COST
    assert grouped.audit(team).clean


def test_capturing_a_released_hold_fails_alone_in_its_batch(
    grouped: creditbook.Creditbook,
) -> None:
    team = _team(grouped, 100)
    hold = grouped.hold(team, "email_finder")
    grouped.release(team, hold.hold_id)
    with pytest.raises(CreditbookError) as refused:
        grouped.capture(team, hold.hold_id, outcome="deliverable")
    assert refused.value.code == "hold_not_active"
    assert grouped.balance(team).available == 100
    assert grouped.audit(team).clean


def test_unknown_teams_and_bad_items_are_answered_per_item(book: creditbook.Creditbook) -> None:
    team = _team(book, 100)
    results = book.charge_many(
        team,
        [
            ChargeItem("email_finder", outcome="deliverable", team_id="team_missing"),
            ChargeItem("email_finder", outcome="deliverable", idempotency_key=""),
            ChargeItem("email_finder", outcome="deliverable"),
        ],
    )
    assert isinstance(results[0], TeamNotFound)
    assert isinstance(results[1], InvalidInput)
    assert isinstance(results[2], ChargeReceipt)
    with pytest.raises(InvalidInput):
        book.charge_many(team, [])
    assert book.balance(team).available == 100 - COST


def test_per_team_group_commit_keeps_each_team_exact(book: creditbook.Creditbook) -> None:
    group = book.enable_group_commit(per_team=True, max_batch=8, max_wait_ms=1000)
    teams = [_team(book, 4 * COST), _team(book, 4 * COST)]
    ok: list[str] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        try:
            receipt = book.charge(teams[worker % 2], "email_finder", outcome="deliverable")
        except InsufficientCredits:
            return
        with lock:
            ok.append(receipt.team_id)

    try:
        _in_threads(12, work)
    finally:
        book.disable_group_commit()
    assert sorted(ok) == sorted([teams[0]] * 4 + [teams[1]] * 4)
    assert group.stats.commands == 12
    assert all(book.balance(t).available == 0 and book.audit(t).clean for t in teams)


@pytest.mark.postgres
def test_two_processes_batching_the_same_teams_charge_each_call_once(fresh_pg_url: str) -> None:
    # Two engines, as two server processes, each with its committer: their batches
    # lock overlapping teams (in id order) and every call is charged exactly once.
    import random

    books = [creditbook.open(fresh_pg_url) for _ in range(2)]
    teams = [_team(books[0], 100_000) for _ in range(3)]
    for book in books:
        book.enable_group_commit()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        book = books[i % 2]
        pick = random.Random(i)
        try:
            for n in range(60):
                book.charge(
                    pick.choice(teams),
                    "email_finder",
                    outcome="deliverable",
                    idempotency_key=f"w{i}-{n}",
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        _in_threads(16, work)
    finally:
        stats = [book.group_commit.stats for book in books if book.group_commit]
        for book in books:
            book.disable_group_commit()
    assert errors == []
    assert all(s.batches > 0 and s.largest > 1 for s in stats)
    spent = sum(100_000 - books[0].balance(t).available for t in teams)
    assert spent == 16 * 60 * COST
    assert sum(len(_charge_entries(books[0], t)) for t in teams) == 16 * 60
    assert books[0].audit().problems == []
    for book in books:
        assert book.engine is not None
        book.engine.dispose()
