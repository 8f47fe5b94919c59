"""The kernel: the one team transaction that every change of credits goes through.

A transaction on one team (``run_transaction``):

1. lock the team (serializes writers of that team on SQLite and PostgreSQL);
2. replay: a known idempotency key answers its stored receipt (or refuses a
   different request with ``IdempotencyConflict``);
3. load the team's live grants into a ``TeamBook`` and bring it up to date
   (expired holds released, expired grants written off, the catch-up steps);
4. apply the command; the spend guards run over what it added; a refusal
   raises before anything is written;
5. write the book's changes, move the team's ``due_at``, store the receipt
   under its key, commit; then the after-commit hooks (or, after a refusal
   rolled back, the refusal hooks).

A batch (``run_batch``) is the same phases for many commands and teams in
one transaction: one lock of every team in id order and one read of their
keys, grants and holds (``UnitOfWork.read_batch``), the same replay, the same
book loading and catch-up, each command applied under a savepoint (one that
raises leaves no trace), the same guards once per team, the same ``due_at``
rule, one write and commit. The event-loop batch of group commit calls these
phases around its own async I/O (``plan``, ``open_books``, ``apply_teams``,
``moved``, ``uncertain``). A guard's refusal takes its team out of the batch,
whose commands then run alone, in order; a failure of the batch as a whole
runs every command alone.

The kernel holds the hook lists area services register on, the unit-of-work
factory, the catalog and the clock. Group commit is a ``Batcher`` the
composition root hands it (``batcher``); the kernel never imports it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from creditbook.domain.book import TeamBook
from creditbook.domain.catalog import Catalog
from creditbook.domain.clock import Clock
from creditbook.domain.errors import (
    CreditbookError,
    DatabaseUnavailable,
    IdempotencyConflict,
    TeamNotFound,
)
from creditbook.domain.grants import Grant
from creditbook.domain.holds import Hold
from creditbook.service.ports import (
    AfterCommitHook,
    Batcher,
    CatchUpStep,
    DueStep,
    RefusalHook,
    SpendGuard,
    StoredReceipt,
    U,
    UnitOfWork,
)
from creditbook.service.requests import (
    SPENDS,
    Command,
    Outcome,
    Receipt,
    SpendRequest,
    checked_digest,
)

log = logging.getLogger("creditbook.group_commit")

R = TypeVar("R", bound=Receipt)

ByTeam = dict[str, list[int]]
"""The indexes of a batch's commands, by team, in arrival order."""


class GuardRefused(Exception):
    """A spend guard refused for ``team_id`` inside a batch: the team runs alone."""

    def __init__(self, team_id: str) -> None:
        super().__init__(team_id)
        self.team_id = team_id


class Kernel(Generic[U]):
    """The team transaction over a unit-of-work factory, a catalog and a clock."""

    def __init__(self, uow: Callable[[], U], catalog: Catalog, clock: Clock) -> None:
        self.uow = uow
        self.catalog = catalog
        self.clock = clock
        self.catch_up_steps: list[CatchUpStep[U]] = []
        self.due_steps: list[DueStep[U]] = []
        self.spend_guards: list[SpendGuard[U]] = []
        # Set by a spend guard that reads monthly caps (the access service's): a
        # batch then reads them with its locks when it has a member's or key's spend.
        self.guards_read_caps = False
        self.refusal_hooks: list[RefusalHook] = []
        self.after_commit_hooks: list[AfterCommitHook] = []
        # Group commit, when on: spends are queued there and batched.
        self.batcher: Batcher | None = None

    # ---- spends: alone or through the batcher ---------------------------------------------

    def run(self, request: SpendRequest) -> Any:
        """Run a spend request; its receipt. Through group commit when it is on."""
        command = request.command()
        group = self.batcher
        try:
            if group is not None and not group.in_committer():
                # The committer thread runs the after-commit hooks of its batches.
                return group.submit(command).result().value(request.receipt_type)
            data = self.run_transaction(command)
        except CreditbookError as exc:
            self.refused(request.team_id, command.operation, exc)
            raise
        self.committed(request.team_id)
        return request.receipt_type.from_dict(data)

    async def run_async(self, request: SpendRequest) -> Any:
        """``run`` for an event loop: a task awaits its batch without holding a thread.

        Without group commit, ``run`` runs on a worker thread.
        """
        group = self.batcher
        if group is None:
            return await asyncio.to_thread(self.run, request)
        command = request.command()
        try:
            outcome = await group.submit_async(command)
            return outcome.value(request.receipt_type)
        except CreditbookError as exc:
            if self.refusal_hooks:  # they write to the database: not on the event loop
                await asyncio.to_thread(self.refused, request.team_id, command.operation, exc)
            raise

    # ---- any command of one team ----------------------------------------------------------

    def transact(
        self,
        team_id: str,
        operation: str,
        request: dict[str, Any],
        idempotency_key: str | None,
        apply: Callable[[TeamBook, U], R],
        receipt_type: type[R],
        *,
        hold_ids: list[str] | None = None,
    ) -> R:
        """Run ``apply`` on the team's up-to-date book in one transaction, with the hooks.

        The building block of every use case that changes a team (plans,
        purchases, enrichment): ``request`` is hashed for the idempotency key;
        ``receipt_type`` needs ``to_dict`` and a ``from_dict`` classmethod.
        """
        digest = checked_digest(operation, request, idempotency_key)
        command = Command(team_id, operation, idempotency_key, digest, apply, hold_ids)
        try:
            data = self.run_transaction(command)
        except CreditbookError as exc:
            self.refused(team_id, operation, exc)
            raise
        self.committed(team_id)
        return receipt_type.from_dict(data)  # type: ignore[attr-defined,no-any-return]

    def refused(self, team_id: str, operation: str, exc: CreditbookError) -> None:
        """The refusal hooks, after the refused transaction rolled back (the lock is free)."""
        for on_refused in self.refusal_hooks:
            on_refused(team_id, operation, exc)

    def committed(self, team_id: str) -> None:
        """Work decided inside the transaction that must run outside it (auto-recharge)."""
        for after in self.after_commit_hooks:
            after(team_id)

    def run_transaction(self, c: Command) -> dict[str, Any]:
        """One command in one transaction, without the hooks; the receipt's dict."""
        with self.uow() as uow:
            due_at = uow.lock_team(c.team_id)
            if c.idempotency_key is not None:
                stored = uow.get_idempotency(c.team_id, c.idempotency_key)
                if stored is not None:
                    answer = replayed(stored, c.digest, c.idempotency_key)
                    if answer.error is not None:
                        raise answer.error
                    assert answer.data is not None
                    return answer.data
            book, ran = self.open_book(
                uow, c.team_id, due_at=due_at, locked=True, hold_ids=c.hold_ids
            )
            receipt = c.apply(book, uow)
            self.guard(uow, book)
            self.finish(uow, book, ran_catch_up=ran, due_at=due_at)
            data = receipt.to_dict()
            if c.idempotency_key is not None:
                uow.put_idempotency(
                    c.team_id, c.idempotency_key, c.digest, c.operation, data, self.clock.now()
                )
            uow.commit()
        return data

    def open_book(
        self,
        uow: U,
        team_id: str,
        *,
        due_at: datetime | None = None,
        locked: bool = False,
        hold_ids: list[str] | None = None,
    ) -> tuple[TeamBook, bool]:
        """Lock the team, load its book and apply what is due; (book, whether a catch-up ran)."""
        if not locked:
            due_at = uow.lock_team(team_id)
        now = self.clock.now()
        book = self.load_book(team_id, now, uow.load_grants(team_id))
        if hold_ids:
            for hold in uow.load_holds(team_id, hold_ids):
                book.holds[hold.id] = hold
        if due_at is not None and due_at <= now:
            self.catch_up_book(uow, book, now)
            return book, True
        return book, False

    def load_book(
        self, team_id: str, now: datetime, grants: Iterable[Grant], holds: Iterable[Hold] = ()
    ) -> TeamBook:
        """A team's book from its live grants and the holds its commands name."""
        book = TeamBook.load(team_id, self.catalog, now, grants)
        for hold in holds:
            book.holds[hold.id] = hold
        return book

    def catch_up_book(self, uow: U, book: TeamBook, now: datetime) -> None:
        """Release the holds past their TTL, write off expired grants, run the catch-up steps."""
        for hold in uow.load_due_holds(book.team_id, now):
            book.holds.setdefault(hold.id, hold)
        book.expire_holds()
        book.expire_grants()
        for step in self.catch_up_steps:
            step(uow, book, now)

    def guard(self, uow: U, book: TeamBook) -> None:
        """The spend guards over what the book's commands added; raising refuses them."""
        for guard in self.spend_guards:
            guard(uow, book)

    def finish(
        self,
        uow: U,
        book: TeamBook,
        *,
        ran_catch_up: bool,
        due_at: datetime | None = None,
    ) -> None:
        """Write the book's changes and move the team's ``due_at`` if needed."""
        earliest = earliest_new(book)
        uow.save_book(book)
        if ran_catch_up:
            uow.set_due_at(book.team_id, self.next_due(uow, book.team_id, book.now))
            return
        if earliest is None:
            return
        current = due_at if due_at is not None else uow.team_due_at(book.team_id)
        if current is None or earliest < current:
            uow.set_due_at(book.team_id, earliest)

    def next_due(self, uow: U, team_id: str, now: datetime) -> datetime | None:
        """The team's next ``due_at`` after a catch-up: its holds, grants and due steps."""
        new_due = uow.next_due(team_id)
        for step in self.due_steps:
            extra = step(uow, team_id, now)
            if extra is not None and (new_due is None or extra < new_due):
                new_due = extra
        return new_due

    def catch_up(self, team_id: str) -> int:
        """Apply whatever is due for one team now; returns the entries written."""
        with self.uow() as uow:
            book, ran = self.open_book(uow, team_id)
            written = len(book.entries)
            self.finish(uow, book, ran_catch_up=ran)
            uow.commit()
        return written

    # ---- many commands in one transaction ---------------------------------------------------

    def run_batch(
        self, commands: Sequence[Command], uow: Callable[[], U] | None = None
    ) -> list[Outcome]:
        """Run ``commands`` as one transaction (see the module docstring); one outcome each.

        ``uow`` makes the batch's unit of work (``self.uow`` by default).
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
                for i, outcome in self._attempt(uow or self.uow, commands, chosen).items():
                    outcomes[i] = outcome
                break
            except GuardRefused as refused:
                isolated.add(refused.team_id)
            except DatabaseUnavailable as exc:
                if exc.connection_lost and not reconnected:
                    reconnected = True  # nothing was applied; a kept connection may be stale
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
                    describe(exc),
                    extra={"request_ids": [commands[i].request_id for i in chosen]},
                )
                isolated.update(commands[i].team_id for i in chosen)
                break
        for i, command in enumerate(commands):
            if outcomes[i] is None:
                outcomes[i] = Outcome(error=unavailable) if unavailable else self._alone(command)
        return [o for o in outcomes if o is not None]

    def _alone(self, c: Command) -> Outcome:
        try:
            return Outcome(data=self.run_transaction(c))
        except Exception as exc:
            return Outcome(error=exc)

    def _attempt(
        self, make_uow: Callable[[], U], commands: Sequence[Command], chosen: list[int]
    ) -> dict[int, Outcome]:
        by_team, keys, hold_keys = plan(commands, chosen)
        out: dict[int, Outcome] = {}
        try:
            self._attempt_in(make_uow, commands, chosen, by_team, keys, hold_keys, out)
        except DatabaseUnavailable as exc:
            if exc.outcome != DatabaseUnavailable.UNKNOWN:
                raise
            return uncertain(commands, out, exc)
        return out

    def _attempt_in(
        self,
        make_uow: Callable[[], U],
        commands: Sequence[Command],
        chosen: list[int],
        by_team: ByTeam,
        keys: list[tuple[str, str]],
        hold_keys: list[tuple[str, str]],
        out: dict[int, Outcome],
    ) -> None:
        with make_uow() as uow:
            due, stored, grants, holds = uow.read_batch(
                by_team, keys, hold_keys, caps=self.reads_caps(commands, chosen)
            )
            now = self.clock.now()
            books, late = self.open_books(by_team, due, grants, holds, now, out)
            for team_id in sorted(late):
                # Rare (a TTL or an expiry passed): the ordinary catch-up, one team at a time.
                hold_ids = [h for i in by_team[team_id] for h in commands[i].hold_ids or ()]
                books[team_id], _ = self.open_book(
                    uow, team_id, due_at=due[team_id], locked=True, hold_ids=hold_ids or None
                )
            receipts = self.apply_teams(uow, books, by_team, commands, stored, out, now)
            due_moves = moved(books, due, late)
            if late:
                uow.save_books(books.values())
                for team_id in sorted(late):
                    self.finish(uow, books[team_id], ran_catch_up=True, due_at=due[team_id])
                uow.set_due_at_many(due_moves)
                uow.put_idempotency_many(receipts)
                uow.commit()
            else:
                uow.write_batch_and_commit(books.values(), receipts, due_moves)

    def reads_caps(self, commands: Sequence[Command], chosen: Iterable[int]) -> bool:
        """Whether the batch reads its teams' spending caps: some charge or hold names a spender.

        The cap guard counts only charges and holds made by a member or through a
        key; a batch of the system's charges (an import, a benchmark) spares the read.
        """
        if not self.guards_read_caps:
            return False
        for i in chosen:
            command = commands[i]
            actor = command.actor
            if (
                actor is not None
                and (actor.member_id or actor.api_key_id)
                and command.operation in SPENDS
            ):
                return True
        return False

    def open_books(
        self,
        by_team: ByTeam,
        due: dict[str, datetime | None],
        grants: dict[str, list[Grant]],
        holds: dict[tuple[str, str], Hold],
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
        books = {t: self.load_book(t, now, grants[t]) for t in by_team if t not in late}
        for (team_id, hold_id), hold in holds.items():
            if team_id in books:
                books[team_id].holds[hold_id] = hold
        return books, late

    def apply_teams(
        self,
        uow: U,
        books: dict[str, TeamBook],
        by_team: ByTeam,
        commands: Sequence[Command],
        stored: dict[tuple[str, str], StoredReceipt],
        out: dict[int, Outcome],
        now: datetime,
    ) -> list[dict[str, Any]]:
        """Apply each team's commands and run the spend guards; the receipts to store."""
        receipts: list[dict[str, Any]] = []
        for team_id, ids in by_team.items():
            team_book = books[team_id]
            applied = apply_all(team_book, uow, commands, ids, stored, out, receipts, now)
            if applied and self.spend_guards:
                try:
                    self.guard(uow, team_book)
                except DatabaseUnavailable:
                    raise
                except Exception:
                    raise GuardRefused(team_id) from None
        return receipts


# ---- the pure phases -----------------------------------------------------------------------


def replayed(stored: StoredReceipt | tuple[str, dict[str, Any]], digest: str, key: str) -> Outcome:
    """The answer to a key already used: its receipt, or a conflict for another request."""
    stored_hash, answer = stored[0], stored[-1]
    assert isinstance(answer, dict)
    return (
        Outcome(data=answer) if stored_hash == digest else Outcome(error=IdempotencyConflict(key))
    )


def plan(
    commands: Sequence[Command], chosen: Iterable[int]
) -> tuple[ByTeam, list[tuple[str, str]], list[tuple[str, str]]]:
    """The chosen commands by team (arrival order kept), their keys and their holds."""
    by_team: ByTeam = {}
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


def apply_all(
    team_book: TeamBook,
    uow: UnitOfWork,
    commands: Sequence[Command],
    ids: list[int],
    stored: dict[tuple[str, str], StoredReceipt],
    out: dict[int, Outcome],
    receipts: list[dict[str, Any]],
    now: datetime,
) -> int:
    """Apply one team's commands in arrival order; returns how many changed the book.

    Two commands with the same key: the second gets the first's receipt (or
    ``IdempotencyConflict``), as a retry after the commit would.
    """
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    applied = 0
    for i in ids:
        c = commands[i]
        key = c.idempotency_key
        if key is not None:
            known = stored.get((c.team_id, key)) or seen.get(key)
            if known is not None:
                out[i] = replayed(known, c.digest, key)
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


def earliest_new(team_book: TeamBook) -> datetime | None:
    """The earliest TTL or expiry the book adds (the team's ``due_at`` may move to it)."""
    candidates = [team_book.holds[h].expires_at for h in team_book.new_holds]
    candidates += [
        g.expires_at for gid in team_book.new_grants if (g := team_book.grants[gid]).expires_at
    ]
    return min(candidates) if candidates else None


def moved(
    books: dict[str, TeamBook], due: dict[str, datetime | None], late: set[str]
) -> dict[str, datetime | None]:
    """Teams whose ``due_at`` moves earlier (a new hold's TTL, a new grant's expiry)."""
    found: dict[str, datetime | None] = {}
    for team_id, team_book in books.items():
        earliest = earliest_new(team_book)
        current = due[team_id]
        if team_id not in late and earliest is not None and (current is None or earliest < current):
            found[team_id] = earliest
    return found


def uncertain(
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


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
