"""Group commit: many concurrent charges, holds, captures and releases in one transaction.

A durable transaction costs one WAL flush (PostgreSQL) or one fsync (SQLite,
``synchronous=FULL``), and a team's lock is held until it is done: one
transaction per charge caps one team at one flush per charge. Here commands
from many threads are queued; one committer thread takes everything queued
(up to ``max_batch``) and runs it as ONE transaction of the kernel
(``Kernel.run_batch`` in ``service/kernel.py``: the phases of a command alone,
for every team of the batch at once: one lock of the teams in id order, one
read, each command under a savepoint, the guards once per team, since caps
are monotone, one write and commit).

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
through a ``LoopBatchIO``, ``adapters/db/committer.py``): the kernel's phases
around async round trips, so no second thread waits for the GIL; what that
fast path cannot finish goes to the committer thread.

``Creditbook.enable_group_commit()`` switches it on (``creditbook.open`` does
when ``CREDITBOOK_GROUP_COMMIT`` says so); the committer is the kernel's
``Batcher``. ``charge_many`` runs an explicit batch through
``Kernel.run_batch`` in the caller's thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from creditbook.domain.errors import DatabaseUnavailable
from creditbook.service.kernel import GuardRefused, Kernel, describe, moved, plan, uncertain
from creditbook.service.ports import HeldUnitsOfWork, LoopBatchIO, NeedsConnection, UnitOfWork
from creditbook.service.requests import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_WAIT_MS,
    GROUPED_OPERATIONS,
    MAX_BATCH_ITEMS,
    SPENDS,
    ChargeItem,
    Command,
    Outcome,
)

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_WAIT_MS",
    "GROUPED_OPERATIONS",
    "MAX_BATCH_ITEMS",
    "SPENDS",
    "ChargeItem",
    "Command",
    "GroupCommitter",
    "GroupStats",
    "Outcome",
]

log = logging.getLogger("creditbook.group_commit")


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


def _after_commit(kernel: Kernel[Any], teams: dict[str, list[str]]) -> None:
    """Run the kernel's after-commit hooks once per team; a failing hook is logged."""
    for team_id, request_ids in teams.items():
        for after in kernel.after_commit_hooks:
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
    transaction through the group's ``LoopBatchIO``: the kernel's reads,
    commands, guards and writes, on an async connection,
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
        self.io: LoopBatchIO = group.loop_io  # type: ignore[assignment]
        self.conn: Any = None  # the async connection, opened by the first batch

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
                describe(exc),
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
        _after_commit(self.group.kernel, teams)

    async def _attempt(self, commands: list[Command]) -> dict[int, Outcome]:
        kernel, io = self.group.kernel, self.io
        if self.conn is None or not io.usable(self.conn):
            self.conn = await io.connect()
        conn = self.conn
        by_team, keys, hold_keys = plan(commands, range(len(commands)))
        out: dict[int, Outcome] = {}
        uow = io.prefetched_uow()
        lost: DatabaseUnavailable | None = None
        try:
            caps = kernel.reads_caps(commands, range(len(commands)))
            due, stored, grants, holds = await io.read_batch(
                conn, uow, by_team, keys, hold_keys, caps=caps
            )
            now = kernel.clock.now()
            books, late = kernel.open_books(by_team, due, grants, holds, now, out)
            if late:
                raise _ToThread
            try:
                receipts = kernel.apply_teams(uow, books, by_team, commands, stored, out, now)
            except GuardRefused:
                raise _ToThread from None
            due_moves = moved(books, due, late)
            try:
                await io.write_batch_and_commit(conn, list(books.values()), receipts, due_moves)
            except DatabaseUnavailable as exc:
                if exc.outcome != DatabaseUnavailable.UNKNOWN:
                    raise
                lost = exc
        except BaseException:
            try:
                await io.end(conn)
            except Exception:
                log.debug("rollback on the loop failed; the next batch reconnects")
                await io.close(conn)
            raise
        if lost is not None:
            await io.close(conn)  # broken: the next batch reconnects
            return uncertain(commands, out, lost)
        return out

    def drop_connection(self) -> None:
        if self.conn is not None:
            self.io.drop(self.conn)

    async def aclose(self) -> None:
        """Answer what is queued, then stop the task and close the connection."""
        self.closing = True
        self.ready.set()
        if self.task is not None and not self.task.done():
            await self.task
        if self.conn is not None:
            await self.io.close(self.conn)


class GroupCommitter:
    """Coalesces concurrent commands of one kernel into one transaction per batch.

    One committer thread (started on first use) takes whatever is queued, up
    to ``max_batch`` commands. When the queue runs dry it waits, at most
    ``max_wait_ms``, only for threads the previous batch answered that have
    not sent their next command yet (callers in a loop): without that, N
    looping callers settle at batches of N/2. A lone caller never waits;
    ``max_wait_ms=0`` never waits at all.

    ``held`` makes the committer thread's units of work on one kept connection
    (the kernel's factory without it); ``loop_io`` carries the event-loop
    batches of ``on_loop`` (without it, ``on_loop`` is off).
    """

    def __init__(
        self,
        kernel: Kernel[Any],
        *,
        held: HeldUnitsOfWork | None = None,
        loop_io: LoopBatchIO | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        per_team: bool = False,
        on_loop: bool = False,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH_ITEMS:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH_ITEMS}, got {max_batch}")
        if not 0 <= max_wait_ms <= 1000:
            raise ValueError(f"max_wait_ms must be between 0 and 1000, got {max_wait_ms}")
        self.kernel = kernel
        self.held = held
        self.loop_io = loop_io
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        # One transaction per team and batch: keeps "a transaction touches one team"
        # (a PostgreSQL distributed by team, e.g. Citus) at the cost of more commits.
        self.per_team = per_team
        # Tasks' commands batched on their own event loop (PostgreSQL): see _LoopCommitter.
        self.on_loop = on_loop and not per_team and loop_io is not None
        self._loops: dict[asyncio.AbstractEventLoop, _LoopCommitter] = {}
        self.stats = GroupStats()
        self._queue: queue.SimpleQueue[_Waiting | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
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

    @property
    def _conn(self) -> Any:
        """The committer thread's kept connection, if it holds one (tests read it)."""
        return getattr(self.held, "connection", None)

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
        if self.held is not None and (thread is None or not thread.is_alive()):
            self.held.close()

    def _uow(self) -> UnitOfWork:
        return self.held() if self.held is not None else self.kernel.uow()

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
                    for o in self.kernel.run_batch([w.command for w in members], self._uow)
                ]
            else:
                outcomes = self.kernel.run_batch([w.command for w in live], self._uow)
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
        _after_commit(self.kernel, teams)
