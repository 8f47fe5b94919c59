"""The spend use cases over the kernel: grant, charge, hold, capture, release, revoke, reads.

Each method that moves credits builds its request (``service/requests.py``)
and hands it to the kernel: one team transaction, alone or, with group
commit on, in a shared batch. ``charge_many`` runs an explicit batch through
the kernel in the caller's thread. The reads bring the team up to date
first (a hold past its TTL reads as expired).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from creditbook.domain.book import Balance, TeamBook
from creditbook.domain.clock import ensure_aware
from creditbook.domain.errors import (
    CreditbookError,
    GrantNotFound,
    HoldNotFound,
    InvalidInput,
    TeamNotFound,
)
from creditbook.domain.grants import Category, Grant, Source
from creditbook.domain.holds import Hold
from creditbook.domain.ledger import SYSTEM, Actor, Entry
from creditbook.domain.limits import MAX_PAGE
from creditbook.domain.pricing import Call
from creditbook.service.kernel import Kernel
from creditbook.service.ports import UnitOfWork
from creditbook.service.receipts import (
    ChargeReceipt,
    GrantReceipt,
    HoldReceipt,
    ReleaseReceipt,
    RevokeReceipt,
)
from creditbook.service.requests import (
    MAX_BATCH_ITEMS,
    MAX_KEY_LENGTH,
    CaptureRequest,
    ChargeItem,
    ChargeRequest,
    Command,
    HoldRequest,
    ReleaseRequest,
    SpendRequest,
    actor_dict,
    placed_by_member,
    request_hash,
)


@dataclass(frozen=True, slots=True)
class LedgerPage:
    entries: tuple[Entry, ...]
    next_cursor: str | None


class Spending:
    """Credits moved and read for teams, through one kernel."""

    def __init__(self, kernel: Kernel[Any]) -> None:
        self.kernel = kernel

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

        def apply(book: TeamBook, uow: UnitOfWork) -> GrantReceipt:
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

        return self.kernel.transact(team_id, "grant", request, idempotency_key, apply, GrantReceipt)

    def run(self, request: SpendRequest) -> Any:
        """Run a built spend request (what the HTTP routes do); its receipt."""
        return self.kernel.run(request)

    async def run_async(self, request: SpendRequest) -> Any:
        """``run`` for an event loop (see ``charge_async``)."""
        return await self.kernel.run_async(request)

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
        request = ChargeRequest(team_id, feature, quantity, outcome, call, actor, idempotency_key)
        receipt: ChargeReceipt = self.kernel.run(request)
        return receipt

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
        request = ChargeRequest(team_id, feature, quantity, outcome, call, actor, idempotency_key)
        receipt: ChargeReceipt = await self.kernel.run_async(request)
        return receipt

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
        request = HoldRequest(team_id, feature, quantity, ttl_seconds, call, actor, idempotency_key)
        receipt: HoldReceipt = self.kernel.run(request)
        return receipt

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
        request = HoldRequest(team_id, feature, quantity, ttl_seconds, call, actor, idempotency_key)
        receipt: HoldReceipt = await self.kernel.run_async(request)
        return receipt

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
        request = CaptureRequest(
            team_id, hold_id, outcome, quantity, call, actor, placed_by, idempotency_key
        )
        receipt: ChargeReceipt = self.kernel.run(request)
        return receipt

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
        request = CaptureRequest(
            team_id, hold_id, outcome, quantity, call, actor, placed_by, idempotency_key
        )
        receipt: ChargeReceipt = await self.kernel.run_async(request)
        return receipt

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
        request = ReleaseRequest(team_id, hold_id, actor, placed_by, idempotency_key)
        receipt: ReleaseReceipt = self.kernel.run(request)
        return receipt

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
        request = ReleaseRequest(team_id, hold_id, actor, placed_by, idempotency_key)
        receipt: ReleaseReceipt = await self.kernel.run_async(request)
        return receipt

    def charge_many(
        self, team_id: str | None, items: typing.Sequence[ChargeItem | ChargeRequest]
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
        digests: dict[tuple[Any, ...], tuple[str, ChargeRequest]] = {}
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
            request = item.request(team) if isinstance(item, ChargeItem) else item
            commands.append(request.command(_item_digest(digests, request) if key else ""))
        runnable = [c for c in commands if isinstance(c, Command)]
        kernel = self.kernel
        outcomes = iter(kernel.run_batch(runnable))
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
                kernel.refused(command.team_id, "charge", outcome.error)
                results.append(outcome.error)
            else:
                succeeded[command.team_id] = None
                results.append(outcome.value(ChargeReceipt))
        for team in succeeded:
            kernel.committed(team)
        return results

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

        def apply(book: TeamBook, uow: UnitOfWork) -> RevokeReceipt:
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

        return self.kernel.transact(
            team_id, "revoke", request, idempotency_key, apply, RevokeReceipt
        )

    # ---- reading -------------------------------------------------------------

    def _current(self, uow: UnitOfWork, team_id: str) -> TeamBook:
        """The team's book brought up to date (and what that wrote, written)."""
        kernel = self.kernel
        book, ran = kernel.open_book(uow, team_id)
        kernel.finish(uow, book, ran_catch_up=ran)
        return book

    def balance(self, team_id: str) -> Balance:
        """Available credits by bucket, reserved credits, what expires when."""
        with self.kernel.uow() as uow:
            book = self._current(uow, team_id)
            uow.commit()
        return book.balance()

    def available(self, team_id: str, feature: str) -> int:
        """Credits that could pay for ``feature`` now."""
        self.kernel.catalog.feature(feature)
        with self.kernel.uow() as uow:
            book = self._current(uow, team_id)
            uow.commit()
        return book.available_for(feature)

    def grants(self, team_id: str, *, include_spent: bool = False) -> list[Grant]:
        """The team's grants, oldest first; spent-out ones only when asked."""
        with self.kernel.uow() as uow:
            self._current(uow, team_id)
            found = uow.load_grants(team_id, live_only=not include_spent)
            uow.commit()
        return sorted(found, key=lambda g: (g.created_at, g.id))

    def get_hold(self, team_id: str, hold_id: str, *, placed_by: str | None = None) -> Hold:
        """A hold as it stands now (a hold past its TTL reads as expired).

        ``placed_by``: only a hold that member placed, as for ``capture``.
        """
        with self.kernel.uow() as uow:
            self._current(uow, team_id)
            found: list[Hold] = uow.load_holds(team_id, [hold_id])
            uow.commit()
        if not found or not placed_by_member(found[0], placed_by):
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
        with self.kernel.uow() as uow:
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


def _item_digest(
    digests: dict[tuple[Any, ...], tuple[str, ChargeRequest]], item: ChargeRequest
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
        return request_hash("charge", item.canonical())
    what = (item.feature, item.quantity, item.outcome, id(item.call), id(item.actor))
    try:
        found = digests.get(what)
    except TypeError:  # an unhashable feature or outcome, which the item's checks refuse
        return request_hash("charge", item.canonical())
    if found is None:
        # Keeping the request keeps its call and actor alive: their ids stay theirs
        # for the whole call, even if ``items`` makes its items as it is read.
        found = digests[what] = (request_hash("charge", item.canonical()), item)
    return found[0]


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
