"""An in-memory ``UnitOfWork`` for tests without a database (cosmicpython's ``FakeUnitOfWork``).

``FakeStore`` holds the ledger: teams and their ``due_at``, members, grants,
holds, entries, idempotency receipts. Each ``FakeUnitOfWork`` is one
transaction on it: it works on copies and writes them back only when
``commit()`` is called, so a refused command leaves the store as it was.
Transactions take the store's lock in turn (as SQLite's one writer does).

    store = FakeStore()
    kernel = Kernel(store.uow, load_catalog(), FrozenClock(now))
    Spending(kernel).charge(team_id, "email_finder", outcome="deliverable")
    store.entries  # what was committed

It covers what the kernel and the spend use cases use; area services that
run SQL through ``uow.conn`` (plans, purchases, access, enrichment) need the
real unit of work.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from creditbook.domain.book import TeamBook
from creditbook.domain.errors import TeamNotFound
from creditbook.domain.grants import Grant
from creditbook.domain.holds import Hold, HoldStatus
from creditbook.domain.ledger import Entry
from creditbook.domain.team import Member, SpendingCap, Team
from creditbook.service.ports import BatchReads, StoredReceipt


class DuplicateKey(Exception):
    """An idempotency key stored twice for one team (a database's unique constraint)."""


@dataclass
class FakeStore:
    """The committed state the fake units of work read and write."""

    teams: dict[str, Team] = field(default_factory=dict)
    due_at: dict[str, datetime | None] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    grants: dict[tuple[str, str], Grant] = field(default_factory=dict)
    holds: dict[tuple[str, str], Hold] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    receipts: dict[tuple[str, str], tuple[str, str, dict[str, Any], datetime]] = field(
        default_factory=dict
    )
    commits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def uow(self) -> FakeUnitOfWork:
        """A new transaction on this store (the kernel's unit-of-work factory)."""
        return FakeUnitOfWork(self)

    def copy_state(self) -> dict[str, Any]:
        return {
            "teams": dict(self.teams),
            "due_at": dict(self.due_at),
            "members": dict(self.members),
            "grants": dict(self.grants),
            "holds": dict(self.holds),
            "entries": list(self.entries),
            "receipts": dict(self.receipts),
        }


class FakeUnitOfWork:
    """One transaction on a ``FakeStore``; nothing stays unless ``commit()`` ran."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.prefetched_settings: dict[str, Any] = {}
        self.prefetched_caps: dict[str, dict[tuple[str, str], SpendingCap]] = {}
        self._work: dict[str, Any] | None = None

    # ---- transaction -----------------------------------------------------

    def __enter__(self) -> Self:
        self.store.lock.acquire()
        self._work = self.store.copy_state()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._work = None
        self.store.lock.release()

    @property
    def work(self) -> dict[str, Any]:
        if self._work is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._work

    def commit(self) -> None:
        for name, value in self.work.items():
            setattr(self.store, name, value)
        self.store.commits += 1
        self._work = self.store.copy_state()

    def rollback(self) -> None:
        self._work = self.store.copy_state()

    # ---- teams and members -------------------------------------------------

    def add_team(self, team: Team, due_at: datetime | None = None) -> None:
        self.work["teams"][team.id] = team
        self.work["due_at"][team.id] = due_at

    def get_team(self, team_id: str) -> Team | None:
        team: Team | None = self.work["teams"].get(team_id)
        return team

    def lock_team(self, team_id: str) -> datetime | None:
        if team_id not in self.work["teams"]:
            raise TeamNotFound(team_id)
        return self.team_due_at(team_id)

    def team_due_at(self, team_id: str) -> datetime | None:
        due: datetime | None = self.work["due_at"].get(team_id)
        return due

    def set_due_at(self, team_id: str, due_at: datetime | None) -> None:
        self.work["due_at"][team_id] = due_at

    def set_due_at_many(self, due: dict[str, datetime | None]) -> None:
        self.work["due_at"].update(due)

    def list_team_ids(self, *, due_before: datetime | None = None) -> list[str]:
        due = self.work["due_at"]
        return sorted(
            t
            for t in self.work["teams"]
            if due_before is None or ((d := due.get(t)) is not None and d <= due_before)
        )

    def add_member(self, member: Member) -> None:
        self.work["members"][member.id] = member

    def find_member_by_email(self, team_id: str, email: str) -> Member | None:
        for member in self.work["members"].values():
            if member.team_id == team_id and member.email == email:
                found: Member = member
                return found
        return None

    def list_members(self, team_id: str) -> list[Member]:
        return [m for m in self.work["members"].values() if m.team_id == team_id]

    def spending_caps(self, team_id: str) -> dict[tuple[str, str], SpendingCap]:
        found = self.prefetched_caps.get(team_id)
        if found is not None:
            return found
        return {
            ("member", m.id): SpendingCap("member", m.id, m.email, m.monthly_cap)
            for m in self.list_members(team_id)
            if m.monthly_cap is not None and m.active
        }

    # ---- the ledger ----------------------------------------------------------

    def load_grants(self, team_id: str, *, live_only: bool = True) -> list[Grant]:
        return [
            copy.deepcopy(g)
            for (t, _), g in self.work["grants"].items()
            if t == team_id and (not live_only or g.remaining > 0)
        ]

    def get_grant(self, team_id: str, grant_id: str) -> Grant | None:
        found = self.work["grants"].get((team_id, grant_id))
        return copy.deepcopy(found) if found is not None else None

    def load_holds(self, team_id: str, hold_ids: Iterable[str]) -> list[Hold]:
        holds = self.work["holds"]
        return [copy.deepcopy(holds[(team_id, h)]) for h in hold_ids if (team_id, h) in holds]

    def load_due_holds(self, team_id: str, now: datetime) -> list[Hold]:
        return [
            copy.deepcopy(h)
            for (t, _), h in self.work["holds"].items()
            if t == team_id and h.status is HoldStatus.ACTIVE and h.expires_at <= now
        ]

    def next_due(self, team_id: str) -> datetime | None:
        found = [
            h.expires_at
            for (t, _), h in self.work["holds"].items()
            if t == team_id and h.status is HoldStatus.ACTIVE
        ]
        found += [
            g.expires_at
            for (t, _), g in self.work["grants"].items()
            if t == team_id and g.expires_at is not None and g.remaining > 0 and not g.closed
        ]
        return min(found) if found else None

    def save_book(self, book: TeamBook) -> None:
        new_grants, changed_grants, new_holds, changed_holds, entries = book.pending()
        grants, holds = self.work["grants"], self.work["holds"]
        for g in (*new_grants, *changed_grants):
            grants[(g.team_id, g.id)] = copy.deepcopy(g)
        for h in (*new_holds, *changed_holds):
            holds[(h.team_id, h.id)] = copy.deepcopy(h)
        self.work["entries"].extend(entries)
        book.clear_pending()

    def save_books(self, books: Iterable[TeamBook]) -> None:
        for book in books:
            self.save_book(book)

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
    ) -> list[Entry]:
        chosen = [
            e
            for e in self.work["entries"]
            if e.team_id == team_id
            and (before is None or e.id < before)
            and (feature is None or e.feature == feature)
            and (member_id is None or e.actor.member_id == member_id)
            and (kind is None or e.kind.value == kind)
            and (since is None or e.created_at >= since)
            and (until is None or e.created_at < until)
        ]
        chosen.sort(key=lambda e: e.id, reverse=True)
        return [e if with_postings else e._replace(postings=()) for e in chosen[:limit]]

    # ---- idempotency -------------------------------------------------------

    def get_idempotency(self, team_id: str, key: str) -> StoredReceipt | None:
        found = self.work["receipts"].get((team_id, key))
        if found is None:
            return None
        request_hash, operation, response, _ = found
        return request_hash, operation, copy.deepcopy(response)

    def put_idempotency(
        self,
        team_id: str,
        key: str,
        request_hash: str,
        operation: str,
        response: dict[str, Any],
        now: datetime,
    ) -> None:
        receipts = self.work["receipts"]
        if (team_id, key) in receipts:
            raise DuplicateKey(f"idempotency key {key!r} of team {team_id} is stored already")
        receipts[(team_id, key)] = (request_hash, operation, copy.deepcopy(response), now)

    def put_idempotency_many(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self.put_idempotency(
                row["team_id"],
                row["key"],
                row["request_hash"],
                row["operation"],
                row["response"],
                row["created_at"],
            )

    # ---- a batch of teams --------------------------------------------------

    def read_batch(
        self,
        team_ids: Iterable[str],
        keys: Iterable[tuple[str, str]],
        hold_keys: Iterable[tuple[str, str]],
        *,
        caps: bool = False,
    ) -> BatchReads:
        ids = sorted(set(team_ids))
        known = [t for t in ids if t in self.work["teams"]]
        due = {t: self.team_due_at(t) for t in known}
        stored: dict[tuple[str, str], StoredReceipt] = {}
        for team_id, key in keys:
            found = self.get_idempotency(team_id, key)
            if found is not None:
                stored[(team_id, key)] = found
        grants = {t: self.load_grants(t) for t in known}
        holds = {(t, h): hold for t, h in hold_keys if t in due for hold in self.load_holds(t, [h])}
        self.prefetched_settings = dict.fromkeys(known)
        if caps:
            self.prefetched_caps = {t: self.spending_caps(t) for t in known}
        return due, stored, grants, holds

    def write_batch_and_commit(
        self,
        books: Iterable[TeamBook],
        receipts: Sequence[dict[str, Any]],
        due: dict[str, datetime | None],
    ) -> None:
        self.save_books(books)
        self.set_due_at_many(due)
        self.put_idempotency_many(receipts)
        self.commit()
