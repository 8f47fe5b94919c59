"""The kernel's team transaction and the spend use cases, on the in-memory unit of work.

No database: ``FakeStore`` keeps what committed, so each test can say what a
command wrote and, for a refusal, that it wrote nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from creditbook import (
    Actor,
    CapExceeded,
    ChargeReceipt,
    FrozenClock,
    HoldNotFound,
    HoldStatus,
    IdempotencyConflict,
    InsufficientCredits,
    TeamNotFound,
    load_catalog,
)
from creditbook.domain.book import TeamBook
from creditbook.domain.errors import CreditbookError
from creditbook.domain.ledger import EntryKind
from creditbook.service.fake_uow import FakeStore, FakeUnitOfWork
from creditbook.service.kernel import Kernel
from creditbook.service.requests import ChargeRequest, HoldRequest, ReleaseRequest
from creditbook.service.spending import Spending
from creditbook.service.teams import Teams

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ALICE = Actor(member_id="mem_alice")
EMAIL = 5  # email_finder's cost in the default catalog
PHONE = 20


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def kernel(store: FakeStore) -> Kernel[FakeUnitOfWork]:
    return Kernel(store.uow, load_catalog(), FrozenClock(NOW))


@pytest.fixture
def spending(kernel: Kernel[FakeUnitOfWork]) -> Spending:
    return Spending(kernel)


def _team(kernel: Kernel[FakeUnitOfWork], spending: Spending, credits: int) -> str:
    team = Teams(kernel).create_team("Acme").id
    spending.grant(team, credits, category="purchased", source="purchase")
    return team


def _snapshot(store: FakeStore) -> tuple[object, ...]:
    return (
        dict(store.grants),
        dict(store.holds),
        list(store.entries),
        dict(store.receipts),
        dict(store.due_at),
        store.commits,
    )


def test_a_charge_takes_its_cost_from_the_team_and_writes_one_balanced_entry(
    kernel: Kernel[FakeUnitOfWork], spending: Spending, store: FakeStore
) -> None:
    team = _team(kernel, spending, 100)
    receipt = spending.charge(team, "email_finder", outcome="deliverable", actor=ALICE)
    assert receipt.credits == EMAIL
    assert spending.balance(team).available == 100 - EMAIL
    charge = store.entries[-1]
    assert charge.kind is EntryKind.CHARGE and charge.id == receipt.charge_id
    assert charge.is_balanced() and charge.actor == ALICE


def test_a_hold_reserves_credits_and_its_capture_charges_only_what_the_work_cost(
    kernel: Kernel[FakeUnitOfWork], spending: Spending, store: FakeStore
) -> None:
    team = _team(kernel, spending, 100)
    hold = spending.hold(team, "phone_finder", quantity=2, ttl_seconds=600)
    assert hold.credits == 2 * PHONE
    assert spending.balance(team).available == 100 - 2 * PHONE
    assert store.due_at[team] == NOW + timedelta(seconds=600)  # the TTL is the next due date
    charged = spending.capture(team, hold.hold_id, outcome="found", quantity=1)
    assert (charged.credits, charged.returned) == (PHONE, PHONE)
    assert spending.balance(team).available == 100 - PHONE
    assert spending.get_hold(team, hold.hold_id).status is HoldStatus.CAPTURED


def test_a_released_hold_gives_every_credit_back(
    kernel: Kernel[FakeUnitOfWork], spending: Spending
) -> None:
    team = _team(kernel, spending, 100)
    hold = spending.hold(team, "phone_finder", quantity=3)
    released = spending.release(team, hold.hold_id)
    assert released.released == 3 * PHONE
    assert spending.balance(team).available == 100
    assert spending.get_hold(team, hold.hold_id).status is HoldStatus.RELEASED


def test_a_charge_the_team_cannot_pay_is_refused_and_writes_nothing(
    kernel: Kernel[FakeUnitOfWork], spending: Spending, store: FakeStore
) -> None:
    team = _team(kernel, spending, EMAIL - 1)
    refused: list[tuple[str, str, str]] = []
    kernel.refusal_hooks.append(lambda t, op, exc: refused.append((t, op, exc.code)))
    before = _snapshot(store)
    with pytest.raises(InsufficientCredits):
        spending.charge(team, "email_finder", outcome="deliverable", idempotency_key="k1")
    assert _snapshot(store) == before
    assert refused == [(team, "charge", InsufficientCredits.code)]


def test_a_retry_with_the_same_key_answers_the_first_receipt_and_charges_once(
    kernel: Kernel[FakeUnitOfWork], spending: Spending, store: FakeStore
) -> None:
    team = _team(kernel, spending, 100)
    first = spending.charge(team, "email_finder", outcome="deliverable", idempotency_key="k1")
    entries = len(store.entries)
    again = spending.charge(team, "email_finder", outcome="deliverable", idempotency_key="k1")
    assert again == first
    assert len(store.entries) == entries
    assert spending.balance(team).available == 100 - EMAIL


def test_the_same_key_with_another_request_is_a_conflict_that_writes_nothing(
    kernel: Kernel[FakeUnitOfWork], spending: Spending, store: FakeStore
) -> None:
    team = _team(kernel, spending, 100)
    spending.charge(team, "email_finder", outcome="deliverable", idempotency_key="k1")
    before = _snapshot(store)
    with pytest.raises(IdempotencyConflict):
        spending.charge(team, "email_finder", outcome="risky", idempotency_key="k1")
    assert _snapshot(store) == before


def test_a_spend_guard_that_refuses_leaves_no_trace_of_the_charge(
    kernel: Kernel[FakeUnitOfWork], spending: Spending, store: FakeStore
) -> None:
    team = _team(kernel, spending, 100)

    def at_most_one_charge(uow: FakeUnitOfWork, book: TeamBook) -> None:
        charges = [e for e in book.entries if e.kind is EntryKind.CHARGE]
        if charges and uow.list_entries(book.team_id, limit=10, kind="charge"):
            raise CapExceeded("alice@acme.test", EMAIL, EMAIL, EMAIL)

    kernel.spend_guards.append(at_most_one_charge)
    spending.charge(team, "email_finder", outcome="deliverable")
    before = _snapshot(store)
    with pytest.raises(CapExceeded):
        spending.charge(team, "email_finder", outcome="deliverable")
    assert _snapshot(store) == before
    assert spending.balance(team).available == 100 - EMAIL


def test_a_hold_of_another_member_is_not_found_for_a_confined_caller(
    kernel: Kernel[FakeUnitOfWork], spending: Spending, store: FakeStore
) -> None:
    team = _team(kernel, spending, 100)
    hold = spending.hold(team, "phone_finder", actor=ALICE)
    before = _snapshot(store)
    with pytest.raises(HoldNotFound):
        spending.release(team, hold.hold_id, placed_by="mem_bob")
    assert _snapshot(store) == before


def test_a_batch_runs_many_commands_in_one_transaction_with_one_answer_each(
    kernel: Kernel[FakeUnitOfWork], spending: Spending, store: FakeStore
) -> None:
    rich = _team(kernel, spending, 100)
    poor = _team(kernel, spending, EMAIL)
    held = spending.hold(rich, "phone_finder")
    commits = store.commits
    requests = [
        ChargeRequest(rich, "email_finder", outcome="deliverable", idempotency_key="a"),
        ChargeRequest(poor, "email_finder", outcome="deliverable"),
        ChargeRequest(poor, "email_finder", outcome="deliverable"),  # nothing left: refused
        ChargeRequest(rich, "email_finder", outcome="deliverable", idempotency_key="a"),
        HoldRequest(rich, "phone_finder", quantity=2),
        ReleaseRequest(rich, held.hold_id),
        ChargeRequest("team_unknown", "email_finder"),
    ]
    outcomes = kernel.run_batch([r.command() for r in requests])
    assert store.commits == commits + 1  # one transaction for all of them
    errors = [type(o.error) if o.error else None for o in outcomes]
    assert errors == [None, None, InsufficientCredits, None, None, None, TeamNotFound]
    first, replay = outcomes[0].value(ChargeReceipt), outcomes[3].value(ChargeReceipt)
    assert replay == first  # the same key twice in one batch: the first receipt
    assert spending.balance(poor).available == 0
    assert spending.balance(rich).available == 100 - EMAIL - 2 * PHONE
    assert store.receipts[(rich, "a")][0] == requests[0].command().digest


def test_a_batch_whose_guard_refuses_a_team_runs_that_teams_commands_alone(
    kernel: Kernel[FakeUnitOfWork], spending: Spending, store: FakeStore
) -> None:
    team = _team(kernel, spending, 100)
    other = _team(kernel, spending, 100)

    def no_two_charges(uow: FakeUnitOfWork, book: TeamBook) -> None:
        if sum(e.kind is EntryKind.CHARGE for e in book.entries) > 1:
            raise CapExceeded("alice@acme.test", EMAIL, EMAIL, EMAIL)

    kernel.spend_guards.append(no_two_charges)
    requests = [
        ChargeRequest(team, "email_finder", outcome="deliverable"),
        ChargeRequest(team, "email_finder", outcome="deliverable"),
        ChargeRequest(other, "email_finder", outcome="deliverable"),
    ]
    outcomes = kernel.run_batch([r.command() for r in requests])
    assert [o.error for o in outcomes] == [None, None, None]  # alone, each fits
    assert spending.balance(team).available == 100 - 2 * EMAIL
    assert spending.balance(other).available == 100 - EMAIL


def test_charge_many_answers_each_item_and_runs_the_hooks_once_per_team(
    kernel: Kernel[FakeUnitOfWork], spending: Spending
) -> None:
    team = _team(kernel, spending, 2 * EMAIL)
    committed: list[str] = []
    refused: list[str] = []
    kernel.after_commit_hooks.append(committed.append)
    kernel.refusal_hooks.append(lambda t, op, exc: refused.append(exc.code))
    items = [ChargeRequest(team, "email_finder", outcome="deliverable") for _ in range(3)]
    results = spending.charge_many(None, items)
    assert [isinstance(r, CreditbookError) for r in results] == [False, False, True]
    assert committed == [team]
    assert refused == [InsufficientCredits.code]
