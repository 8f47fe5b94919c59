"""The use cases of the credits engine: the typed Python API that everything else calls.

Each method that moves credits is one transaction on one team:

1. lock the team (serializes writers of that team on SQLite and PostgreSQL);
2. if an idempotency key was given and is known, answer the stored receipt
   (or refuse a different request with ``IdempotencyConflict``);
3. load the team's live grants into a ``TeamBook`` and bring it up to date
   (expired holds released, expired grants written off, period grants issued);
4. apply the command; a refusal raises before anything is written;
5. write the book's changes, the receipt under its key, and commit.

The HTTP API, the CLI and the dashboard are thin layers over this class.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import typing
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Engine

from creditbook.adapters.db.audit import AuditReport
from creditbook.adapters.db.audit import audit as run_audit
from creditbook.adapters.db.repository import SqlUnitOfWork
from creditbook.domain.book import Balance, ChargeResult, TeamBook
from creditbook.domain.catalog import Catalog
from creditbook.domain.clock import Clock, ensure_aware
from creditbook.domain.errors import (
    AlreadyExists,
    CreditbookError,
    GrantNotFound,
    HoldNotFound,
    IdempotencyConflict,
    InvalidInput,
    TeamNotFound,
)
from creditbook.domain.grants import Category, Grant, Source
from creditbook.domain.holds import Hold
from creditbook.domain.ids import new_id
from creditbook.domain.ledger import SYSTEM, Actor, Entry
from creditbook.domain.pricing import Call
from creditbook.domain.team import Member, Role, Team
from creditbook.service.group_commit import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_WAIT_MS,
    MAX_BATCH_ITEMS,
    ChargeItem,
    Command,
    GroupCommitter,
    run_batch,
)
from creditbook.service.receipts import (
    ChargeReceipt,
    Drawn,
    GrantReceipt,
    HoldReceipt,
    ReleaseReceipt,
    RevokeReceipt,
)

if typing.TYPE_CHECKING:
    from creditbook.service.notifications import NotificationService
    from creditbook.service.plans import Plans
    from creditbook.service.purchases import PurchaseService

MAX_KEY_LENGTH = 255
MAX_PAGE = 500


class Receipt(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Receipt)

UnitOfWorkFactory = Callable[[], SqlUnitOfWork]
CatchUpStep = Callable[[SqlUnitOfWork, TeamBook, datetime], None]
# Runs after a command was applied and before anything is written; raising
# refuses the command (spending caps). It sees the new entries in ``book.entries``.
SpendGuard = Callable[[SqlUnitOfWork, TeamBook], None]
DueStep = Callable[[SqlUnitOfWork, str, datetime], datetime | None]
# (team_id, operation, error): runs after a transaction refused with ``error`` rolled back.
RefusalHook = Callable[[str, str, "CreditbookError"], None]


@dataclass(frozen=True, slots=True)
class LedgerPage:
    entries: tuple[Entry, ...]
    next_cursor: str | None


# ``json.dumps`` with any non-default option builds a new encoder per call; one shared
# encoder writes the same text (stored hashes stay valid) without that cost per charge.
_CANONICAL = json.JSONEncoder(sort_keys=True, default=str)


def request_hash(operation: str, request: dict[str, Any]) -> str:
    canonical = _CANONICAL.encode({"op": operation, **request})
    return hashlib.sha256(canonical.encode()).hexdigest()


def actor_dict(actor: Actor) -> dict[str, str | None]:
    return {
        "member": actor.member_id,
        "key": actor.api_key_id,
        "job": actor.job_id,
        "operator": actor.operator,
    }


def check_time_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris' or 'UTC'",
            field="time_zone",
        ) from None
    return name


def check_email(email: str) -> str:
    try:
        return validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput(f"invalid email {email!r}: {exc}", field="email") from None


class Creditbook:
    """The credits engine. Build one with ``creditbook.open()``."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        catalog: Catalog,
        clock: Clock,
        engine: Engine | None = None,
    ) -> None:
        self.uow = uow_factory
        self.engine = engine
        self.catalog = catalog
        self.clock = clock
        # Extra rules run when a team is brought up to date (plans add theirs).
        self.catch_up_steps: list[CatchUpStep] = []
        self.due_steps: list[DueStep] = []
        self.spend_guards: list[SpendGuard] = []
        # Set by a spend guard that reads monthly caps (the access service's):
        # group commit then reads them with a batch that has a member's or a
        # key's charges or holds.
        self.guards_read_caps = False
        # Area services wired by ``creditbook.open`` (bootstrap).
        self._plans: Plans | None = None
        self._purchases: PurchaseService | None = None
        # Called after a refused transaction rolled back, and after a commit.
        self.refusal_hooks: list[RefusalHook] = []
        self.after_commit_hooks: list[Callable[[str], None]] = []
        # Group commit (``enable_group_commit``); CREDITBOOK_GROUP_COMMIT=1 turns it on
        # for every engine of the process (e.g. ``creditbook serve``).
        self.group_commit: GroupCommitter | None = None
        if os.environ.get("CREDITBOOK_GROUP_COMMIT", "").lower() in ("1", "true", "on", "yes"):
            self.enable_group_commit()

    # ---- group commit ----------------------------------------------------------

    def enable_group_commit(
        self,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        per_team: bool = False,
        on_loop: bool = False,
    ) -> GroupCommitter:
        """Coalesce concurrent charges, holds, captures and releases into shared transactions.

        Each call still returns only once its own transaction committed, with
        the same answers as without (see ``creditbook.service.group_commit``).
        ``max_batch`` bounds the commands per transaction; ``max_wait_ms`` bounds how
        long the committer waits, when the queue is empty, for callers the previous
        batch answered (a lone caller never waits; 0: never wait);
        ``per_team=True`` commits each team of a batch apart (one team per transaction);
        ``on_loop=True`` (PostgreSQL) batches the awaitable calls (``charge_async``
        & co.) on their own event loop, with an async connection per loop, instead
        of on the committer thread (``creditbook serve`` does: see decision 0008).
        """
        self.disable_group_commit()
        self.group_commit = GroupCommitter(
            self,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            per_team=per_team,
            on_loop=on_loop,
        )
        return self.group_commit

    def disable_group_commit(self) -> None:
        """Answer whatever is queued, then go back to one transaction per call."""
        group, self.group_commit = self.group_commit, None
        if group is not None:
            group.close()

    # ---- teams and members -------------------------------------------------

    def create_team(self, name: str, *, time_zone: str = "UTC", team_id: str | None = None) -> Team:
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("a team name is 1 to 200 characters", field="name")
        team = Team(
            id=team_id or new_id("team"),
            name=name,
            time_zone=check_time_zone(time_zone),
            created_at=self.clock.now(),
        )
        with self.uow() as uow:
            if uow.get_team(team.id) is not None:
                raise AlreadyExists(f"team {team.id!r} already exists", id=team.id)
            uow.add_team(team)
            uow.commit()
        return team

    def get_team(self, team_id: str) -> Team:
        with self.uow() as uow:
            team = uow.get_team(team_id)
        if team is None:
            raise TeamNotFound(team_id)
        return team

    def add_member(
        self,
        team_id: str,
        email: str,
        role: Role | str = Role.MEMBER,
        *,
        monthly_cap: int | None = None,
    ) -> Member:
        member = Member(
            id=new_id("mem"),
            team_id=team_id,
            email=check_email(email),
            role=role if isinstance(role, Role) else Role.parse(role),
            created_at=self.clock.now(),
            monthly_cap=monthly_cap,
        )
        with self.uow() as uow:
            uow.lock_team(team_id)
            if uow.find_member_by_email(team_id, member.email) is not None:
                raise AlreadyExists(
                    f"{member.email} is already a member of this team", email=member.email
                )
            uow.add_member(member)
            uow.commit()
        return member

    def members(self, team_id: str) -> list[Member]:
        with self.uow() as uow:
            if uow.get_team(team_id) is None:
                raise TeamNotFound(team_id)
            return uow.list_members(team_id)

    # ---- moving credits ------------------------------------------------------

    def grant(
        self,
        team_id: str,
        credits: int,
        *,
        category: Category | str = Category.FREE,
        source: Source | str = Source.GIFT,
        scope: list[str] | tuple[str, ...] | frozenset[str] | None = None,
        expires_at: datetime | None = None,
        effective_at: datetime | None = None,
        reason: str | None = None,
        origin: str | None = None,
        bucket: str | None = None,
        actor: Actor = SYSTEM,
        idempotency_key: str | None = None,
    ) -> GrantReceipt:
        """Give a team credits (a gift, an adjustment, a purchase's credits)."""
        cat = _parse_enum(Category, category, "category")
        src = _parse_enum(Source, source, "source")
        scope_set = frozenset(scope) if scope is not None else None
        chosen_bucket = bucket or _default_bucket(src, cat, scope_set)
        expires = ensure_aware(expires_at) if expires_at is not None else None
        effective = ensure_aware(effective_at) if effective_at is not None else None
        request = {
            "credits": credits,
            "category": cat.value,
            "source": src.value,
            "scope": sorted(scope_set) if scope_set is not None else None,
            "expires_at": expires,
            "effective_at": effective,
            "reason": reason,
            "origin": origin,
            "bucket": chosen_bucket,
            "actor": actor_dict(actor),
        }

        def apply(book: TeamBook, uow: SqlUnitOfWork) -> GrantReceipt:
            grant = book.issue(
                credits=credits,
                source=src,
                category=cat,
                bucket=chosen_bucket,
                scope=scope_set,
                effective_at=effective,
                expires_at=expires,
                origin=origin,
                actor=actor,
                memo=reason,
                idempotency_key=idempotency_key,
            )
            return _grant_receipt(grant, book.entries[-1].id)

        return self.transact(team_id, "grant", request, idempotency_key, apply, GrantReceipt)

    def charge(
        self,
        team_id: str,
        feature: str,
        *,
        quantity: int = 1,
        outcome: str | None = None,
        call: Call | None = None,
        actor: Actor = SYSTEM,
        idempotency_key: str | None = None,
    ) -> ChargeReceipt:
        """Charge a use whose outcome is known; a non-billable outcome costs 0."""
        request, apply = _charge_parts(feature, quantity, outcome, call, actor, idempotency_key)
        return self.transact(
            team_id, "charge", request, idempotency_key, apply, ChargeReceipt, groupable=True
        )

    async def charge_async(
        self,
        team_id: str,
        feature: str,
        *,
        quantity: int = 1,
        outcome: str | None = None,
        call: Call | None = None,
        actor: Actor = SYSTEM,
        idempotency_key: str | None = None,
    ) -> ChargeReceipt:
        """``charge`` for an event loop: the same charge, awaited instead of waited on.

        With group commit on, the caller's task waits for its batch without
        holding a thread (the HTTP API's path); without it, ``charge`` runs on a
        worker thread.
        """
        request, apply = _charge_parts(feature, quantity, outcome, call, actor, idempotency_key)
        return await self.transact_async(
            team_id, "charge", request, idempotency_key, apply, ChargeReceipt
        )

    def charge_many(
        self, team_id: str | None, items: typing.Sequence[ChargeItem]
    ) -> list[ChargeReceipt | CreditbookError]:
        """Many charges in ONE transaction; per item its receipt or the error it raised.

        ``team_id`` applies to items that name none. Items are applied in order
        (per team); one that fails leaves no trace and does not stop the
        others. Each item's idempotency key behaves as in ``charge``: a retry
        through ``charge`` or ``charge_many`` answers the first receipt.
        """
        if not 1 <= len(items) <= MAX_BATCH_ITEMS:
            raise InvalidInput(
                f"a batch has 1 to {MAX_BATCH_ITEMS} charges, got {len(items)}", field="items"
            )
        commands: list[Command | CreditbookError] = []
        digests: dict[tuple[Any, ...], tuple[str, ChargeItem]] = {}
        for index, item in enumerate(items):
            team = item.team_id or team_id
            key = item.idempotency_key
            if team is None:
                commands.append(
                    InvalidInput(
                        f"item {index} names no team and the batch has none", field="team_id"
                    )
                )
                continue
            if key is not None and not 1 <= len(key) <= MAX_KEY_LENGTH:
                commands.append(
                    InvalidInput(
                        f"an idempotency key is 1 to {MAX_KEY_LENGTH} characters",
                        field="idempotency_key",
                    )
                )
                continue
            request, apply = _charge_parts(
                item.feature, item.quantity, item.outcome, item.call, item.actor, key
            )
            digest = _item_digest(digests, item, request) if key else ""
            commands.append(Command(team, "charge", request, key, digest, apply))
        runnable = [c for c in commands if isinstance(c, Command)]
        outcomes = iter(run_batch(self, runnable))
        results: list[ChargeReceipt | CreditbookError] = []
        succeeded: dict[str, None] = {}
        for command in commands:
            if not isinstance(command, Command):
                results.append(command)
                continue
            outcome = next(outcomes)
            if outcome.error is not None:
                if not isinstance(outcome.error, CreditbookError):
                    raise outcome.error
                for on_refused in self.refusal_hooks:
                    on_refused(command.team_id, "charge", outcome.error)
                results.append(outcome.error)
            else:
                succeeded[command.team_id] = None
                results.append(outcome.value(ChargeReceipt))
        for team in succeeded:
            for after in self.after_commit_hooks:
                after(team)
        return results

    def hold(
        self,
        team_id: str,
        feature: str,
        *,
        quantity: int = 1,
        ttl_seconds: int | None = None,
        call: Call | None = None,
        actor: Actor = SYSTEM,
        idempotency_key: str | None = None,
    ) -> HoldReceipt:
        """Reserve the most the work can cost, before doing it."""
        request, apply = _hold_parts(feature, quantity, ttl_seconds, call, actor, idempotency_key)
        return self.transact(
            team_id, "hold", request, idempotency_key, apply, HoldReceipt, groupable=True
        )

    async def hold_async(
        self,
        team_id: str,
        feature: str,
        *,
        quantity: int = 1,
        ttl_seconds: int | None = None,
        call: Call | None = None,
        actor: Actor = SYSTEM,
        idempotency_key: str | None = None,
    ) -> HoldReceipt:
        """``hold`` for an event loop (see ``charge_async``)."""
        request, apply = _hold_parts(feature, quantity, ttl_seconds, call, actor, idempotency_key)
        return await self.transact_async(
            team_id, "hold", request, idempotency_key, apply, HoldReceipt
        )

    def capture(
        self,
        team_id: str,
        hold_id: str,
        *,
        outcome: str | None = None,
        quantity: int | None = None,
        call: Call | None = None,
        actor: Actor | None = None,
        placed_by: str | None = None,
        idempotency_key: str | None = None,
    ) -> ChargeReceipt:
        """Charge what the held work cost (at most the held amount).

        The capture is booked to the hold's owner, the member and key that
        placed it, and counts against their caps, whoever settles it; ``actor``
        is who settles, recorded with the entry when it is not the owner.
        ``placed_by=<member id>`` settles the hold only if that member placed
        it: any other hold answers ``HoldNotFound``, exactly as a hold of
        another team (the API passes it for a member's key; trusted code,
        admins and service keys leave it out and settle any hold of the team).
        """
        request, apply = _capture_parts(
            hold_id, outcome, quantity, call, actor, placed_by, idempotency_key
        )
        return self.transact(
            team_id,
            "capture",
            request,
            idempotency_key,
            apply,
            ChargeReceipt,
            hold_ids=[hold_id],
            groupable=True,
        )

    async def capture_async(
        self,
        team_id: str,
        hold_id: str,
        *,
        outcome: str | None = None,
        quantity: int | None = None,
        call: Call | None = None,
        actor: Actor | None = None,
        placed_by: str | None = None,
        idempotency_key: str | None = None,
    ) -> ChargeReceipt:
        """``capture`` for an event loop (see ``charge_async``)."""
        request, apply = _capture_parts(
            hold_id, outcome, quantity, call, actor, placed_by, idempotency_key
        )
        return await self.transact_async(
            team_id, "capture", request, idempotency_key, apply, ChargeReceipt, hold_ids=[hold_id]
        )

    def release(
        self,
        team_id: str,
        hold_id: str,
        *,
        actor: Actor | None = None,
        placed_by: str | None = None,
        idempotency_key: str | None = None,
    ) -> ReleaseReceipt:
        """Give back every credit a hold reserved.

        Booked to the hold's owner; ``actor`` and ``placed_by`` as for ``capture``.
        """
        request, apply = _release_parts(hold_id, actor, placed_by, idempotency_key)
        return self.transact(
            team_id,
            "release",
            request,
            idempotency_key,
            apply,
            ReleaseReceipt,
            hold_ids=[hold_id],
            groupable=True,
        )

    async def release_async(
        self,
        team_id: str,
        hold_id: str,
        *,
        actor: Actor | None = None,
        placed_by: str | None = None,
        idempotency_key: str | None = None,
    ) -> ReleaseReceipt:
        """``release`` for an event loop (see ``charge_async``)."""
        request, apply = _release_parts(hold_id, actor, placed_by, idempotency_key)
        return await self.transact_async(
            team_id, "release", request, idempotency_key, apply, ReleaseReceipt, hold_ids=[hold_id]
        )

    def revoke(
        self,
        team_id: str,
        grant_id: str,
        credits: int | None = None,
        *,
        reason: str | None = None,
        actor: Actor = SYSTEM,
        idempotency_key: str | None = None,
    ) -> RevokeReceipt:
        """Take back what is left of a grant (never more): refunds, clawbacks."""
        request = {
            "grant_id": grant_id,
            "credits": credits,
            "reason": reason,
            "actor": actor_dict(actor),
        }

        def apply(book: TeamBook, uow: SqlUnitOfWork) -> RevokeReceipt:
            if grant_id not in book.grants:
                # Spent-out grants are not loaded with the book; nothing is left in them.
                spent = uow.get_grant(team_id, grant_id)
                if spent is None:
                    raise GrantNotFound(grant_id)
                book.grants[spent.id] = spent
            entry = book.revoke(
                grant_id, credits, actor=actor, memo=reason, idempotency_key=idempotency_key
            )
            return RevokeReceipt(grant_id, team_id, entry.credits, entry.id)

        return self.transact(team_id, "revoke", request, idempotency_key, apply, RevokeReceipt)

    # ---- reading -------------------------------------------------------------

    def balance(self, team_id: str) -> Balance:
        """Available credits by bucket, reserved credits, what expires when."""
        with self.uow() as uow:
            book, ran = self.open_book(uow, team_id)
            self.finish(uow, book, ran_catch_up=ran)
            uow.commit()
        return book.balance()

    def available(self, team_id: str, feature: str) -> int:
        """Credits that could pay for ``feature`` now."""
        self.catalog.feature(feature)
        with self.uow() as uow:
            book, ran = self.open_book(uow, team_id)
            self.finish(uow, book, ran_catch_up=ran)
            uow.commit()
        return book.available_for(feature)

    def grants(self, team_id: str, *, include_spent: bool = False) -> list[Grant]:
        """The team's grants, oldest first; spent-out ones only when asked."""
        with self.uow() as uow:
            book, ran = self.open_book(uow, team_id)
            self.finish(uow, book, ran_catch_up=ran)
            found = uow.load_grants(team_id, live_only=not include_spent)
            uow.commit()
        return sorted(found, key=lambda g: (g.created_at, g.id))

    def get_hold(self, team_id: str, hold_id: str, *, placed_by: str | None = None) -> Hold:
        """A hold as it stands now (a hold past its TTL reads as expired).

        ``placed_by``: only a hold that member placed, as for ``capture``.
        """
        with self.uow() as uow:
            book, ran = self.open_book(uow, team_id)
            self.finish(uow, book, ran_catch_up=ran)
            found = uow.load_holds(team_id, [hold_id])
            uow.commit()
        if not found or not _placed_by(found[0], placed_by):
            raise HoldNotFound(hold_id)
        return found[0]

    def ledger(
        self,
        team_id: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        feature: str | None = None,
        member_id: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> LedgerPage:
        """Entries newest first; pass ``next_cursor`` back for the next page."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        with self.uow() as uow:
            if uow.get_team(team_id) is None:
                raise TeamNotFound(team_id)
            rows = uow.list_entries(
                team_id,
                limit=limit + 1,
                before=cursor,
                feature=feature,
                member_id=member_id,
                kind=kind,
                since=ensure_aware(since) if since else None,
                until=ensure_aware(until) if until else None,
            )
        more = len(rows) > limit
        page = rows[:limit]
        return LedgerPage(tuple(page), page[-1].id if more and page else None)

    def audit(self, team_id: str | None = None) -> AuditReport:
        """Recompute every balance from the ledger; ``report.clean`` when all agree.

        On PostgreSQL the audit reads one REPEATABLE READ snapshot, so charges
        committing while it runs cannot make grants and postings look apart.
        (SQLite's transaction already holds the database lock.)
        """
        if self.engine is not None and self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    return run_audit(conn, team_id)
        with self.uow() as uow:
            return run_audit(uow.conn, team_id)

    # ---- area services -----------------------------------------------------------

    @property
    def plans(self) -> Plans:
        """Plans, seats and billing periods (``creditbook.service.plans``)."""
        if self._plans is None:
            raise RuntimeError("plans are not wired: build the engine with creditbook.open()")
        return self._plans

    @plans.setter
    def plans(self, service: Plans) -> None:
        self._plans = service

    @property
    def purchases(self) -> PurchaseService:
        """Buying credits, refunds, auto-recharge and alerts (``creditbook.service.purchases``).

        ``creditbook.open`` wires it with the configured payment provider; an
        engine built by hand gets one on the ``manual`` provider on first use.
        """
        if self._purchases is None:
            from creditbook.service.purchases import install

            self._purchases = install(self)
        return self._purchases

    @purchases.setter
    def purchases(self, service: PurchaseService) -> None:
        self._purchases = service

    @property
    def notifications(self) -> NotificationService:
        """The team alerts: outbox, webhook delivery, in-app list; ``notify()`` for others."""
        return self.purchases.notifications

    # ---- keeping teams up to date ------------------------------------------------

    def catch_up(self, team_id: str) -> int:
        """Apply whatever is due for one team now; returns the entries written."""
        with self.uow() as uow:
            book, ran = self.open_book(uow, team_id)
            written = len(book.entries)
            self.finish(uow, book, ran_catch_up=ran)
            uow.commit()
        return written

    def tick(
        self,
        *,
        on_team: Callable[[str], None] | None = None,
        batch_size: int = 500,
        processes: int = 1,
    ) -> int:
        """Bring every team whose ``due_at`` has passed up to date; returns how many.

        Teams are swept in batches (see ``creditbook.service.sweep``).
        ``processes > 1`` runs that many sweeping processes at once on
        PostgreSQL; SQLite has one writer at a time, so there it is clamped to 1
        (with a warning logged).
        """
        import logging

        from creditbook.service.sweep import sweep_parallel

        if processes < 1:
            raise InvalidInput("processes must be at least 1", field="processes")
        if processes > 1 and not self.parallel_tick_supported():
            logging.getLogger(__name__).warning(
                "tick: %d processes asked, running 1: SQLite allows one writer at a time "
                "(parallel sweeping needs PostgreSQL)",
                processes,
            )
            processes = 1
        return sweep_parallel(self, processes=processes, batch_size=batch_size, on_team=on_team)

    def parallel_tick_supported(self) -> bool:
        """Whether ``tick(processes=N)`` can run N sweepers (PostgreSQL only)."""
        return self.engine is not None and self.engine.dialect.name == "postgresql"

    # ---- the transaction ------------------------------------------------------------

    def transact(
        self,
        team_id: str,
        operation: str,
        request: dict[str, Any],
        idempotency_key: str | None,
        apply: Callable[[TeamBook, SqlUnitOfWork], R],
        receipt_type: type[R],
        *,
        hold_ids: list[str] | None = None,
        groupable: bool = False,
    ) -> R:
        """Run ``apply`` on the team's up-to-date book in one transaction.

        The building block of every use case that changes a team (area
        services such as plans and purchases use it too): locks the team,
        answers a known idempotency key with its stored receipt, runs the
        spend guards, writes the book and the receipt, commits.
        ``receipt_type`` needs ``to_dict`` and a ``from_dict`` classmethod.
        ``groupable=True`` (charges, holds, captures, releases: ``apply`` only
        touches the book) lets group commit, when enabled, share the transaction.
        """
        digest = _checked_digest(operation, request, idempotency_key)
        group = self.group_commit if groupable else None
        if group is not None and group.in_committer():
            group = None
        try:
            if group is not None:
                command = Command(
                    team_id, operation, request, idempotency_key, digest, apply, hold_ids
                )
                # The committer thread runs the after-commit hooks of its batches.
                answer: R = group.submit(command).result().value(receipt_type)
                return answer
            data = self.run_transaction(
                team_id, operation, idempotency_key, digest, apply, hold_ids=hold_ids
            )
        except CreditbookError as exc:
            # After the rollback (the team lock is free again): refusals worth
            # remembering, such as the "depleted" alert, are written here.
            self._refused(team_id, operation, exc)
            raise
        # Work decided inside the transaction that must run outside it (auto-recharge).
        for after in self.after_commit_hooks:
            after(team_id)
        return receipt_type.from_dict(data)  # type: ignore[attr-defined,no-any-return]

    async def transact_async(
        self,
        team_id: str,
        operation: str,
        request: dict[str, Any],
        idempotency_key: str | None,
        apply: Callable[[TeamBook, SqlUnitOfWork], R],
        receipt_type: type[R],
        *,
        hold_ids: list[str] | None = None,
    ) -> R:
        """``transact`` (groupable) for an event loop.

        With group commit on, the command joins the next batch and the task
        awaits its answer, so a server holds no thread per request in flight;
        without group commit, ``transact`` runs on a worker thread.
        """
        group = self.group_commit
        if group is None:
            return await asyncio.to_thread(
                self.transact,
                team_id,
                operation,
                request,
                idempotency_key,
                apply,
                receipt_type,
                hold_ids=hold_ids,
                groupable=True,
            )
        digest = _checked_digest(operation, request, idempotency_key)
        command = Command(team_id, operation, request, idempotency_key, digest, apply, hold_ids)
        try:
            outcome = await group.submit_async(command)
            answer: R = outcome.value(receipt_type)
            return answer
        except CreditbookError as exc:
            if self.refusal_hooks:  # they write to the database: not on the event loop
                await asyncio.to_thread(self._refused, team_id, operation, exc)
            raise

    def _refused(self, team_id: str, operation: str, exc: CreditbookError) -> None:
        for on_refused in self.refusal_hooks:
            on_refused(team_id, operation, exc)

    def run_transaction(
        self,
        team_id: str,
        operation: str,
        idempotency_key: str | None,
        digest: str,
        apply: Callable[[TeamBook, SqlUnitOfWork], Receipt],
        *,
        hold_ids: list[str] | None = None,
    ) -> dict[str, Any]:
        """The body of ``transact`` without its hooks: one transaction; the receipt's dict."""
        with self.uow() as uow:
            due_at = uow.lock_team(team_id)
            if idempotency_key is not None:
                stored = uow.get_idempotency(team_id, idempotency_key)
                if stored is not None:
                    stored_hash, _, response = stored
                    if stored_hash != digest:
                        raise IdempotencyConflict(idempotency_key)
                    return response
            book, ran = self.open_book(uow, team_id, due_at=due_at, locked=True, hold_ids=hold_ids)
            receipt = apply(book, uow)
            for guard in self.spend_guards:
                guard(uow, book)
            self.finish(uow, book, ran_catch_up=ran, due_at=due_at)
            data = receipt.to_dict()
            if idempotency_key is not None:
                uow.put_idempotency(
                    team_id, idempotency_key, digest, operation, data, self.clock.now()
                )
            uow.commit()
        return data

    def open_book(
        self,
        uow: SqlUnitOfWork,
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
        book = TeamBook.load(team_id, self.catalog, now, uow.load_grants(team_id))
        if hold_ids:
            for hold in uow.load_holds(team_id, hold_ids):
                book.holds[hold.id] = hold
        if due_at is not None and due_at <= now:
            for hold in uow.load_due_holds(team_id, now):
                book.holds.setdefault(hold.id, hold)
            book.expire_holds()
            book.expire_grants()
            for step in self.catch_up_steps:
                step(uow, book, now)
            return book, True
        return book, False

    def finish(
        self,
        uow: SqlUnitOfWork,
        book: TeamBook,
        *,
        ran_catch_up: bool,
        due_at: datetime | None = None,
    ) -> None:
        """Write the book's changes and move the team's ``due_at`` if needed."""
        new_grants, _, new_holds, _, _ = book.pending()
        uow.save_book(book)
        if ran_catch_up:
            new_due = uow.next_due(book.team_id)
            for step in self.due_steps:
                extra = step(uow, book.team_id, book.now)
                if extra is not None and (new_due is None or extra < new_due):
                    new_due = extra
            uow.set_due_at(book.team_id, new_due)
            return
        candidates = [h.expires_at for h in new_holds]
        candidates += [g.expires_at for g in new_grants if g.expires_at is not None]
        if not candidates:
            return
        earliest = min(candidates)
        current = due_at if due_at is not None else uow.team_due_at(book.team_id)
        if current is None or earliest < current:
            uow.set_due_at(book.team_id, earliest)


def _parse_enum(kind: Any, value: Any, field: str) -> Any:
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except ValueError:
        valid = ", ".join(m.value for m in kind)
        raise InvalidInput(f"unknown {field} {value!r}; valid: {valid}", field=field) from None


def _default_bucket(source: Source, category: Category, scope: frozenset[str] | None) -> str:
    if category is Category.PURCHASED:
        return "purchased"
    if source is Source.TRIAL:
        return "trial"
    if source in (Source.GIFT, Source.ADJUSTMENT):
        return "gifted"
    if scope == frozenset({"calling"}):
        return "calling"
    return "subscription"


def _call_dict(call: Call | None) -> dict[str, Any] | None:
    if call is None:
        return None
    return {
        "duration_seconds": call.duration_seconds,
        "answered": call.answered,
        "destination": call.destination,
    }


def _item_digest(
    digests: dict[tuple[Any, ...], tuple[str, ChargeItem]],
    item: ChargeItem,
    request: dict[str, Any],
) -> str:
    """The hash of a ``charge_many`` item's request, once per distinct request of the call.

    A batch mostly repeats one request under many keys (one feature, outcome
    and actor): hashing each was 7% of a SQLite ``charge_many``'s time
    (decision 0008). Remembered by what makes the request's
    text: the feature, the quantity and the outcome by value, the call and the
    actor by identity (the same objects). Values that compare equal but encode
    apart (``True == 1``) must not share a hash, so a quantity that is not an
    ``int`` is hashed on its own, and equal calls or actors that are different
    objects are hashed apart.
    """
    if type(item.quantity) is not int:
        return request_hash("charge", request)
    what = (item.feature, item.quantity, item.outcome, id(item.call), id(item.actor))
    try:
        found = digests.get(what)
    except TypeError:  # an unhashable feature or outcome, which the item's checks refuse
        return request_hash("charge", request)
    if found is None:
        # Keeping the item keeps its call and actor alive: their ids stay theirs
        # for the whole call, even if ``items`` makes its items as it is read.
        found = digests[what] = (request_hash("charge", request), item)
    return found[0]


def _checked_digest(operation: str, request: dict[str, Any], idempotency_key: str | None) -> str:
    """The request's hash for its idempotency key ("" without one); checks the key."""
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_KEY_LENGTH:
        raise InvalidInput(
            f"an idempotency key is 1 to {MAX_KEY_LENGTH} characters", field="idempotency_key"
        )
    return request_hash(operation, request) if idempotency_key else ""


def _charge_parts(
    feature: str,
    quantity: int,
    outcome: str | None,
    call: Call | None,
    actor: Actor,
    idempotency_key: str | None,
) -> tuple[dict[str, Any], Callable[[TeamBook, SqlUnitOfWork], ChargeReceipt]]:
    """A charge's request (hashed for idempotency) and the function applying it to a book."""
    request = {
        "feature": feature,
        "quantity": quantity,
        "outcome": outcome,
        "call": _call_dict(call),
        "actor": actor_dict(actor),
    }

    def apply(book: TeamBook, uow: SqlUnitOfWork) -> ChargeReceipt:
        result = book.charge(
            feature,
            quantity=quantity,
            outcome=outcome,
            call=call,
            actor=actor,
            idempotency_key=idempotency_key,
        )
        return _charge_receipt(book, result)

    return request, apply


def _hold_parts(
    feature: str,
    quantity: int,
    ttl_seconds: int | None,
    call: Call | None,
    actor: Actor,
    idempotency_key: str | None,
) -> tuple[dict[str, Any], Callable[[TeamBook, SqlUnitOfWork], HoldReceipt]]:
    """A hold's request (hashed for idempotency) and the function applying it to a book."""
    request = {
        "feature": feature,
        "quantity": quantity,
        "ttl_seconds": ttl_seconds,
        "call": _call_dict(call),
        "actor": actor_dict(actor),
    }

    def apply(book: TeamBook, uow: SqlUnitOfWork) -> HoldReceipt:
        hold = book.hold(
            feature,
            quantity=quantity,
            ttl_seconds=ttl_seconds,
            call=call,
            actor=actor,
            idempotency_key=idempotency_key,
        )
        return _hold_receipt(book, hold)

    return request, apply


def _capture_parts(
    hold_id: str,
    outcome: str | None,
    quantity: int | None,
    call: Call | None,
    actor: Actor | None,
    placed_by: str | None,
    idempotency_key: str | None,
) -> tuple[dict[str, Any], Callable[[TeamBook, SqlUnitOfWork], ChargeReceipt]]:
    """A capture's request and the function applying it to a book.

    ``placed_by`` is not part of the request's hash: it follows from the
    calling key, which is (a retry with the key answers the stored receipt).
    """
    request = {
        "hold_id": hold_id,
        "outcome": outcome,
        "quantity": quantity,
        "call": _call_dict(call),
        "actor": actor_dict(actor) if actor else None,
    }

    def apply(book: TeamBook, uow: SqlUnitOfWork) -> ChargeReceipt:
        hold = _hold_in(book, hold_id, placed_by)
        result = book.capture(
            hold,
            outcome=outcome,
            quantity=quantity,
            call=call,
            settled_by=actor,
            idempotency_key=idempotency_key,
        )
        return _charge_receipt(book, result, hold=hold)

    return request, apply


def _release_parts(
    hold_id: str, actor: Actor | None, placed_by: str | None, idempotency_key: str | None
) -> tuple[dict[str, Any], Callable[[TeamBook, SqlUnitOfWork], ReleaseReceipt]]:
    """A release's request and the function applying it to a book (``placed_by``: see capture)."""
    request = {"hold_id": hold_id, "actor": actor_dict(actor) if actor else None}

    def apply(book: TeamBook, uow: SqlUnitOfWork) -> ReleaseReceipt:
        hold = _hold_in(book, hold_id, placed_by)
        entry = book.release(hold, settled_by=actor, idempotency_key=idempotency_key)
        return ReleaseReceipt(hold.id, book.team_id, hold.amount, hold.status.value, entry.id)

    return request, apply


def _hold_in(book: TeamBook, hold_id: str, placed_by: str | None) -> Hold:
    """The hold as the team's transaction loaded it, if the caller may settle it.

    The check runs here, in the transaction that loaded the hold (alone, in a
    batch of the committer thread or of the event loop alike), and reads
    nothing more: a hold out of reach is the same ``HoldNotFound`` as one
    that does not exist, before its status is looked at.
    """
    hold = book.holds.get(hold_id)
    if hold is None or not _placed_by(hold, placed_by):
        raise HoldNotFound(hold_id)
    return hold


def _placed_by(hold: Hold, member_id: str | None) -> bool:
    """Whether ``member_id`` placed the hold (None: anyone of the team may reach it)."""
    return member_id is None or hold.actor.member_id == member_id


def _drawn(book: TeamBook, amounts: dict[str, int]) -> tuple[Drawn, ...]:
    out = []
    for grant_id, credits in amounts.items():
        g = book.grants[grant_id]
        out.append(Drawn(grant_id, credits, g.category.value, g.bucket))
    return tuple(out)


def _charge_receipt(
    book: TeamBook, result: ChargeResult, hold: Hold | None = None
) -> ChargeReceipt:
    q = result.quote
    return ChargeReceipt(
        charge_id=result.entry.id,
        team_id=book.team_id,
        feature=q.feature,
        outcome=q.outcome,
        quantity=q.quantity,
        unit_cost=q.unit_cost,
        multiplier=q.multiplier,
        credits=result.credits,
        grants=_drawn(book, result.grants),
        created_at=result.entry.created_at,
        hold_id=hold.id if hold else None,
        returned=hold.amount - result.credits if hold else 0,
    )


def _hold_receipt(book: TeamBook, hold: Hold) -> HoldReceipt:
    return HoldReceipt(
        hold_id=hold.id,
        team_id=book.team_id,
        feature=hold.feature,
        credits=hold.amount,
        quantity=hold.quantity,
        expires_at=hold.expires_at,
        status=hold.status.value,
        grants=_drawn(book, dict(hold.allocations)),
    )


def _grant_receipt(grant: Grant, entry_id: str) -> GrantReceipt:
    return GrantReceipt(
        grant_id=grant.id,
        team_id=grant.team_id,
        credits=grant.amount,
        category=grant.category.value,
        source=grant.source.value,
        bucket=grant.bucket,
        scope=tuple(sorted(grant.scope)) if grant.scope is not None else None,
        effective_at=grant.effective_at,
        expires_at=grant.expires_at,
        entry_id=entry_id,
    )
