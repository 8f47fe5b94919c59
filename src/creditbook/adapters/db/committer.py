"""What the group committer keeps between batches, on SQLAlchemy and psycopg.

``HeldConnection`` gives the committer thread its units of work on one
connection kept across batches; ``PgLoopBatch`` carries an event loop's
batches on psycopg's ``AsyncConnection`` (``loop_batch.py``). They implement
the ``HeldUnitsOfWork`` and ``LoopBatchIO`` ports of ``service/ports.py``;
``Creditbook.enable_group_commit`` hands them to the ``GroupCommitter``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from creditbook.adapters.db import loop_batch
from creditbook.adapters.db.loop_batch import PrefetchedUnitOfWork
from creditbook.adapters.db.repository import BatchReads, SqlUnitOfWork
from creditbook.domain.book import TeamBook


class HeldConnection:
    """Units of work on one connection, replaced at the next batch when it failed.

    On PostgreSQL no checkout and pre-ping per batch; on SQLite (no pool) no new
    connection, PRAGMAs and schema load per batch.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def __call__(self) -> SqlUnitOfWork:
        engine = self.engine
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            if conn is not None:
                conn.close()
            conn = self._conn = engine.connect()
            if engine.dialect.name == "postgresql":
                # psycopg waits for the answer to the BEGIN it sends in a pipeline (a
                # round trip per batch); with the driver in autocommit, ``read_batch``
                # sends BEGIN itself in the same pipeline as the lock and the reads.
                # Statements run by the batch after it are inside that transaction,
                # and the unit of work's commit and rollback still end it. The pool
                # resets the setting when the connection goes back to it.
                conn.execution_options(isolation_level="AUTOCOMMIT")
        return SqlUnitOfWork(engine, connection=conn)

    @property
    def connection(self) -> Connection | None:
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PgLoopBatch:
    """An event loop's batches on an async connection to the engine's PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def connect(self) -> Any:
        return await loop_batch.connect(self.engine)

    def usable(self, conn: Any) -> bool:
        return not (conn.closed or conn.broken)

    def prefetched_uow(self) -> PrefetchedUnitOfWork:
        return PrefetchedUnitOfWork(self.engine)

    async def read_batch(
        self,
        conn: Any,
        uow: Any,
        team_ids: Iterable[str],
        keys: Iterable[tuple[str, str]],
        hold_keys: Iterable[tuple[str, str]],
        *,
        caps: bool,
    ) -> BatchReads:
        return await loop_batch.read_batch(conn, uow, team_ids, keys, hold_keys, caps=caps)

    async def write_batch_and_commit(
        self,
        conn: Any,
        books: Sequence[TeamBook],
        receipts: Sequence[dict[str, Any]],
        due: dict[str, datetime | None],
    ) -> None:
        await loop_batch.write_batch_and_commit(conn, books, receipts, due)

    async def end(self, conn: Any) -> None:
        await loop_batch.end(conn)

    async def close(self, conn: Any) -> None:
        await conn.close()

    def drop(self, conn: Any) -> None:
        if not conn.closed:
            conn.pgconn.finish()


def committer_io(engine: Engine | None) -> tuple[HeldConnection | None, PgLoopBatch | None]:
    """The committer's kept connection, and the event-loop transport on PostgreSQL."""
    if engine is None:
        return None, None
    loop = PgLoopBatch(engine) if engine.dialect.name == "postgresql" else None
    return HeldConnection(engine), loop
