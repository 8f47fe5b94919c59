"""Group commit on the event loop (``on_loop=True``, PostgreSQL): same answers as the thread.

The loop's fast path runs the batch's reads, commands, guards and writes on an
``AsyncConnection``; whatever it cannot do (a team due for a catch-up, a guard
that needs a query, a database error) is rolled back and answered by the
committer thread. These tests check both, and that nothing is lost or doubled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest

import creditbook
from creditbook import Actor, CapExceeded, IdempotencyConflict, InsufficientCredits
from creditbook.domain.clock import FrozenClock
from creditbook.service.access import AccessService
from creditbook.service.group_commit import GroupCommitter

pytestmark = pytest.mark.postgres

FEATURE, OUTCOME = "email_finder", "deliverable"  # 5 credits


@pytest.fixture
def looped(pg_session_url: str, clock: FrozenClock) -> Iterator[creditbook.Creditbook]:
    book = creditbook.open(pg_session_url, clock=clock)
    book.enable_group_commit(on_loop=True)
    yield book
    book.disable_group_commit()
    assert book.engine is not None
    book.engine.dispose()


def _group(book: creditbook.Creditbook) -> GroupCommitter:
    assert book.group_commit is not None
    return book.group_commit


def _team(book: creditbook.Creditbook, credits: int) -> str:
    team = book.create_team("Loop team").id
    book.grant(team, credits, category="purchased", source="purchase")
    return team


def test_the_loop_answers_charges_like_the_thread_and_never_starts_it(
    looped: creditbook.Creditbook,
) -> None:
    team = _team(looped, 12)
    actor = Actor(member_id="mem_loop")

    async def scenario() -> tuple[object, object]:
        first = await looped.charge_async(
            team, FEATURE, outcome=OUTCOME, actor=actor, idempotency_key="k1"
        )
        again = await looped.charge_async(
            team, FEATURE, outcome=OUTCOME, actor=actor, idempotency_key="k1"
        )
        with pytest.raises(IdempotencyConflict):
            await looped.charge_async(team, FEATURE, quantity=2, idempotency_key="k1")
        await looped.charge_async(team, FEATURE, outcome=OUTCOME)
        with pytest.raises(InsufficientCredits):
            await looped.charge_async(team, FEATURE, outcome=OUTCOME)
        return first, again

    first, again = asyncio.run(scenario())
    assert again == first
    group = _group(looped)
    assert group._thread is None  # every batch ran on the loop
    assert group.stats.batches == 5
    assert looped.balance(team).available == 2
    charges = [e for e in looped.ledger(team).entries if e.kind == "charge"]
    assert len(charges) == 2 and charges[-1].actor.member_id == "mem_loop"
    assert looped.audit().clean


def test_concurrent_tasks_share_batches_on_the_loop_and_each_is_charged_once(
    looped: creditbook.Creditbook,
) -> None:
    team = _team(looped, 10_000)

    async def scenario() -> None:
        for round_ in range(3):
            await asyncio.gather(
                *(
                    looped.charge_async(
                        team, FEATURE, outcome=OUTCOME, idempotency_key=f"{round_}-{i}"
                    )
                    for i in range(30)
                )
            )
        # Replays of every key, all at once: nothing more is charged.
        await asyncio.gather(
            *(
                looped.charge_async(team, FEATURE, outcome=OUTCOME, idempotency_key=f"0-{i}")
                for i in range(30)
            )
        )

    asyncio.run(scenario())
    group = _group(looped)
    assert group._thread is None
    assert group.stats.commands == 120 and group.stats.largest > 1
    assert group.stats.batches < 120
    assert looped.balance(team).available == 10_000 - 90 * 5
    assert looped.audit().clean


def test_holds_are_held_captured_and_released_on_the_loop(looped: creditbook.Creditbook) -> None:
    team = _team(looped, 100)

    async def scenario() -> None:
        kept = await looped.hold_async(team, "phone_finder", ttl_seconds=600)
        dropped = await looped.hold_async(team, "phone_finder", ttl_seconds=600)
        await looped.capture_async(team, kept.hold_id, outcome="found")
        await looped.release_async(team, dropped.hold_id)

    asyncio.run(scenario())
    assert _group(looped)._thread is None
    assert looped.balance(team).available == 80  # one phone found: 20 credits
    assert looped.audit().clean


def test_a_capped_members_charges_go_to_the_thread_and_the_cap_holds(
    looped: creditbook.Creditbook,
) -> None:
    # The cap guard reads what the member spent this period: a query the loop did
    # not prefetch, so those batches are answered by the committer thread.
    AccessService(looped.kernel).install()  # the cap guard
    team = _team(looped, 1_000)
    member = looped.add_member(team, "capped@loop.example", "member", monthly_cap=10)
    actor = Actor(member_id=member.id)

    async def scenario() -> list[object]:
        answers: list[object] = []
        for _ in range(3):
            try:
                answers.append(
                    await looped.charge_async(team, FEATURE, outcome=OUTCOME, actor=actor)
                )
            except CapExceeded as exc:
                answers.append(exc)
        # An uncapped caller still batches on the loop.
        answers.append(await looped.charge_async(team, FEATURE, outcome=OUTCOME))
        return answers

    answers = asyncio.run(scenario())
    assert [type(a).__name__ for a in answers] == [
        "ChargeReceipt",
        "ChargeReceipt",
        "CapExceeded",
        "ChargeReceipt",
    ]
    assert _group(looped)._thread is not None
    assert looped.balance(team).available == 1_000 - 15
    assert looped.audit().clean


def test_a_team_due_for_a_catch_up_is_answered_by_the_thread(
    looped: creditbook.Creditbook, clock: FrozenClock
) -> None:
    team = _team(looped, 100)

    async def hold() -> str:
        return (await looped.hold_async(team, "phone_finder", ttl_seconds=60)).hold_id

    asyncio.run(hold())
    clock.advance(timedelta(minutes=5))  # the hold expired: the team's due_at passed

    async def charge() -> object:
        return await looped.charge_async(team, FEATURE, outcome=OUTCOME)

    asyncio.run(charge())
    assert _group(looped)._thread is not None
    balance = looped.balance(team)
    assert balance.available == 95 and balance.reserved == 0  # released, then charged
    assert looped.audit().clean


def test_a_lost_connection_sends_the_batch_to_the_thread_and_the_next_reconnects(
    looped: creditbook.Creditbook, end_pg_sessions: object
) -> None:
    team = _team(looped, 100)
    group = _group(looped)

    async def scenario() -> None:
        await looped.charge_async(team, FEATURE, outcome=OUTCOME, idempotency_key="a")
        committer = next(iter(group._loops.values()))
        pid = committer.conn.info.backend_pid
        async with await __import__("psycopg").AsyncConnection.connect(
            looped.engine.url.set(drivername="postgresql").render_as_string(  # type: ignore[union-attr]
                hide_password=False
            ),
            autocommit=True,
        ) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        await looped.charge_async(team, FEATURE, outcome=OUTCOME, idempotency_key="b")
        await looped.charge_async(team, FEATURE, outcome=OUTCOME, idempotency_key="c")
        assert committer.conn.info.backend_pid != pid

    asyncio.run(scenario())
    assert group._thread is not None  # "b" went to the thread
    assert looped.balance(team).available == 85
    assert looped.audit().clean


def test_disabling_group_commit_closes_the_loops_connection(
    looped: creditbook.Creditbook,
) -> None:
    team = _team(looped, 100)
    asyncio.run(looped.charge_async(team, FEATURE, outcome=OUTCOME))
    committer = next(iter(_group(looped)._loops.values()))
    assert not committer.conn.closed
    looped.disable_group_commit()
    assert committer.conn.closed


def test_the_api_batches_charges_on_its_event_loop(looped: creditbook.Creditbook) -> None:
    import warnings

    from creditbook.config import Settings
    from creditbook.entrypoints.api import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    _, _, key = AccessService(looped.kernel).create_team(
        "Loop API", time_zone="UTC", admin_email="ada@loop.example"
    )
    looped.grant(key.team_id, 12, category="purchased", source="purchase")
    auth = {"Authorization": f"Bearer {key.api_key}"}
    body = {"feature": FEATURE, "outcome": OUTCOME}
    app = create_app(looped, Settings(env="test", operator_key="o" * 32, rate_limit_requests=1000))
    with TestClient(app, raise_server_exceptions=False) as client:
        first = client.post("/v1/charges", json=body, headers=auth | {"Idempotency-Key": "x"})
        again = client.post("/v1/charges", json=body, headers=auth | {"Idempotency-Key": "x"})
        second = client.post("/v1/charges", json=body, headers=auth)
        refused = client.post("/v1/charges", json=body, headers=auth)
    assert [r.status_code for r in (first, again, second, refused)] == [201, 201, 201, 402]
    assert again.json() == first.json()
    assert refused.json()["code"] == "insufficient_credits"
    assert _group(looped)._thread is None
    assert looped.balance(key.team_id).available == 2
    assert looped.audit().clean


def test_two_servers_loops_and_a_thread_charging_the_same_teams_charge_each_call_once(
    fresh_pg_url: str,
) -> None:
    # Two books with their loops (two server processes), and sync callers on the
    # first book's committer thread, all on the same three teams at once: the
    # batches lock teams in id order, and every call is charged exactly once.
    import random
    import threading

    books = [creditbook.open(fresh_pg_url) for _ in range(2)]
    teams = [_team(books[0], 100_000) for _ in range(3)]
    for book in books:
        book.enable_group_commit(on_loop=True)
    errors: list[BaseException] = []

    def serve(index: int) -> None:
        book = books[index]
        pick = random.Random(index)

        async def caller(n: int) -> None:
            for i in range(40):
                await book.charge_async(
                    pick.choice(teams),
                    FEATURE,
                    outcome=OUTCOME,
                    idempotency_key=f"s{index}-{n}-{i}",
                )

        async def callers() -> None:
            await asyncio.gather(*(caller(n) for n in range(6)))

        try:
            asyncio.run(callers())
        except BaseException as exc:  # reported below
            errors.append(exc)

    def sync_caller() -> None:
        pick = random.Random(99)
        try:
            for i in range(60):
                books[0].charge(
                    pick.choice(teams), FEATURE, outcome=OUTCOME, idempotency_key=f"t{i}"
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(2)]
    threads.append(threading.Thread(target=sync_caller))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == []
        loop_batches = [_group(b).stats.batches for b in books]
        assert all(n > 0 for n in loop_batches)
        spent = sum(100_000 - books[0].balance(t).available for t in teams)
        assert spent == (2 * 6 * 40 + 60) * 5
        assert books[0].audit().problems == []
    finally:
        for book in books:
            book.disable_group_commit()
            assert book.engine is not None
            book.engine.dispose()
