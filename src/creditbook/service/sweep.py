"""``Creditbook.tick``: bring every team whose ``due_at`` has passed up to date, in batches.

A per-team catch-up costs a dozen round trips; a sweep over 100,000 teams at
a month boundary cannot afford that. The sweep does the same work as
``Kernel.open_book`` + ``finish`` for a batch of teams at once, in one
transaction per batch:

1. lock up to ``batch_size`` due teams, in id order (``FOR UPDATE SKIP
   LOCKED`` on PostgreSQL, so concurrent sweepers take different teams and a
   team busy in a request is left to that request; SQLite's ``BEGIN
   IMMEDIATE`` already serializes writers);
2. load their live grants and due holds with one query each, and let the
   catch-up steps that speak the batch protocol prefetch their own rows;
3. per team, in memory: release expired holds, write off expired grants,
   run every catch-up step (the plans step issues the crossed periods);
4. write every book with one statement per kind of row, recompute each
   team's ``due_at`` with two grouped queries and the due steps, commit.

Each team is still brought up to date exactly as a request would do it
(the same steps, under its lock), so a request or another sweeper crossing
the same boundary at the same time serializes on the team's row and finds
nothing left to do. Teams skipped because they were locked are swept one by
one at the end. The trade-off: one transaction spans a batch of teams,
which on a sharded PostgreSQL (Citus) becomes a multi-shard transaction;
``batch_size=1`` restores one team per transaction.

A sweeper works one batch after the other. (Writing each batch on a second
thread while the next one is computed is slower: the two threads fight over
the GIL, and the sweep took a third longer than doing one thing at a time;
decision 0002.)

``sweep_parallel`` (``tick(processes=N)``) runs N such sweepers: one on a
thread of the calling process and N-1 in spawned processes, each with its own
engine; ``SKIP LOCKED`` gives them disjoint teams, the calling process counts
their batches and catches up the teams left behind once all have finished.
One sweeper is capped by its own Python and by the time it waits for the
server; one per core keeps both busy (see ``benchmarks/README.md``).
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol, cast, runtime_checkable

from sqlalchemy import (
    JSON,
    String,
    Table,
    and_,
    any_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from creditbook.adapters.db.repository import (
    ENTRY_COLUMNS,
    POSTING_COLUMNS,
    SqlUnitOfWork,
    entry_tuple,
    grant_from_row,
    hold_from_row,
    json_rows,
    pg_live_grants,
    posting_tuples,
)
from creditbook.adapters.db.tables import grants, holds, ledger_entries, ledger_postings, teams
from creditbook.domain.book import TeamBook
from creditbook.domain.errors import CreditbookError
from creditbook.domain.grants import Grant
from creditbook.domain.holds import Hold, HoldStatus
from creditbook.service.kernel import Kernel

__all__ = [
    "DEFAULT_BATCH",
    "BatchCatchUp",
    "BatchDue",
    "SweepFailed",
    "bulk_update",
    "count_due",
    "insert_rows",
    "sweep",
    "sweep_batches",
    "sweep_left",
    "sweep_parallel",
]

DEFAULT_BATCH = 500


@runtime_checkable
class BatchCatchUp(Protocol):
    """A catch-up step that can load and write a batch of teams' rows at once."""

    def prefetch(self, uow: SqlUnitOfWork, team_ids: Sequence[str]) -> None: ...

    def flush(self, uow: SqlUnitOfWork, now: datetime) -> None: ...

    def forget(self, uow: SqlUnitOfWork) -> None: ...


@runtime_checkable
class BatchDue(Protocol):
    """A due step that answers for a batch of teams at once."""

    def due_batch(
        self, uow: SqlUnitOfWork, team_ids: Sequence[str], now: datetime
    ) -> dict[str, datetime | None]: ...


def count_due(kernel: Kernel[SqlUnitOfWork], now: datetime | None = None) -> int:
    """How many teams have something due at ``now`` (default: the clock's now)."""
    at = now or kernel.clock.now()
    with kernel.uow() as uow:
        found = uow.conn.execute(
            select(func.count()).select_from(teams).where(teams.c.due_at <= at)
        ).scalar()
    return int(found or 0)


def sweep(
    kernel: Kernel[SqlUnitOfWork],
    *,
    batch_size: int = DEFAULT_BATCH,
    on_team: Callable[[str], None] | None = None,
) -> int:
    """Bring every team due at the clock's now up to date; returns how many were."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = kernel.clock.now()
    done = 0

    def finished(team_ids: list[str]) -> None:
        nonlocal done
        done += len(team_ids)
        if on_team is not None:
            for team_id in team_ids:
                on_team(team_id)

    sweep_batches(kernel, now, batch_size, finished)
    return done + sweep_left(kernel, now, on_team)


def sweep_batches(
    kernel: Kernel[SqlUnitOfWork],
    now: datetime,
    batch_size: int,
    finished: Callable[[list[str]], None],
) -> None:
    """Steps 1 to 4 over every due team this sweeper can lock; ``finished`` gets each batch.

    Teams locked by another transaction are skipped, not waited for: see ``sweep_left``.
    """
    with _few_collections():
        _sweep_from(kernel, now, batch_size, finished)


@contextmanager
def _few_collections() -> Iterator[None]:
    """Keep Python's cyclic garbage collector out of the way while a sweep runs.

    A batch keeps a few hundred books alive until it is written, so they
    survive the young collections and, every few batches, trigger a full one
    that walks every object of the process (the catalog, SQLAlchemy's
    metadata, ...). Freezing what exists before the sweep takes those out of
    every collection, and a higher first threshold makes young collections
    rarer; the books themselves hold no cycles and are freed by reference
    counting. Collections took a sixth to a third of a sweep's Python time before.
    Both settings are put back afterwards.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], 50_000), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _sweep_from(
    kernel: Kernel[SqlUnitOfWork],
    now: datetime,
    batch_size: int,
    finished: Callable[[list[str]], None],
) -> None:
    after = ""
    while True:
        with kernel.uow() as uow:
            team_ids = _lock_due(uow, now, after, batch_size)
            if not team_ids:
                break
            books = _compute_batch(kernel, uow, team_ids, now)
            _write_batch(kernel, uow, team_ids, books, now)
            uow.commit()
        after = team_ids[-1]
        finished(team_ids)


def sweep_left(
    kernel: Kernel[SqlUnitOfWork], now: datetime, on_team: Callable[[str], None] | None = None
) -> int:
    """Catch up, one by one, the teams still due once every sweeper has finished."""
    # Teams another transaction held while we passed them; waiting on their
    # lock one by one is correct and they are few.
    with kernel.uow() as uow:
        left = uow.list_team_ids(due_before=now)
    for team_id in left:
        kernel.catch_up(team_id)
        if on_team is not None:
            on_team(team_id)
    return len(left)


class SweepFailed(CreditbookError):
    """A sweeping process stopped with an error (or died); its batch in hand was rolled back."""

    code = "sweep_failed"
    status = 500
    title = "Sweep failed"


def sweep_parallel(
    kernel: Kernel[SqlUnitOfWork],
    *,
    processes: int,
    batch_size: int = DEFAULT_BATCH,
    on_team: Callable[[str], None] | None = None,
    database_url: str | None = None,
    worker_main: Callable[..., None] | None = None,
) -> int:
    """``sweep`` with ``processes`` sweepers at once (PostgreSQL: ``database_url``).

    Sweeper 0 is a thread of this process, using ``kernel``; each other one is a
    process (``spawn``) running ``worker_main`` (``bootstrap.sweep_worker``), which
    opens its own engine on ``database_url`` with ``creditbook.open(url,
    upgrade=False)`` and the book's catalog and instant, and sweeps batches
    (``sweep_batches``); ``SKIP LOCKED`` makes them take disjoint teams. This
    process counts what they report and calls ``on_team``; once all are done it
    catches up, one by one, the teams a request held while they passed. The
    workers run ``creditbook.open``'s wiring: catch-up steps added to ``kernel``
    by hand are not in them. Without a URL or a ``worker_main``, one sweeper runs.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if processes < 1:
        raise ValueError("processes must be at least 1")
    if processes == 1 or database_url is None or worker_main is None:
        return sweep(kernel, batch_size=batch_size, on_team=on_team)
    now = kernel.clock.now()
    url = database_url
    context = multiprocessing.get_context("spawn")
    reports: Any = context.Queue()
    # Sweeper 0 is a thread of this process: it starts at once, while the
    # spawned ones are still importing (about a second each).
    here = threading.Thread(
        target=_sweep_here,
        args=(kernel, now, batch_size, on_team is not None, reports),
        name="creditbook-sweep-0",
        daemon=True,
    )
    workers = {
        index: context.Process(
            target=worker_main,
            args=(index, url, kernel.catalog, now, batch_size, on_team is not None, reports),
            name=f"creditbook-sweep-{index}",
            daemon=True,
        )
        for index in range(1, processes)
    }
    done = 0
    running = set(range(processes))
    failures: list[str] = []
    try:
        for worker in workers.values():
            worker.start()
        here.start()
        while running:
            try:
                kind, index, count, team_ids = reports.get(timeout=0.5)
            except queue.Empty:
                for index in running & workers.keys():
                    code = workers[index].exitcode
                    if code is not None and code != 0:
                        running.discard(index)
                        failures.append(f"process {index} exited with code {code}")
                continue
            if kind == "batch":
                done += count
                if on_team is not None:
                    for team_id in team_ids:
                        on_team(team_id)
            else:
                running.discard(index)
                if kind == "error":
                    failures.append(f"process {index}: {team_ids[0]}")
    finally:
        if here.ident is not None:
            here.join()
        for worker in workers.values():
            worker.join(timeout=30)
            if worker.is_alive():  # pragma: no cover - only after an error in this process
                worker.terminate()
                worker.join()
        reports.close()
    if failures:
        raise SweepFailed(
            f"{len(failures)} of {processes} sweeping processes failed ({'; '.join(failures)}); "
            f"{done} team(s) were brought up to date, the rest are still due: run tick again",
            done=done,
        )
    return done + sweep_left(kernel, now, on_team)


def _sweep_here(
    kernel: Kernel[SqlUnitOfWork], now: datetime, batch_size: int, send_ids: bool, reports: Any
) -> None:
    """Sweeper 0 of ``sweep_parallel``, in the calling process; reports like the others."""
    try:
        sweep_batches(
            kernel,
            now,
            batch_size,
            lambda ids: reports.put(("batch", 0, len(ids), ids if send_ids else [])),
        )
    except BaseException as exc:
        reports.put(("error", 0, 0, [f"{type(exc).__name__}: {exc}"]))
        return
    reports.put(("done", 0, 0, []))


def _lock_due(uow: SqlUnitOfWork, now: datetime, after: str, limit: int) -> list[str]:
    query = (
        select(teams.c.id)
        .where(teams.c.due_at <= now, teams.c.id > after)
        .order_by(teams.c.id)
        .limit(limit)
    )
    if uow.dialect == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(uow.conn.execute(query).scalars().all())


def _among(uow: SqlUnitOfWork, column: Any, team_ids: Sequence[str]) -> Any:
    """``column IN team_ids``; on PostgreSQL ``= ANY(array)``, one parameter.

    With 500 ids an expanded ``IN`` is a new statement text every batch, which
    psycopg parses again each time; the array keeps the text the same.
    """
    if uow.dialect == "postgresql":
        return column == any_(bindparam("team_ids", list(team_ids), type_=ARRAY(String)))
    return column.in_(team_ids)


def _compute_batch(
    kernel: Kernel[SqlUnitOfWork], uow: SqlUnitOfWork, team_ids: list[str], now: datetime
) -> list[TeamBook]:
    """Steps 2 and 3: read the batch and bring every book up to date in memory."""
    conn = uow.conn
    live: dict[str, list[Grant]]
    if uow.dialect == "postgresql":
        live = pg_live_grants(conn.connection.driver_connection, team_ids)
    else:
        live = defaultdict(list)
        for row in conn.execute(
            select(grants).where(grants.c.team_id.in_(team_ids), grants.c.remaining > 0)
        ).all():
            live[row.team_id].append(grant_from_row(row))
    due_holds: dict[str, list[Hold]] = defaultdict(list)
    for row in conn.execute(
        select(holds).where(
            _among(uow, holds.c.team_id, team_ids),
            holds.c.status == HoldStatus.ACTIVE.value,
            holds.c.expires_at <= now,
        )
    ).all():
        due_holds[row.team_id].append(hold_from_row(row))
    batched = _batched(kernel)
    for step in batched:
        step.prefetch(uow, team_ids)
    try:
        books: list[TeamBook] = []
        for team_id in team_ids:
            team_book = TeamBook.load(team_id, kernel.catalog, now, live.get(team_id, ()))
            for hold in due_holds.get(team_id, ()):
                team_book.holds[hold.id] = hold
            team_book.expire_holds()
            team_book.expire_grants()
            for catch_up_step in kernel.catch_up_steps:
                catch_up_step(uow, team_book, now)
            books.append(team_book)
    except BaseException:
        for step in batched:
            step.forget(uow)
        raise
    return books


def _write_batch(
    kernel: Kernel[SqlUnitOfWork],
    uow: SqlUnitOfWork,
    team_ids: list[str],
    books: list[TeamBook],
    now: datetime,
) -> None:
    """Step 4: write the computed books and the steps' rows, recompute ``due_at``."""
    batched = _batched(kernel)
    try:
        _save_books(uow, books)
        for step in batched:
            step.flush(uow, now)
        _set_due(kernel, uow, books, now)
    finally:
        for step in batched:
            step.forget(uow)


def _batched(kernel: Kernel[SqlUnitOfWork]) -> list[BatchCatchUp]:
    return [cast(BatchCatchUp, s) for s in kernel.catch_up_steps if isinstance(s, BatchCatchUp)]


_GRANT_ROW = (
    "team_id", "id", "source", "category", "bucket", "scope", "amount", "remaining",
    "reserved", "effective_at", "expires_at", "created_at", "origin", "closed",
)  # fmt: skip


def _save_books(uow: SqlUnitOfWork, books: list[TeamBook]) -> None:
    """Write what the books changed: one statement per kind of row.

    Rows are built as plain tuples straight from the domain objects; on
    PostgreSQL they go to a binary COPY as they are.
    """
    new_grants: list[tuple[Any, ...]] = []
    changed_grants: list[dict[str, Any]] = []
    changed_holds: list[dict[str, Any]] = []
    entries: list[tuple[Any, ...]] = []
    postings: list[tuple[Any, ...]] = []
    for team_book in books:
        _require_utc(team_book.now)  # every row below is stamped with it or a grant's dates
        added, changed, holds_added, holds_changed, written = team_book.pending()
        if holds_added:  # pragma: no cover - catch-up steps release holds, never make them
            raise AssertionError("a catch-up step created a hold")
        for g in added:
            _require_utc(g.effective_at, g.expires_at)
            scope = sorted(g.scope) if g.scope is not None else None
            new_grants.append(
                (g.team_id, g.id, g.source.value, g.category.value, g.bucket, scope, g.amount,
                 g.remaining, g.reserved, g.effective_at, g.expires_at, g.created_at, g.origin,
                 g.closed)
            )  # fmt: skip
        changed_grants += [
            {
                "team_id": g.team_id,
                "id": g.id,
                "remaining": g.remaining,
                "reserved": g.reserved,
                "closed": g.closed,
            }
            for g in changed
        ]
        changed_holds += [
            {
                "team_id": h.team_id,
                "id": h.id,
                "status": h.status.value,
                "captured": h.captured,
                "resolved_at": h.resolved_at,
            }
            for h in holds_changed
        ]
        entries += [entry_tuple(e, _same, _same) for e in written]
        postings += posting_tuples(written)
        team_book.clear_pending()
    insert_rows(uow, grants, _GRANT_ROW, new_grants)
    bulk_update(uow, grants, ("team_id", "id"), changed_grants)
    bulk_update(uow, holds, ("team_id", "id"), changed_holds)
    # Every posting of an entry goes in the same statement as its siblings: the
    # statement-level balance trigger (migration 0007) checks them together.
    insert_rows(uow, ledger_entries, ENTRY_COLUMNS, entries)
    insert_rows(uow, ledger_postings, POSTING_COLUMNS, postings)


def _same(value: Any) -> Any:
    return value


def _require_utc(*instants: datetime | None) -> None:
    for value in instants:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} refused: creditbook stores UTC instants")


def _set_due(
    kernel: Kernel[SqlUnitOfWork], uow: SqlUnitOfWork, books: list[TeamBook], now: datetime
) -> None:
    """Each team's next ``due_at``: its earliest hold or grant expiry, or a step's date.

    A book holds every grant of its team that still has credits (that is what
    ``_compute_batch`` loaded, plus what it issued), so grant expiries come
    from memory; active holds not yet past their time to live were not
    loaded, so their earliest expiry is one grouped query.
    """
    team_ids = [b.team_id for b in books]
    due: dict[str, datetime | None] = {}
    for team_book in books:
        expiries = [
            g.expires_at
            for g in team_book.grants.values()
            if g.expires_at is not None and g.remaining > 0 and not g.closed
        ]
        due[team_book.team_id] = min(expiries) if expiries else None
    hold_due = uow.conn.execute(
        select(holds.c.team_id, func.min(holds.c.expires_at))
        .where(_among(uow, holds.c.team_id, team_ids), holds.c.status == HoldStatus.ACTIVE.value)
        .group_by(holds.c.team_id)
    ).all()
    for team_id, when in hold_due:
        due[team_id] = _earliest(due[team_id], _as_datetime(when))
    for step in kernel.due_steps:
        if isinstance(step, BatchDue):
            extra = step.due_batch(uow, team_ids, now)
        else:
            extra = {t: step(uow, t, now) for t in team_ids}
        for team_id, when in extra.items():
            due[team_id] = _earliest(due[team_id], when)
    bulk_update(uow, teams, ("id",), [{"id": t, "due_at": when} for t, when in due.items()])


# ---- set-based writes ----------------------------------------------------------------
#
# psycopg's executemany sends one statement per row (pipelined); at tens of
# thousands of rows a batch, one statement reading the rows from a single JSON
# parameter (``json_to_recordset``) is several times faster, and cheaper to
# encode than column arrays. Inserts go further: a binary COPY, whose rows
# psycopg's C code formats, costs a fraction of the Python time of the JSON
# encoding (statement triggers still fire once, over the copied rows). SQLite,
# in-process, keeps executemany.


def insert_rows(
    uow: SqlUnitOfWork, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert tuples of ``columns`` values: COPY on PostgreSQL, executemany elsewhere.

    JSON columns hold Python values (psycopg's json dumper or SQLAlchemy
    encodes them).
    """
    if not rows:
        return
    if uow.dialect != "postgresql":
        uow.conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    names = ", ".join(f'"{n}"' for n in columns)
    raw: Any = uow.conn.connection.driver_connection
    with (
        raw.cursor() as cursor,
        cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN (FORMAT BINARY)') as copy,
    ):
        copy.set_types(_copy_types(table, tuple(columns)))
        for row in rows:
            copy.write_row(row)


@functools.cache
def _copy_types(table: Table, columns: tuple[str, ...]) -> list[str]:
    # Binary COPY: psycopg formats ints and instants as bytes, about a fifth of
    # the Python time of the text format, and the server parses nothing. Each
    # value must be sent as its column's exact type (int4 is not int8); a
    # varchar column takes text's binary form and still checks its length.
    return [_pg_type(table, name) for name in columns]


def bulk_update(
    uow: SqlUnitOfWork, table: Table, keys: Sequence[str], rows: Sequence[dict[str, Any]]
) -> None:
    """Update the rows matched by ``keys`` with the other columns of each dict, at once."""
    if not rows:
        return
    names = list(rows[0])
    values = [n for n in names if n not in keys]
    if uow.dialect != "postgresql":
        statement = (
            update(table)
            .where(and_(*(table.c[k] == bindparam(f"b_{k}") for k in keys)))
            .values({n: bindparam(f"b_{n}") for n in values})
        )
        uow.conn.execute(statement, [{f"b_{k}": v for k, v in r.items()} for r in rows])
        return
    sql = (
        f'UPDATE "{table.name}" AS t SET '
        + ", ".join(f'"{n}" = v."{n}"' for n in values)
        + f" FROM json_to_recordset(CAST(%s AS json)) AS v({_record(table, names)}) WHERE "
        + " AND ".join(f't."{k}" = v."{k}"' for k in keys)
    )
    uow.execute_unprepared(sql, [json_rows(rows)])


def _record(table: Table, names: Sequence[str]) -> str:
    return ", ".join(f'"{n}" {_pg_type(table, n)}' for n in names)


def _pg_type(table: Table, name: str) -> str:
    kind = table.c[name].type
    if isinstance(kind, JSON):
        return "json"
    return _PG_TYPES.get(type(kind).__name__, "text")


_PG_TYPES = {
    "BigInteger": "bigint",
    "Integer": "integer",
    "Boolean": "boolean",
    "UTCDateTime": "timestamptz",
    "String": "text",
    "Text": "text",
}


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _as_datetime(value: Any) -> datetime | None:
    # Aggregates over SQLite text columns may come back as text.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
