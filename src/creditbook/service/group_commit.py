"""Group commit: many concurrent charges, holds, captures and releases in one transaction.

A durable transaction costs one WAL flush (PostgreSQL) or one fsync (SQLite,
``synchronous=FULL``), and a team's lock is held until it is done: one
transaction per charge caps one team at one flush per charge. Here commands
from many threads are queued; one committer thread takes everything queued
(up to ``max_batch``) and runs it as ONE transaction (``run_batch``):

1. lock every team of the batch with one ``SELECT ... FOR UPDATE`` in id
   order (other processes lock in the same order: no deadlock);
2. one lookup of the batch's idempotency keys, one load of the teams' live
   grants and one of the holds named by captures and releases;
3. apply the commands in arrival order to in-memory ``TeamBook``s; a command
   that raises is answered with its error and leaves no trace (the book is
   rolled back to a ``savepoint``); two commands with the same key: the
   second gets the first's receipt (or ``IdempotencyConflict``);
4. run the spend guards once per team over everything the batch applied to
   it (caps are monotone: if the whole batch fits, every prefix fits);
5. one UPDATE per kind of changed row (executemany), one multi-row INSERT of
   entries, one of postings, one of idempotency receipts, one commit.

Every caller waits for an answer given only after its batch committed: a
thread on a ``concurrent.futures.Future`` (``submit``), a task on a future of
its event loop (``submit_async``), which the committer wakes once per batch.
When a spend guard refuses for a team, the batch is rolled back and retried
without that team, whose commands then run one transaction each, in order
(exact per-command semantics where they matter). When the batch fails in the
database itself (a concurrent process stored the same idempotency key), every
command of it runs alone.

A database that cannot serve (``DatabaseUnavailable``) answers the whole
batch with that error, after one more try on a new connection when an open
one broke. When the connection is lost after the COMMIT was sent, the
commands the batch applied are answered with the outcome unknown and never
run again here (one without an idempotency key could take effect twice);
refusals and replays of earlier answers keep their answers. Log lines about
a batch name its requests (``request_ids``): the committer runs with no
request id of its own.

On PostgreSQL a batch is two round trips: BEGIN travels with the locks and
reads, COMMIT with the writes. With ``on_loop=True`` (``creditbook serve``),
tasks' commands are batched on their own event loop instead (``_LoopCommitter``,
through ``adapters/db/loop_batch.py``): the same steps on an async connection,
so no second thread waits for the GIL; what that fast path cannot finish goes
to the committer thread.

``Creditbook.enable_group_commit()`` switches it on (or the environment
variable ``CREDITBOOK_GROUP_COMMIT=1``); ``Creditbook.charge_many`` runs an
explicit batch of charges through ``run_batch`` in the caller's thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection

from creditbook.adapters.db import loop_batch
from creditbook.adapters.db.loop_batch import NeedsConnection, PrefetchedUnitOfWork
from creditbook.adapters.db.repository import SqlUnitOfWork
from creditbook.domain.book import TeamBook
from creditbook.domain.errors import DatabaseUnavailable, IdempotencyConflict, TeamNotFound
from creditbook.domain.ledger import SYSTEM, Actor
from creditbook.domain.pricing import Call
from creditbook.service.request_context import request_id_var

if TYPE_CHECKING:
    from creditbook.service.credits import Creditbook

log = logging.getLogger("creditbook.group_commit")

DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_WAIT_MS = 2.0
MAX_BATCH_ITEMS = 1000
GROUPED_OPERATIONS = frozenset({"charge", "hold", "capture", "release"})
SPENDS = frozenset({"charge", "hold"})  # what a spending cap counts


class _Receipt(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


@dataclass(slots=True)
class Command:
    """One use case waiting for its batch: what ``Creditbook.transact`` was given."""

    team_id: str
    operation: str
    request: dict[str, Any]
    idempotency_key: str | None
    digest: str
    apply: Callable[[TeamBook, SqlUnitOfWork], _Receipt]
    hold_ids: list[str] | None = None
    # The request that queued it (its log lines name it; the committer has none).
    request_id: str = field(default_factory=request_id_var.get)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A command's answer: the receipt (object and/or dict), or the error it raised.

    ``receipt`` is the object ``apply`` returned when this batch ran the command;
    ``data`` its dict form, present when it has an idempotency key (it is stored)
    or when the answer is a stored receipt. Serializing only what is stored saves
    a ``to_dict``/``from_dict`` round per keyless command.
    """

    data: dict[str, Any] | None = None
    error: BaseException | None = None
    receipt: Any = None

    def value(self, receipt_type: type[Any]) -> Any:
        """The receipt as ``receipt_type``; raises the command's error."""
        if self.error is not None:
            raise self.error
        if isinstance(self.receipt, receipt_type):
            return self.receipt
        return receipt_type.from_dict(self.data)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class ChargeItem:
    """One charge of ``Creditbook.charge_many``; ``team_id`` defaults to the call's."""

    feature: str
    quantity: int = 1
    outcome: str | None = None
    call: Call | None = None
    actor: Actor = SYSTEM
    idempotency_key: str | None = None
    team_id: str | None = None


@dataclass
class GroupStats:
    """What the committer did (read by benchmarks and tests)."""

    batches: int = 0
    commands: int = 0
    isolated: int = 0
    largest: int = 0

    @property
    def mean_batch(self) -> float:
        return self.commands / self.batches if self.batches else 0.0


class _GuardRefused(Exception):
    def __init__(self, team_id: str) -> None:
        super().__init__(team_id)
        self.team_id = team_id


# ---- one batch, one transaction ------------------------------------------------------------


def run_batch(
    book: Creditbook,
    commands: Sequence[Command],
    uow: Callable[[], SqlUnitOfWork] | None = None,
) -> list[Outcome]:
    """Run ``commands`` as one transaction (see the module docstring); one outcome each.

    ``uow`` makes the batch's unit of work (``book.uow`` by default).
    """
    outcomes: list[Outcome | None] = [None] * len(commands)
    isolated: set[str] = set()
    unavailable: DatabaseUnavailable | None = None
    reconnected = False
    while True:
        chosen = [i for i, c in enumerate(commands) if c.team_id not in isolated]
        if not chosen:
            break
        try:
            for i, outcome in _attempt(book, uow or book.uow, commands, chosen).items():
                outcomes[i] = outcome
            break
        except _GuardRefused as refused:
            isolated.add(refused.team_id)
        except DatabaseUnavailable as exc:
            if exc.connection_lost and not reconnected:
                reconnected = True  # nothing was applied; a kept connection may just be stale
                continue
            unavailable = exc  # the same for every command: none runs alone
            break
        except Exception as exc:
            # A failure of the batch as a whole: give every command its own transaction,
            # where the same failure (if it is one) is that command's answer alone, with
            # its traceback in that request's log line if it is a bug.
            log.warning(
                "batch of %d failed (%s); running its commands alone",
                len(chosen),
                _describe(exc),
                extra={"request_ids": [commands[i].request_id for i in chosen]},
            )
            isolated.update(commands[i].team_id for i in chosen)
            break
    for i, command in enumerate(commands):
        if outcomes[i] is None:
            outcomes[i] = Outcome(error=unavailable) if unavailable else _alone(book, command)
    return [o for o in outcomes if o is not None]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _uncertain(
    commands: Sequence[Command], out: dict[int, Outcome], lost: DatabaseUnavailable
) -> dict[int, Outcome]:
    """A batch whose COMMIT was sent and whose answer was lost: what it applied, and any
    replay of a key it applied, is answered ``lost`` (outcome unknown); the rest stands."""
    applied = {
        (commands[i].team_id, commands[i].idempotency_key)
        for i, o in out.items()
        if o.receipt is not None and commands[i].idempotency_key is not None
    }
    return {
        i: Outcome(error=lost)
        if o.error is None
        and (o.receipt is not None or (commands[i].team_id, commands[i].idempotency_key) in applied)
        else o
        for i, o in out.items()
    }


def _alone(book: Creditbook, c: Command) -> Outcome:
    try:
        return Outcome(
            data=book.run_transaction(
                c.team_id, c.operation, c.idempotency_key, c.digest, c.apply, hold_ids=c.hold_ids
            )
        )
    except Exception as exc:
        return Outcome(error=exc)


def _attempt(
    book: Creditbook,
    make_uow: Callable[[], SqlUnitOfWork],
    commands: Sequence[Command],
    chosen: list[int],
) -> dict[int, Outcome]:
    by_team, keys, hold_keys = _wanted(commands, chosen)
    out: dict[int, Outcome] = {}
    try:
        _attempt_in(book, make_uow, commands, chosen, by_team, keys, hold_keys, out)
    except DatabaseUnavailable as exc:
        if exc.outcome != DatabaseUnavailable.UNKNOWN:
            raise
        return _uncertain(commands, out, exc)
    return out


def _attempt_in(
    book: Creditbook,
    make_uow: Callable[[], SqlUnitOfWork],
    commands: Sequence[Command],
    chosen: list[int],
    by_team: dict[str, list[int]],
    keys: list[tuple[str, str]],
    hold_keys: list[tuple[str, str]],
    out: dict[int, Outcome],
) -> None:
    with make_uow() as uow:
        due, stored, grants, holds = uow.read_batch(
            by_team, keys, hold_keys, caps=_reads_caps(book, commands, chosen)
        )
        now = book.clock.now()
        books, late = _open_books(book, by_team, due, grants, holds, now, out)
        for team_id in sorted(late):
            # Rare (a TTL or an expiry passed): the ordinary catch-up, one team at a time.
            hold_ids = [h for i in by_team[team_id] for h in commands[i].hold_ids or ()]
            books[team_id], _ = book.open_book(
                uow, team_id, due_at=due[team_id], locked=True, hold_ids=hold_ids or None
            )
        receipts = _apply_teams(book, uow, books, by_team, commands, stored, out, now)
        moved = _moved(books, due, late)
        if late:
            uow.save_books(books.values())
            for team_id in sorted(late):
                book.finish(uow, books[team_id], ran_catch_up=True, due_at=due[team_id])
            uow.set_due_at_many(moved)
            uow.put_idempotency_many(receipts)
            uow.commit()
        else:
            uow.write_batch_and_commit(books.values(), receipts, moved)


def _reads_caps(book: Creditbook, commands: Sequence[Command], chosen: Iterable[int]) -> bool:
    """Whether the batch reads its teams' spending caps: some charge or hold names a spender.

    The cap guard counts only charges and holds made by a member or through a
    key; a batch of the system's charges (an import, a benchmark) spares the read.
    """
    if not book.guards_read_caps:
        return False
    for i in chosen:
        command = commands[i]
        actor = command.request.get("actor")
        if actor and (actor["member"] or actor["key"]) and command.operation in SPENDS:
            return True
    return False


def _wanted(
    commands: Sequence[Command], chosen: Iterable[int]
) -> tuple[dict[str, list[int]], list[tuple[str, str]], list[tuple[str, str]]]:
    """The chosen commands by team (arrival order kept), their keys and their holds."""
    by_team: dict[str, list[int]] = {}
    for i in chosen:
        by_team.setdefault(commands[i].team_id, []).append(i)
    keys = [
        (commands[i].team_id, key)
        for ids in by_team.values()
        for i in ids
        if (key := commands[i].idempotency_key) is not None
    ]
    hold_keys = [
        (commands[i].team_id, h)
        for ids in by_team.values()
        for i in ids
        for h in commands[i].hold_ids or ()
    ]
    return by_team, keys, hold_keys


def _open_books(
    book: Creditbook,
    by_team: dict[str, list[int]],
    due: dict[str, datetime | None],
    grants: dict[str, list[Any]],
    holds: dict[tuple[str, str], Any],
    now: datetime,
    out: dict[int, Outcome],
) -> tuple[dict[str, TeamBook], set[str]]:
    """Books of the batch's teams from its reads; teams due for a catch-up are ``late``.

    Unknown teams' commands are answered ``TeamNotFound`` and leave ``by_team``.
    """
    for team_id in [t for t in by_team if t not in due]:
        for i in by_team.pop(team_id):
            out[i] = Outcome(error=TeamNotFound(team_id))
    late = {t for t in by_team if (d := due[t]) is not None and d <= now}
    books: dict[str, TeamBook] = {}
    for team_id in by_team:
        if team_id not in late:
            books[team_id] = TeamBook.load(team_id, book.catalog, now, grants[team_id])
    for (team_id, hold_id), hold in holds.items():
        if team_id in books:
            books[team_id].holds[hold_id] = hold
    return books, late


def _apply_teams(
    book: Creditbook,
    uow: SqlUnitOfWork,
    books: dict[str, TeamBook],
    by_team: dict[str, list[int]],
    commands: Sequence[Command],
    stored: dict[tuple[str, str], tuple[str, str, dict[str, Any]]],
    out: dict[int, Outcome],
    now: datetime,
) -> list[dict[str, Any]]:
    """Apply each team's commands and run the spend guards; the receipts to store."""
    receipts: list[dict[str, Any]] = []
    for team_id, ids in by_team.items():
        team_book = books[team_id]
        applied = _apply_all(team_book, uow, commands, ids, stored, out, receipts, now)
        if applied and book.spend_guards:
            try:
                for guard in book.spend_guards:
                    guard(uow, team_book)
            except DatabaseUnavailable:
                raise
            except Exception:
                raise _GuardRefused(team_id) from None
    return receipts


def _moved(
    books: dict[str, TeamBook], due: dict[str, datetime | None], late: set[str]
) -> dict[str, datetime | None]:
    """Teams whose ``due_at`` moves earlier (a new hold's TTL, a new grant's expiry)."""
    moved: dict[str, datetime | None] = {}
    for team_id, team_book in books.items():
        earliest = _earliest_new(team_book)
        current = due[team_id]
        if team_id not in late and earliest is not None and (current is None or earliest < current):
            moved[team_id] = earliest
    return moved


def _apply_all(
    team_book: TeamBook,
    uow: SqlUnitOfWork,
    commands: Sequence[Command],
    ids: list[int],
    stored: dict[tuple[str, str], tuple[str, str, dict[str, Any]]],
    out: dict[int, Outcome],
    receipts: list[dict[str, Any]],
    now: datetime,
) -> int:
    """Apply one team's commands in arrival order; returns how many changed the book."""
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    applied = 0
    for i in ids:
        c = commands[i]
        key = c.idempotency_key
        if key is not None:
            known = stored.get((c.team_id, key)) or seen.get(key)
            if known is not None:
                digest, answer = known[0], known[-1]
                assert isinstance(answer, dict)
                out[i] = (
                    Outcome(data=answer)
                    if digest == c.digest
                    else Outcome(error=IdempotencyConflict(key))
                )
                continue
        mark = team_book.savepoint()
        try:
            receipt = c.apply(team_book, uow)
            data: dict[str, Any] | None = receipt.to_dict() if key is not None else None
        except DatabaseUnavailable:
            raise  # the batch's failure, not this command's answer
        except Exception as exc:
            team_book.rollback_to(mark)
            out[i] = Outcome(error=exc)
            continue
        applied += 1
        out[i] = Outcome(data=data, receipt=receipt)
        if key is not None and data is not None:
            seen[key] = (c.digest, data)
            receipts.append(
                {
                    "team_id": c.team_id,
                    "key": key,
                    "request_hash": c.digest,
                    "operation": c.operation,
                    "response": data,
                    "created_at": now,
                }
            )
    return applied


def _earliest_new(team_book: TeamBook) -> datetime | None:
    """The earliest TTL or expiry the book adds (the team's ``due_at`` may move to it)."""
    candidates = [team_book.holds[h].expires_at for h in team_book.new_holds]
    candidates += [
        g.expires_at for gid in team_book.new_grants if (g := team_book.grants[gid]).expires_at
    ]
    return min(candidates) if candidates else None


# ---- the committer -------------------------------------------------------------------------


@dataclass
class _Waiting:
    """A queued command and who waits for it: a thread on ``future``, or a task on
    ``afuture``, a future of the task's loop (``submit_async``)."""

    command: Command
    future: Future[Outcome] | None = None
    afuture: asyncio.Future[Outcome] | None = None
    thread: int = field(default_factory=threading.get_ident)

    def start(self) -> bool:
        """False when the waiter gave up (cancelled) before its batch ran it.

        A task cancelled after this point finds its command committed, as a thread's
        future that is already running cannot be cancelled either.
        """
        if self.future is not None:
            return self.future.set_running_or_notify_cancel()
        # Read from the committer thread: at worst a cancel that lands just after is
        # treated as landing after the start, which is the case above.
        return self.afuture is not None and not self.afuture.cancelled()


class _Answers:
    """A batch's answers, handed to event loops once per loop and batch.

    A concurrent future per awaiting task would wake its loop once per answer (a
    ``call_soon_threadsafe`` and a self-pipe write each); a batch of 30 HTTP charges
    then costs 30 wake-ups where one does.
    """

    def __init__(self) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Waiting, Any, bool]]] = {}

    def answer(self, w: _Waiting, value: Any, *, error: bool) -> None:
        if w.future is not None:
            _resolve(w.future, value, error)
        elif w.afuture is not None:
            self._by_loop.setdefault(w.afuture.get_loop(), []).append((w, value, error))

    def deliver(self) -> None:
        for loop, answers in self._by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, answers)
            except RuntimeError:  # the loop closed: nobody is left to answer
                log.debug("group commit: an event loop closed before its answers")
        self._by_loop.clear()


def _settle(answers: list[tuple[_Waiting, Any, bool]]) -> None:
    """On the waiters' loop: set each task's future (unless it was cancelled)."""
    for w, value, error in answers:
        if w.afuture is not None and not w.afuture.done():
            _resolve(w.afuture, value, error)


def _resolve(future: Future[Outcome] | asyncio.Future[Outcome], value: Any, error: bool) -> None:
    if error:
        future.set_exception(value)
    else:
        future.set_result(value)


def _answer_all(
    stats: GroupStats,
    live: Sequence[_Waiting],
    outcomes: Sequence[Outcome],
    answer: Callable[[_Waiting, Any, bool], None],
) -> dict[str, list[str]]:
    """Count a committed batch and answer each waiter; the teams it changed, in order,
    each with the ids of the requests that changed it."""
    stats.batches += 1
    stats.commands += len(live)
    stats.largest = max(stats.largest, len(live))
    teams: dict[str, list[str]] = {}
    for w, outcome in zip(live, outcomes, strict=True):
        if outcome.error is not None:
            answer(w, outcome.error, True)
        else:
            answer(w, outcome, False)
            teams.setdefault(w.command.team_id, []).append(w.command.request_id)
    return teams


def _after_commit(book: Creditbook, teams: dict[str, list[str]]) -> None:
    """Run the book's after-commit hooks once per team; a failing hook is logged."""
    for team_id, request_ids in teams.items():
        for after in book.after_commit_hooks:
            try:
                after(team_id)
            except Exception:
                log.exception(
                    "after-commit hook failed for team %s",
                    team_id,
                    extra={"request_ids": request_ids},
                )


_STOP = object()


class _ToThread(Exception):
    """The loop's batch needs the committer thread (a catch-up, a guard's refusal, a query)."""


class _LoopCommitter:
    """One event loop's batches, run on that loop (``GroupCommitter(on_loop=True)``).

    Tasks queue commands here instead of on the committer thread; one task
    of the loop takes what is queued (up to ``max_batch``) and runs it as one
    transaction through ``adapters/db/loop_batch.py``: the same reads,
    commands, guards and writes as ``_attempt``, on an ``AsyncConnection``,
    so the batch's waits for PostgreSQL are loop events and no second thread
    competes for the GIL. A batch that needs more than the fast path (a team
    due for a catch-up, a guard that refuses or needs a query, any database
    error) is rolled back and handed, in order, to the committer thread, which
    answers it with the general code; this loop waits for those answers before
    its next batch, so a team's commands keep their order.
    """

    def __init__(self, group: GroupCommitter, loop: asyncio.AbstractEventLoop) -> None:
        self.group = group
        self.loop = loop
        self.waiting: deque[_Waiting] = deque()
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self.conn: Any = None  # psycopg.AsyncConnection, opened by the first batch

    def submit(self, command: Command) -> asyncio.Future[Outcome]:
        future: asyncio.Future[Outcome] = self.loop.create_future()
        self.waiting.append(_Waiting(command, afuture=future))
        if self.task is None or self.task.done():
            # A context of its own: started from a request's task, it would otherwise
            # stamp that request's id on every log line of every later batch.
            self.task = self.loop.create_task(
                self._run(), name="creditbook-group-commit", context=contextvars.Context()
            )
        self.ready.set()
        return future

    async def _run(self) -> None:
        while True:
            if not self.waiting:
                if self.closing:
                    return
                self.ready.clear()
                await self.ready.wait()
                continue
            take = min(len(self.waiting), self.group.max_batch)
            batch = [self.waiting.popleft() for _ in range(take)]
            live = [w for w in batch if w.start()]
            if live:
                try:
                    await self._answer(live)
                except Exception as exc:  # never leave a task waiting forever
                    log.exception(
                        "group commit on the loop: a batch failed",
                        extra={"request_ids": [w.command.request_id for w in live]},
                    )
                    _settle([(w, exc, True) for w in live])
                except BaseException:  # cancelled (the loop is shutting down)
                    for w in live:
                        if w.afuture is not None:
                            w.afuture.cancel()
                    raise

    async def _answer(self, live: list[_Waiting]) -> None:
        commands = [w.command for w in live]
        try:
            out = await self._attempt(commands)
        except (_ToThread, NeedsConnection):
            out = None
        except DatabaseUnavailable as exc:
            if not exc.connection_lost:  # no connection to be had: the thread has none either
                _settle([(w, exc, True) for w in live])
                return
            out = None  # nothing was applied; the thread's connection may still work
        except Exception as exc:
            log.warning(
                "batch of %d failed on the loop (%s); the committer thread runs it",
                len(live),
                _describe(exc),
                extra={"request_ids": [c.request_id for c in commands]},
            )
            out = None
        if out is None:
            # The general path, in arrival order, as one batch of the thread; their
            # answers before this loop's next batch.
            futures: list[asyncio.Future[Outcome] | Exception] = []
            for c in commands:
                try:
                    futures.append(self.group.submit_to_thread(c))
                except Exception as exc:  # closed meanwhile
                    futures.append(exc)
            for w, future in zip(live, futures, strict=True):
                try:
                    if isinstance(future, Exception):
                        raise future
                    _settle([(w, await future, False)])
                except Exception as exc:
                    _settle([(w, exc, True)])
            return
        outcomes = [out[i] for i in range(len(live))]
        teams = _answer_all(self.group.stats, live, outcomes, lambda w, v, e: _settle([(w, v, e)]))
        # Run here, on the loop's thread, so a hook must not block. The one with work
        # (auto-recharge) gets it from a guard that writes a purchase row first, and a
        # write sends the batch to the committer thread: here it finds nothing to do.
        _after_commit(self.group.book, teams)

    async def _attempt(self, commands: list[Command]) -> dict[int, Outcome]:
        book = self.group.book
        assert book.engine is not None
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = await loop_batch.connect(book.engine)
        conn = self.conn
        by_team, keys, hold_keys = _wanted(commands, range(len(commands)))
        out: dict[int, Outcome] = {}
        uow = PrefetchedUnitOfWork(book.engine)
        lost: DatabaseUnavailable | None = None
        try:
            caps = _reads_caps(book, commands, range(len(commands)))
            due, stored, grants, holds = await loop_batch.read_batch(
                conn, uow, by_team, keys, hold_keys, caps=caps
            )
            now = book.clock.now()
            books, late = _open_books(book, by_team, due, grants, holds, now, out)
            if late:
                raise _ToThread
            try:
                receipts = _apply_teams(book, uow, books, by_team, commands, stored, out, now)
            except _GuardRefused:
                raise _ToThread from None
            moved = _moved(books, due, late)
            try:
                await loop_batch.write_batch_and_commit(conn, list(books.values()), receipts, moved)
            except DatabaseUnavailable as exc:
                if exc.outcome != DatabaseUnavailable.UNKNOWN:
                    raise
                lost = exc
        except BaseException:
            try:
                await loop_batch.end(conn)
            except Exception:
                log.debug("rollback on the loop failed; the next batch reconnects")
                await conn.close()
            raise
        if lost is not None:
            await conn.close()  # broken: the next batch reconnects
            return _uncertain(commands, out, lost)
        return out

    def drop_connection(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.pgconn.finish()

    async def aclose(self) -> None:
        """Answer what is queued, then stop the task and close the connection."""
        self.closing = True
        self.ready.set()
        if self.task is not None and not self.task.done():
            await self.task
        if self.conn is not None:
            await self.conn.close()


class GroupCommitter:
    """Coalesces concurrent commands of one ``Creditbook`` into one transaction per batch.

    One committer thread (started on first use) takes whatever is queued, up
    to ``max_batch`` commands. When the queue runs dry it waits, at most
    ``max_wait_ms``, only for threads the previous batch answered that have
    not sent their next command yet (callers in a loop): without that, N
    looping callers settle at batches of N/2. A lone caller never waits;
    ``max_wait_ms=0`` never waits at all.
    """

    def __init__(
        self,
        book: Creditbook,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        per_team: bool = False,
        on_loop: bool = False,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH_ITEMS:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH_ITEMS}, got {max_batch}")
        if not 0 <= max_wait_ms <= 1000:
            raise ValueError(f"max_wait_ms must be between 0 and 1000, got {max_wait_ms}")
        self.book = book
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        # One transaction per team and batch: keeps "a transaction touches one team"
        # (a PostgreSQL distributed by team, e.g. Citus) at the cost of more commits.
        self.per_team = per_team
        # Tasks' commands batched on their own event loop (PostgreSQL): see _LoopCommitter.
        engine = book.engine
        self.on_loop = (
            on_loop and not per_team and engine is not None and engine.dialect.name == "postgresql"
        )
        self._loops: dict[asyncio.AbstractEventLoop, _LoopCommitter] = {}
        self.stats = GroupStats()
        self._queue: queue.SimpleQueue[_Waiting | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._conn: Connection | None = None
        self._open = threading.Event()
        self._open.set()
        self._count_lock = threading.Lock()
        self._unanswered = 0

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hold batches while inside; what was queued then goes out as one batch."""
        self._open.clear()
        try:
            yield
        finally:
            self._open.set()

    def queued(self) -> int:
        """Commands submitted to the committer thread and not answered yet."""
        return self._unanswered

    def in_committer(self) -> bool:
        """True on the committer thread (which must not queue and wait on itself)."""
        return threading.current_thread() is self._thread

    def submit(self, command: Command) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        self._enqueue(_Waiting(command, future=future))
        return future

    def submit_async(self, command: Command) -> asyncio.Future[Outcome]:
        """``submit`` for a task: the answer comes on the running loop.

        With ``on_loop``, the batch runs on that loop (``_LoopCommitter``);
        otherwise on the committer thread, which wakes the loop once per batch
        rather than once per answer. While ``paused``, the thread takes it.
        """
        if self._closed:
            raise RuntimeError("group commit is closed")
        loop = asyncio.get_running_loop()
        if self.on_loop and self._open.is_set():
            committer = self._loops.get(loop)
            if committer is None:
                committer = self._loops[loop] = _LoopCommitter(self, loop)
            return committer.submit(command)
        return self.submit_to_thread(command)

    def submit_to_thread(self, command: Command) -> asyncio.Future[Outcome]:
        """``submit_async`` through the committer thread, whatever ``on_loop`` says."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._enqueue(_Waiting(command, afuture=future))
        return future

    def _enqueue(self, waiting: _Waiting) -> None:
        if self._closed:
            raise RuntimeError("group commit is closed")
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name="creditbook-group-commit", daemon=True
                    )
                    self._thread.start()
        with self._count_lock:
            self._unanswered += 1
        self._queue.put(waiting)

    def close(self, timeout: float = 10.0) -> None:
        """Answer everything queued, then stop the committer thread.

        Loop committers (``on_loop``) are stopped and their connections closed on
        their loops when those still run; see ``aclose`` for a loop's own shutdown.
        """
        self._closed = True
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, committer in list(self._loops.items()):
            if loop.is_closed():  # nothing runs there any more: close the socket directly
                committer.drop_connection()
                continue
            if loop is current:  # called from a task of that loop: it cannot wait here
                loop.create_task(committer.aclose())
            elif loop.is_running():
                try:
                    asyncio.run_coroutine_threadsafe(committer.aclose(), loop).result(timeout)
                except Exception:
                    log.debug("group commit: a loop committer did not close", exc_info=True)
            else:
                loop.run_until_complete(committer.aclose())
        self._loops.clear()
        thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)
        if self._conn is not None and (thread is None or not thread.is_alive()):
            self._conn.close()
            self._conn = None

    def _uow(self) -> SqlUnitOfWork:
        """The committer keeps one connection: on PostgreSQL no checkout and pre-ping per
        batch; on SQLite (no pool) no new connection, PRAGMAs and schema load per batch.
        A connection that failed is replaced at the next batch."""
        engine = self.book.engine
        if engine is None:
            return self.book.uow()
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

    def _loop(self) -> None:
        stopping = False
        answered: set[int] = set()  # threads the previous batch answered
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            self._open.wait()
            batch = [first]
            deadline: float | None = None
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    # Wait (at most max_wait) only for threads the last batch answered
                    # that are not back yet: a caller in a loop is about to send its
                    # next command. A lone caller never waits.
                    if self.max_wait <= 0 or answered <= {
                        w.thread for w in batch if isinstance(w, _Waiting)
                    }:
                        break
                    now = time.monotonic()
                    deadline = deadline if deadline is not None else now + self.max_wait
                    if now >= deadline:
                        break
                    try:
                        nxt = self._queue.get(timeout=deadline - now)
                    except queue.Empty:
                        break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
            live = [w for w in batch if isinstance(w, _Waiting)]
            answered = {w.thread for w in live}
            self._process(live)

    def _process(self, batch: list[_Waiting]) -> None:
        try:
            self._answer(batch)
        finally:
            with self._count_lock:
                self._unanswered -= len(batch)

    def _answer(self, batch: list[_Waiting]) -> None:
        live = [w for w in batch if w.start()]
        if not live:
            return
        answers = _Answers()
        try:
            if self.per_team:
                groups: dict[str, list[_Waiting]] = {}
                for w in live:
                    groups.setdefault(w.command.team_id, []).append(w)
                live = [w for members in groups.values() for w in members]
                outcomes = [
                    o
                    for members in groups.values()
                    for o in run_batch(self.book, [w.command for w in members], self._uow)
                ]
            else:
                outcomes = run_batch(self.book, [w.command for w in live], self._uow)
        except BaseException as exc:  # never leave a caller waiting forever
            for w in live:
                answers.answer(w, exc, error=True)
            answers.deliver()
            return
        teams = _answer_all(
            self.stats, live, outcomes, lambda w, v, e: answers.answer(w, v, error=e)
        )
        answers.deliver()
        # Work a spend guard queued for after the commit (auto-recharge) was queued on
        # this thread, so it runs here, once per team, after every caller was answered.
        _after_commit(self.book, teams)
