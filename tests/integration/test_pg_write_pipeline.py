"""The batch's PostgreSQL pipeline: COMMIT travels with the writes, one sync answers all.

``SqlUnitOfWork._pg_pipeline(commit=True)`` sends the batch's writes and a
``COMMIT`` statement, then leaves the pipeline: one sync and one wait for the
answer. ``psycopg``'s ``Connection.commit()`` inside a pipeline syncs by itself,
and leaving the pipeline then syncs again: an empty round trip per batch
(decision 0008). These tests count the syncs and
check that a failed statement still commits nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg._pipeline_base import BasePipeline
from sqlalchemy import select

import creditbook
from creditbook.adapters.db.repository import TEAM_DUE_SQL, SqlUnitOfWork
from creditbook.adapters.db.tables import teams
from creditbook.service.group_commit import ChargeItem

pytestmark = pytest.mark.postgres

COST = 5  # email_finder, deliverable


@pytest.fixture
def pg_book(pg_session_url: str) -> Iterator[creditbook.Creditbook]:
    book = creditbook.open(pg_session_url)
    yield book
    assert book.engine is not None
    book.engine.dispose()


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts pipeline syncs (each one a round trip the caller waits for)."""
    count = [0]
    real = BasePipeline._enqueue_sync

    def counting(self: Any) -> None:
        count[0] += 1
        real(self)

    monkeypatch.setattr(BasePipeline, "_enqueue_sync", counting)
    return count


def test_a_batch_of_charges_syncs_three_times_begin_reads_writes_and_commit(
    pg_book: creditbook.Creditbook, syncs: list[int]
) -> None:
    team = pg_book.create_team("Pipeline team").id
    pg_book.grant(team, 1_000, category="purchased", source="purchase")
    items = [
        ChargeItem("email_finder", outcome="deliverable", idempotency_key=f"k{i}") for i in range(5)
    ]
    syncs[0] = 0

    results = pg_book.charge_many(team, items)

    assert [type(r).__name__ for r in results] == ["ChargeReceipt"] * 5
    # psycopg syncs after the BEGIN it sends in a pipeline, then the reads, then the
    # writes with their COMMIT; with ``conn.commit()`` in the pipeline it was 4.
    assert syncs[0] == 3
    # Committed: another connection sees the charges.
    other = creditbook.open(pg_book.engine.url.render_as_string(hide_password=False))  # type: ignore[union-attr]
    try:
        assert other.balance(team).available == 1_000 - 5 * COST
        assert other.audit().problems == []
    finally:
        assert other.engine is not None
        other.engine.dispose()


def test_a_failing_statement_in_the_write_pipeline_skips_the_commit_and_raises(
    pg_book: creditbook.Creditbook,
) -> None:
    assert pg_book.engine is not None
    now = pg_book.clock.now()
    row = {"id": "team_pipe", "name": "x", "time_zone": "UTC", "created_at": now, "settings": {}}
    with pg_book.engine.begin() as conn:
        conn.execute(teams.insert(), row)

    with (
        pytest.raises(psycopg.errors.InvalidDatetimeFormat),
        SqlUnitOfWork(pg_book.engine) as uow,
    ):
        uow._pg_pipeline(
            [
                (TEAM_DUE_SQL, [(now, "team_pipe")]),  # would be written...
                ("UPDATE teams SET created_at = %s WHERE id = %s", [("no date", "x")]),
            ],
            commit=True,
        )

    with pg_book.engine.connect() as conn:
        due = conn.execute(select(teams.c.due_at).where(teams.c.id == "team_pipe")).scalar()
        assert due is None  # ...but the COMMIT after the failure never ran
    # The unit of work rolled the failed transaction back: its connection is usable.
    assert pg_book.balance(pg_book.create_team("After the failure").id).available == 0


def test_the_group_committers_batch_syncs_twice_and_leaves_no_transaction_open(
    pg_book: creditbook.Creditbook, syncs: list[int]
) -> None:
    # The committer's connection is in driver autocommit: its BEGIN rides in the
    # reads' pipeline instead of costing a round trip (GroupCommitter._uow).
    team = pg_book.create_team("Committer team").id
    pg_book.grant(team, 12, category="purchased", source="purchase")
    group = pg_book.enable_group_commit()
    try:
        pg_book.charge(team, "email_finder", outcome="deliverable")  # opens its connection
        syncs[0] = 0
        pg_book.charge(team, "email_finder", outcome="deliverable", idempotency_key="second")
        assert syncs[0] == 2  # BEGIN + lock + reads; writes + COMMIT
        with pytest.raises(creditbook.InsufficientCredits):
            pg_book.charge(team, "email_finder", outcome="deliverable")
        assert group._conn is not None
        raw: Any = group._conn.connection.driver_connection
        assert raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    finally:
        pg_book.disable_group_commit()
    assert pg_book.balance(team).available == 12 - 2 * COST
    assert pg_book.audit().problems == []
