"""A database that cannot serve raises ``DatabaseUnavailable``; a lost COMMIT answer is never
answered as a failure nor run twice.

PostgreSQL is reached through a TCP proxy (``tests/tcp_proxy.py``) that a
test cuts, restores, or makes lose the answer to a COMMIT after the server
ran it; SQLite is locked by a second connection holding ``BEGIN EXCLUSIVE``
past a short busy timeout.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import creditbook
from creditbook.adapters.db.engine import make_engine
from creditbook.domain.errors import DatabaseUnavailable
from creditbook.service.group_commit import GroupCommitter
from tcp_proxy import TcpProxy

FEATURE, OUTCOME = "email_finder", "deliverable"  # 5 credits


@pytest.fixture
def proxied(fresh_pg_url: str) -> Iterator[tuple[TcpProxy, creditbook.Creditbook]]:
    """A book on ``fresh_pg_url`` through a proxy; the test's database of its own."""
    with TcpProxy() as proxy:
        book = creditbook.open(proxy.url_for(fresh_pg_url))
        yield proxy, book
        book.disable_group_commit()
        assert book.engine is not None
        book.engine.dispose()


def _team(book: creditbook.Creditbook, credits: int) -> str:
    team = book.create_team("Outage").id
    book.grant(team, credits, category="purchased", source="purchase")
    return team


def _charges(url: str, team: str) -> int:
    """Charges in the ledger, read around the proxy."""
    direct = creditbook.open(url, upgrade=False)
    try:
        return len(direct.ledger(team, kind="charge", limit=500).entries)
    finally:
        assert direct.engine is not None
        direct.engine.dispose()


def _group(book: creditbook.Creditbook) -> GroupCommitter:
    assert book.group_commit is not None
    return book.group_commit


@pytest.mark.postgres
def test_a_charge_whose_commit_answer_was_lost_is_unknown_and_its_key_replays_it(
    proxied: tuple[TcpProxy, creditbook.Creditbook], fresh_pg_url: str
) -> None:
    proxy, book = proxied
    team = _team(book, 100)
    proxy.lose_next_commit_answer()
    with pytest.raises(DatabaseUnavailable) as raised:
        book.charge(team, FEATURE, outcome=OUTCOME, idempotency_key="lost-1")
    assert proxy.commits_lost == 1
    assert raised.value.outcome == "unknown"
    assert _charges(fresh_pg_url, team) == 1  # the server had committed it
    again = book.charge(team, FEATURE, outcome=OUTCOME, idempotency_key="lost-1")
    assert again.credits == 5
    assert _charges(fresh_pg_url, team) == 1
    assert book.balance(team).available == 95


@pytest.mark.postgres
def test_a_thread_batch_whose_commit_answer_was_lost_applies_each_charge_once(
    proxied: tuple[TcpProxy, creditbook.Creditbook], fresh_pg_url: str
) -> None:
    proxy, book = proxied
    team = _team(book, 1_000)
    book.enable_group_commit()
    book.charge(team, FEATURE, outcome=OUTCOME)  # the committer's connection is open
    answers: list[object] = []
    lock = threading.Lock()

    def charge(i: int) -> None:
        key = f"k{i}" if i % 2 else None  # keyless ones would be charged twice if run again
        try:
            answer: object = book.charge(team, FEATURE, outcome=OUTCOME, idempotency_key=key)
        except DatabaseUnavailable as exc:
            answer = exc
        with lock:
            answers.append(answer)

    group = _group(book)
    with group.paused():
        threads = [threading.Thread(target=charge, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while group.queued() < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        proxy.lose_next_commit_answer()
    for t in threads:
        t.join(30)
    assert proxy.commits_lost == 1
    assert len(answers) == 6
    assert all(isinstance(a, DatabaseUnavailable) and a.outcome == "unknown" for a in answers)
    assert _charges(fresh_pg_url, team) == 1 + 6  # each once: none ran again
    for i in range(1, 6, 2):  # the keyed ones, retried, replay their committed answers
        book.charge(team, FEATURE, outcome=OUTCOME, idempotency_key=f"k{i}")
    assert _charges(fresh_pg_url, team) == 7
    assert book.balance(team).available == 1_000 - 7 * 5
    assert book.audit(team).clean


@pytest.mark.postgres
def test_a_loop_batch_whose_commit_answer_was_lost_applies_each_charge_once(
    proxied: tuple[TcpProxy, creditbook.Creditbook], fresh_pg_url: str
) -> None:
    proxy, book = proxied
    team = _team(book, 1_000)
    book.enable_group_commit(on_loop=True)

    async def scenario() -> list[object]:
        await book.charge_async(team, FEATURE, outcome=OUTCOME)  # the loop's connection
        proxy.lose_next_commit_answer()
        calls = [
            book.charge_async(
                team, FEATURE, outcome=OUTCOME, idempotency_key=f"k{i}" if i % 2 else None
            )
            for i in range(6)
        ]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        replays = [
            await book.charge_async(team, FEATURE, outcome=OUTCOME, idempotency_key=f"k{i}")
            for i in range(1, 6, 2)
        ]
        return [*answers, *replays]

    answers = asyncio.run(scenario())
    assert proxy.commits_lost == 1
    lost = answers[:6]
    assert all(isinstance(a, DatabaseUnavailable) and a.outcome == "unknown" for a in lost)
    assert all(not isinstance(a, BaseException) for a in answers[6:])
    assert _charges(fresh_pg_url, team) == 1 + 6
    assert book.balance(team).available == 1_000 - 7 * 5
    assert book.audit(team).clean


@pytest.mark.postgres
@pytest.mark.parametrize("on_loop", [False, True], ids=["thread", "loop"])
def test_a_database_that_went_away_is_unavailable_and_served_again_once_back(
    proxied: tuple[TcpProxy, creditbook.Creditbook], fresh_pg_url: str, on_loop: bool
) -> None:
    proxy, book = proxied
    team = _team(book, 100)
    book.enable_group_commit(on_loop=on_loop)

    async def charge(key: str) -> object:
        return await book.charge_async(team, FEATURE, outcome=OUTCOME, idempotency_key=key)

    asyncio.run(charge("before"))
    proxy.cut()
    for attempt in range(3):
        with pytest.raises(DatabaseUnavailable) as raised:
            asyncio.run(charge(f"during-{attempt}"))
        assert raised.value.outcome == "not_applied"
        with pytest.raises(DatabaseUnavailable):
            book.balance(team)
    proxy.restore()
    asyncio.run(charge("after"))
    assert book.balance(team).available == 90
    assert _charges(fresh_pg_url, team) == 2


def _locked_book(path: Path, busy_timeout: float) -> creditbook.Creditbook:
    url = f"sqlite:///{path}"
    creditbook.open(url).engine.dispose()  # type: ignore[union-attr]
    return creditbook.open(engine=make_engine(url, busy_timeout=busy_timeout))


def _lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


@pytest.mark.parametrize("grouped", [False, True], ids=["alone", "group-commit"])
def test_a_sqlite_file_locked_past_the_busy_timeout_is_unavailable_and_leaks_nothing(
    tmp_path: Path, grouped: bool
) -> None:
    path = tmp_path / "locked.db"
    book = _locked_book(path, busy_timeout=0.05)
    team = _team(book, 100)
    if grouped:
        book.enable_group_commit()
    holder = _lock(path)
    for _ in range(25):  # more than the pool keeps: a connection left out would show
        with pytest.raises(DatabaseUnavailable) as raised:
            book.charge(team, FEATURE, outcome=OUTCOME)
        assert raised.value.outcome == "not_applied"
        assert "locked" in raised.value.cause
    holder.rollback()
    holder.close()
    assert book.charge(team, FEATURE, outcome=OUTCOME).credits == 5
    assert book.balance(team).available == 95
    book.disable_group_commit()
    assert book.engine is not None
    assert book.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    book.engine.dispose()
