"""The interfaces the service layer needs from the outside, as protocols.

- ``UnitOfWork``: one transaction on the ledger's storage (rolled back on
  exit unless ``commit()`` was called). ``adapters/db`` implements it on
  SQLite and PostgreSQL (``SqlUnitOfWork``); ``service/fake_uow.py`` in memory
  (``FakeUnitOfWork``) for tests without a database.
- the hooks area services register on the kernel: ``CatchUpStep``,
  ``DueStep``, ``SpendGuard``, ``RefusalHook``, ``AfterCommitHook``;
- ``Batcher``: what the kernel needs of group commit (submit a command and
  wait for its outcome, from a thread or a task; whether this thread is the
  committer, which must not queue and wait on itself).

The protocols are generic where the hooks see the unit of work: an area
service whose hooks still run SQL through ``uow.conn`` types them against
``SqlUnitOfWork``; the kernel and group commit use only what is declared here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from creditbook.domain.book import TeamBook
from creditbook.domain.errors import CreditbookError
from creditbook.domain.grants import Grant
from creditbook.domain.holds import Hold
from creditbook.domain.ledger import Entry
from creditbook.domain.team import Member, SpendingCap, Team
from creditbook.service.requests import Command, Outcome

StoredReceipt = tuple[str, str, dict[str, Any]]
"""An idempotency key's stored (request hash, operation, receipt dict)."""

BatchReads = tuple[
    dict[str, datetime | None],  # locked teams' due_at
    dict[tuple[str, str], StoredReceipt],  # stored receipts by (team, key)
    dict[str, list[Grant]],  # live grants by team
    dict[tuple[str, str], Hold],  # named holds by (team, hold id)
]
"""What ``UnitOfWork.read_batch`` answers."""


class UnitOfWork(Protocol):
    """One transaction: use as a context manager; nothing stays unless ``commit()`` ran."""

    # Rows a batch read prefetched for the spend guards: billing settings rows
    # and spending caps of the locked teams.
    prefetched_settings: dict[str, Any]
    prefetched_caps: dict[str, dict[tuple[str, str], SpendingCap]]

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    # ---- teams and members
    def add_team(self, team: Team, due_at: datetime | None = None) -> None: ...

    def get_team(self, team_id: str) -> Team | None: ...

    def lock_team(self, team_id: str) -> datetime | None:
        """Lock the team for this transaction; its ``due_at``. ``TeamNotFound`` if unknown."""
        ...

    def team_due_at(self, team_id: str) -> datetime | None: ...

    def set_due_at(self, team_id: str, due_at: datetime | None) -> None: ...

    def set_due_at_many(self, due: dict[str, datetime | None]) -> None: ...

    def list_team_ids(self, *, due_before: datetime | None = None) -> list[str]: ...

    def add_member(self, member: Member) -> None: ...

    def find_member_by_email(self, team_id: str, email: str) -> Member | None: ...

    def list_members(self, team_id: str) -> list[Member]: ...

    def spending_caps(self, team_id: str) -> dict[tuple[str, str], SpendingCap]: ...

    # ---- the ledger
    def load_grants(self, team_id: str, *, live_only: bool = True) -> list[Grant]: ...

    def get_grant(self, team_id: str, grant_id: str) -> Grant | None: ...

    def load_holds(self, team_id: str, hold_ids: Iterable[str]) -> list[Hold]: ...

    def load_due_holds(self, team_id: str, now: datetime) -> list[Hold]: ...

    def next_due(self, team_id: str) -> datetime | None:
        """The earliest active hold TTL or open grant expiry of the team."""
        ...

    def save_book(self, book: TeamBook) -> None: ...

    def save_books(self, books: Iterable[TeamBook]) -> None: ...

    def list_entries(
        self,
        team_id: str,
        *,
        limit: int,
        before: str | None = None,
        feature: str | None = None,
        member_id: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        with_postings: bool = True,
    ) -> list[Entry]: ...

    # ---- idempotency
    def get_idempotency(self, team_id: str, key: str) -> StoredReceipt | None: ...

    def put_idempotency(
        self,
        team_id: str,
        key: str,
        request_hash: str,
        operation: str,
        response: dict[str, Any],
        now: datetime,
    ) -> None: ...

    def put_idempotency_many(self, rows: Sequence[dict[str, Any]]) -> None: ...

    # ---- a batch of teams
    def read_batch(
        self,
        team_ids: Iterable[str],
        keys: Iterable[tuple[str, str]],
        hold_keys: Iterable[tuple[str, str]],
        *,
        caps: bool = False,
    ) -> BatchReads:
        """Lock the teams (in id order), read their stored keys, live grants, named holds."""
        ...

    def write_batch_and_commit(
        self,
        books: Iterable[TeamBook],
        receipts: Sequence[dict[str, Any]],
        due: dict[str, datetime | None],
    ) -> None:
        """Write the books, the receipts to store and the moved ``due_at``s; commit."""
        ...


U = TypeVar("U", bound=UnitOfWork)
U_contra = TypeVar("U_contra", bound=UnitOfWork, contravariant=True)

UnitOfWorkFactory = Callable[[], U]

# Extra rules run when a team is brought up to date (plans issue period grants).
CatchUpStep = Callable[[U, TeamBook, datetime], None]
# A date a team is due for a catch-up besides its holds' and grants' (a period's end).
DueStep = Callable[[U, str, datetime], datetime | None]
# Runs after a command was applied and before anything is written; raising
# refuses the command (spending caps). It sees the new entries in ``book.entries``.
SpendGuard = Callable[[U, TeamBook], None]
# (team_id, operation, error): after a transaction refused with ``error`` rolled back.
RefusalHook = Callable[[str, str, CreditbookError], None]
# (team_id): after a transaction that changed the team committed (auto-recharge).
AfterCommitHook = Callable[[str], None]


class Batcher(Protocol):
    """What the kernel needs of group commit (``service/group_commit.py``)."""

    def submit(self, command: Command) -> Future[Outcome]:
        """Queue the command; the future is answered once its batch committed."""
        ...

    def submit_async(self, command: Command) -> asyncio.Future[Outcome]:
        """``submit`` for a task of the running event loop."""
        ...

    def in_committer(self) -> bool:
        """True on the committer's own thread (it runs commands alone, never queues)."""
        ...

    def close(self, timeout: float = 10.0) -> None: ...


# ---- what the group committer keeps between batches ---------------------------------------


class NeedsConnection(BaseException):
    """A command or guard needed a query an event-loop batch did not prefetch.

    A ``BaseException``: the batch's ``except Exception`` handlers, which turn a
    command's error into its answer, must let it through. The batch then goes
    to the committer thread, where the same code runs with a connection.
    """


class HeldUnitsOfWork(Protocol):
    """The committer thread's units of work, on one connection kept across batches."""

    def __call__(self) -> UnitOfWork: ...

    def close(self) -> None: ...


class LoopBatchIO(Protocol):
    """A batch's round trips on an event loop, on an async connection (PostgreSQL).

    ``conn`` is the connection ``connect`` made; the batch's commands and
    guards see ``prefetched_uow()``, which has the batch's reads and raises
    ``NeedsConnection`` for anything else.
    """

    async def connect(self) -> Any: ...

    def usable(self, conn: Any) -> bool: ...

    def prefetched_uow(self) -> UnitOfWork: ...

    async def read_batch(
        self,
        conn: Any,
        uow: UnitOfWork,
        team_ids: Iterable[str],
        keys: Iterable[tuple[str, str]],
        hold_keys: Iterable[tuple[str, str]],
        *,
        caps: bool,
    ) -> BatchReads: ...

    async def write_batch_and_commit(
        self,
        conn: Any,
        books: Sequence[TeamBook],
        receipts: Sequence[dict[str, Any]],
        due: dict[str, datetime | None],
    ) -> None: ...

    async def end(self, conn: Any) -> None:
        """Roll back whatever transaction is open (after a batch that did not commit)."""
        ...

    async def close(self, conn: Any) -> None: ...

    def drop(self, conn: Any) -> None:
        """Close the socket at once (its event loop no longer runs)."""
        ...
