"""``Creditbook.charge_async``: the awaited charge the HTTP API uses, on both databases.

With group commit on, the task awaits its batch's answer; without it, the
charge runs on a worker thread. Either way it is the same charge: same
receipt, same idempotency, same refusals, and a task cancelled while its
command is still queued leaves no trace.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest

import creditbook
from creditbook import Actor, ChargeReceipt, IdempotencyConflict, InsufficientCredits
from creditbook.service.group_commit import GroupCommitter, _Answers, _Waiting

FEATURE, OUTCOME = "email_finder", "deliverable"  # 5 credits


def _team(book: creditbook.Creditbook, credits: int) -> str:
    team = book.create_team("Async team").id
    book.grant(team, credits, category="purchased", source="purchase")
    return team


def _committer(book: creditbook.Creditbook) -> GroupCommitter:
    group = book.group_commit
    assert group is not None
    return group


@pytest.mark.parametrize("group_commit", [True, False], ids=["grouped", "alone"])
def test_charge_async_answers_like_charge(book: creditbook.Creditbook, group_commit: bool) -> None:
    if group_commit:
        book.enable_group_commit()
    try:
        team = _team(book, 12)
        actor = Actor(member_id="mem_async")

        async def scenario() -> tuple[ChargeReceipt, ChargeReceipt]:
            first = await book.charge_async(
                team, FEATURE, outcome=OUTCOME, actor=actor, idempotency_key="k1"
            )
            again = await book.charge_async(
                team, FEATURE, outcome=OUTCOME, actor=actor, idempotency_key="k1"
            )
            with pytest.raises(IdempotencyConflict):
                await book.charge_async(team, FEATURE, quantity=2, idempotency_key="k1")
            await book.charge_async(team, FEATURE, outcome=OUTCOME)
            with pytest.raises(InsufficientCredits):
                await book.charge_async(team, FEATURE, outcome=OUTCOME)
            return first, again

        first, again = asyncio.run(scenario())
    finally:
        book.disable_group_commit()
    assert again == first and first.credits == 5
    assert book.balance(team).available == 2
    entries = [e for e in book.ledger(team).entries if e.kind == "charge"]
    assert len(entries) == 2 and entries[-1].actor.member_id == "mem_async"
    assert book.audit().clean


def test_a_task_cancelled_while_its_charge_is_queued_charges_nothing(
    grouped: creditbook.Creditbook,
) -> None:
    team = _team(grouped, 100)
    group = _committer(grouped)

    async def scenario() -> ChargeReceipt:
        with group.paused():
            doomed = asyncio.ensure_future(grouped.charge_async(team, FEATURE, outcome=OUTCOME))
            kept = asyncio.ensure_future(grouped.charge_async(team, FEATURE, outcome=OUTCOME))
            while group.queued() < 2:
                await asyncio.sleep(0.001)
            doomed.cancel()
            await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await doomed
        return await kept

    kept = asyncio.run(scenario())
    assert kept.credits == 5
    assert grouped.balance(team).available == 95  # only the kept charge
    assert grouped.audit().clean


def test_many_tasks_share_batches(grouped: creditbook.Creditbook) -> None:
    team = _team(grouped, 1_000)

    async def scenario() -> list[ChargeReceipt]:
        return await asyncio.gather(
            *(
                grouped.charge_async(team, FEATURE, outcome=OUTCOME, idempotency_key=f"t{i}")
                for i in range(40)
            )
        )

    receipts = asyncio.run(scenario())
    assert len({r.charge_id for r in receipts}) == 40
    group = grouped.group_commit
    assert group is not None and group.stats.largest > 1
    assert grouped.balance(team).available == 1_000 - 40 * 5
    assert grouped.audit().clean


@pytest.mark.parametrize("group_commit", [True, False], ids=["grouped", "alone"])
def test_hold_capture_and_release_async_move_credits_like_their_sync_twins(
    book: creditbook.Creditbook, group_commit: bool
) -> None:
    if group_commit:
        book.enable_group_commit()
    try:
        team = _team(book, 100)

        async def scenario() -> tuple[int, int, str]:
            held = await book.hold_async(team, "phone_finder", idempotency_key="h1")
            again = await book.hold_async(team, "phone_finder", idempotency_key="h1")
            assert again == held
            captured = await book.capture_async(team, held.hold_id, outcome="found")
            other = await book.hold_async(team, "email_finder")
            released = await book.release_async(team, other.hold_id)
            return held.credits, captured.credits, released.status

        held_credits, captured_credits, released_status = asyncio.run(scenario())
    finally:
        book.disable_group_commit()
    assert (held_credits, captured_credits, released_status) == (20, 20, "released")
    balance = book.balance(team)
    assert (balance.available, balance.reserved) == (80, 0)
    assert book.audit().clean


def test_a_batch_wakes_each_event_loop_once_and_answers_threads_in_it_too(
    grouped: creditbook.Creditbook,
) -> None:
    # Tasks await their answer on their own loop: the committer hands a batch's
    # answers to that loop in ONE call_soon_threadsafe, not one per task. A thread's
    # charge in the same batch is answered on its own future.
    team = _team(grouped, 1_000)
    group = _committer(grouped)
    wakeups: list[int] = []

    async def scenario() -> tuple[list[ChargeReceipt | BaseException], ChargeReceipt]:
        loop = asyncio.get_running_loop()
        original = loop.call_soon_threadsafe

        def counted(callback: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is group._thread:
                wakeups.append(len(args[0]) if args and isinstance(args[0], list) else 1)
            return original(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        with ThreadPoolExecutor(1) as pool:
            with group.paused():
                tasks = [
                    asyncio.ensure_future(
                        grouped.charge_async(team, FEATURE, outcome=OUTCOME, idempotency_key=k)
                    )
                    for k in ("a", "b", "c", "d", "e")
                ]
                tasks.append(
                    asyncio.ensure_future(grouped.charge_async(team, "phone_finder", quantity=99))
                )
                from_thread = pool.submit(grouped.charge, team, FEATURE, outcome=OUTCOME)
                while group.queued() < 7:
                    await asyncio.sleep(0.001)
            answers = await asyncio.gather(*tasks, return_exceptions=True)
            return answers, from_thread.result(timeout=30)

    answers, threaded = asyncio.run(scenario())
    assert wakeups == [6]  # one batch, one wake-up carrying its six task answers
    receipts = answers[:5]
    assert all(isinstance(r, ChargeReceipt) and r.credits == 5 for r in receipts)
    assert isinstance(answers[5], InsufficientCredits)  # the refusal travels the same way
    assert threaded.credits == 5
    assert group.stats.largest == 7
    assert grouped.balance(team).available == 1_000 - 6 * 5
    assert grouped.audit().clean


def test_answers_for_a_closed_event_loop_are_dropped_without_error() -> None:
    loop = asyncio.new_event_loop()
    future = loop.create_future()
    waiting = _Waiting(cast(Any, None), afuture=future)
    loop.close()
    answers = _Answers()
    answers.answer(waiting, "outcome", error=False)
    answers.deliver()  # call_soon_threadsafe raises on a closed loop: nothing to answer
    assert not future.done()
