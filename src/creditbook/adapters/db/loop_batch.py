"""The group committer's PostgreSQL round trips on an event loop (psycopg's AsyncConnection).

In ``creditbook serve`` the committer thread and the event loop share one GIL:
each time PostgreSQL answers, the thread waits for the loop to let go of it
(about 1 ms under load, see decision 0008), twice per
batch. Run on the loop itself, the batch's waits are loop events and nothing
is handed over. The statements are the thread's own (``pg_batch_reads``,
``pg_batch_writes``): only the transport differs.

``PrefetchedUnitOfWork`` is the unit of work the batch's commands and spend
guards see here: what ``read_batch`` prefetched, and no connection. Anything
that needs a query beyond those reads raises ``NeedsConnection``, and the
caller sends the batch to the committer thread instead, where the same code
runs with a connection (nothing was written: the transaction is rolled back).

A database that cannot serve raises ``DatabaseUnavailable`` here as it does
through the engine (``outage.py``): ``connect`` and ``read_batch`` with
nothing applied, ``write_batch_and_commit`` with the outcome unknown once
its pipeline, COMMIT included, may have reached the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from creditbook.adapters.db.outage import unavailable
from creditbook.adapters.db.repository import (
    BatchReads,
    SqlUnitOfWork,
    batch_wanted,
    pg_batch_reads,
    pg_batch_writes,
)
from creditbook.domain.book import TeamBook
from creditbook.service.ports import NeedsConnection

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = [
    "NeedsConnection",
    "PrefetchedUnitOfWork",
    "connect",
    "end",
    "read_batch",
    "write_batch_and_commit",
]


class PrefetchedUnitOfWork(SqlUnitOfWork):
    """A unit of work with the batch's prefetched rows and no connection."""

    @property
    def conn(self) -> Connection:
        raise NeedsConnection


async def connect(engine: Engine) -> AsyncConnection[Any]:
    """A connection to ``engine``'s database, in driver autocommit (BEGIN is ours)."""
    import psycopg

    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with _outages_raised(connecting=True):
        return await psycopg.AsyncConnection.connect(url, autocommit=True)


@contextmanager
def _outages_raised(*, connecting: bool = False, committing: bool = False) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        found = unavailable(exc, connecting=connecting, committing=committing)
        if found is None:
            raise
        raise found from exc


async def read_batch(
    conn: AsyncConnection[Any],
    uow: PrefetchedUnitOfWork,
    team_ids: Iterable[str],
    keys: Iterable[tuple[str, str]],
    hold_keys: Iterable[tuple[str, str]],
    *,
    caps: bool,
) -> BatchReads:
    """``SqlUnitOfWork.read_batch`` in one pipeline: BEGIN, the team locks, the reads."""
    ids, wanted_keys, wanted_holds = batch_wanted(team_ids, keys, hold_keys)
    reads = pg_batch_reads(ids, wanted_keys, wanted_holds, caps)
    with _outages_raised():
        async with conn.pipeline():
            await conn.execute("BEGIN")
            cursors = [conn.cursor(row_factory=factory) for _, _, factory in reads]
            for cursor, (sql, params, _) in zip(cursors, reads, strict=True):
                await cursor.execute(sql, params)
        rows = [await cursor.fetchall() for cursor in cursors]
        for cursor in cursors:
            await cursor.close()
    return uow.take_batch_reads(ids, wanted_keys, wanted_holds, caps, rows)


async def write_batch_and_commit(
    conn: AsyncConnection[Any],
    books: Sequence[TeamBook],
    receipts: Sequence[dict[str, Any]],
    due: dict[str, datetime | None],
) -> None:
    """``SqlUnitOfWork.write_batch_and_commit`` in one pipeline, COMMIT included."""
    statements = pg_batch_writes(books, receipts, due)
    with _outages_raised(committing=True):
        async with conn.pipeline(), conn.cursor() as cursor:
            for sql, rows in statements:
                if len(rows) == 1:
                    await cursor.execute(sql, rows[0])
                else:
                    await cursor.executemany(sql, rows)
            await cursor.execute("COMMIT")
    for book in books:
        book.clear_pending()


async def end(conn: AsyncConnection[Any]) -> None:
    """Roll back whatever transaction is open (after a batch that did not commit)."""
    from psycopg.pq import TransactionStatus

    if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
        await conn.execute("ROLLBACK")
