"""Several processes crossing the same period boundaries at once issue each grant exactly once.

Each process (``spawn``: a fresh interpreter, its own engine and connections)
waits on a barrier, then reads the balance of every team and runs ``tick``,
all at the same frozen instant two boundaries after the teams subscribed.
The team lock serializes them (``SELECT ... FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite) and UNIQUE(team_id, origin) backs it up: each
period's grants must exist once, each expiry once, and the audit be clean.
"""

from __future__ import annotations

import multiprocessing
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import creditbook
from creditbook.domain.clock import FrozenClock

SUBSCRIBED = datetime(2026, 1, 31, 12, tzinfo=UTC)
CROSSED = datetime(2026, 3, 31, 12, 0, 1, tzinfo=UTC)  # after the 28 Feb and 31 Mar boundaries
PROCESSES = 4
TEAMS = 6


def _worker(url: str, team_ids: list[str], barrier: Any, seed: int) -> None:
    book = creditbook.open(url, clock=FrozenClock(CROSSED), upgrade=False)
    order = list(team_ids)
    random.Random(seed).shuffle(order)
    barrier.wait(timeout=60)
    for team_id in order:
        book.balance(team_id)
    book.tick(batch_size=2)
    assert book.engine is not None
    book.engine.dispose()


def _race(url: str) -> list[str]:
    clock = FrozenClock(SUBSCRIBED)
    book = creditbook.open(url, clock=clock)
    team_ids = []
    for i in range(TEAMS):
        team = book.create_team(f"team {i}")
        book.plans.subscribe(team.id, "multichannel_expert", seats=1 + i % 3)
        team_ids.append(team.id)
    assert book.engine is not None
    book.engine.dispose()

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    workers = [
        ctx.Process(target=_worker, args=(url, team_ids, barrier, seed))
        for seed in range(PROCESSES)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    return team_ids


def _check(url: str, team_ids: list[str]) -> None:
    book = creditbook.open(url, clock=FrozenClock(CROSSED))
    for i, team_id in enumerate(team_ids):
        seats = 1 + i % 3
        grants = book.grants(team_id, include_spent=True)
        origins = Counter(g.origin for g in grants)
        assert set(origins.values()) == {1}, origins
        # Periods 0, 1 and 2 (from 31 Jan, 28 Feb, 31 Mar), two allowances each.
        starts = Counter(g.effective_at for g in grants)
        assert starts == {
            datetime(2026, 1, 31, 12, tzinfo=UTC): 2,
            datetime(2026, 2, 28, 12, tzinfo=UTC): 2,
            datetime(2026, 3, 31, 12, tzinfo=UTC): 2,
        }
        expiries = book.ledger(team_id, kind="expire").entries
        assert [e.credits for e in expiries] == [1900 * seats] * 2  # periods 0 and 1
        balance = book.balance(team_id)
        assert (balance.buckets["subscription"], balance.buckets["calling"]) == (
            1500 * seats,
            400 * seats,
        )
    report = book.audit()
    assert report.clean, report.problems
    assert book.engine is not None
    book.engine.dispose()


@pytest.mark.slow
def test_processes_crossing_a_boundary_at_once_issue_each_grant_once_on_sqlite(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    _check(url, _race(url))


@pytest.mark.slow
@pytest.mark.postgres
def test_processes_crossing_a_boundary_at_once_issue_each_grant_once_on_postgres(
    fresh_pg_url: str,
) -> None:
    _check(fresh_pg_url, _race(fresh_pg_url))
