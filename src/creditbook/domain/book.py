"""TeamBook: one team's credits as an aggregate, and every rule that moves them.

The service layer loads a team's live grants into a ``TeamBook`` inside a
transaction that locks the team, calls its methods, then persists what the
book changed (``changed_grants``, ``new_holds``, ``changed_holds``,
``entries``). Several commands may be applied to one book before it is
persisted: that is how a batch of charges becomes one transaction.

Every method either raises a ``CreditbookError`` having changed nothing, or
applies its whole effect and appends balanced entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from creditbook.domain import grants as grant_rules
from creditbook.domain.catalog import Catalog
from creditbook.domain.errors import (
    CaptureExceedsHold,
    GrantNotFound,
    HoldNotActive,
    InsufficientCredits,
    InvalidAmount,
    InvalidInput,
    InvalidQuantity,
)
from creditbook.domain.grants import Category, Grant, Source
from creditbook.domain.holds import Hold, HoldStatus, split_capture
from creditbook.domain.ids import new_id
from creditbook.domain.ledger import SYSTEM, Account, Actor, Entry, EntryKind, Posting
from creditbook.domain.pricing import Call, Quote, max_quote, quote

BUCKETS = ("trial", "subscription", "calling", "gifted", "purchased")


@dataclass(frozen=True, slots=True)
class NewGrant:
    """What ``TeamBook.issue_all`` creates: a grant's terms before it has an id."""

    credits: int
    source: Source
    category: Category
    bucket: str
    scope: frozenset[str] | None = None
    effective_at: datetime | None = None  # None: the book's now
    expires_at: datetime | None = None
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class Expiring:
    credits: int
    expires_at: datetime
    bucket: str


@dataclass(frozen=True, slots=True)
class Balance:
    """What a team can spend now, by bucket, and what is reserved or expiring."""

    available: int
    reserved: int
    buckets: dict[str, int]
    expiring: tuple[Expiring, ...]


@dataclass(frozen=True, slots=True)
class ChargeResult:
    entry: Entry
    quote: Quote

    @property
    def credits(self) -> int:
        return self.entry.credits

    @property
    def grants(self) -> dict[str, int]:
        return self.entry.drawn() if self.entry.kind is EntryKind.CHARGE else self.used()

    def used(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.entry.postings:
            if p.account is Account.USED:
                out[p.grant_id] = out.get(p.grant_id, 0) + p.amount
        return out


@dataclass(frozen=True, slots=True)
class BookMark:
    """A TeamBook's state at one point (``TeamBook.savepoint``)."""

    entries: int
    grants: dict[str, tuple[int, int, bool]]
    holds: dict[str, tuple[HoldStatus, int, datetime | None]]
    marks: tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[str]]


@dataclass
class TeamBook:
    team_id: str
    catalog: Catalog
    now: datetime
    grants: dict[str, Grant] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    new_grants: set[str] = field(default_factory=set)
    changed_grants: set[str] = field(default_factory=set)
    new_holds: set[str] = field(default_factory=set)
    changed_holds: set[str] = field(default_factory=set)

    @classmethod
    def load(
        cls,
        team_id: str,
        catalog: Catalog,
        now: datetime,
        grants: Iterable[Grant],
        holds: Iterable[Hold] = (),
    ) -> TeamBook:
        return cls(
            team_id=team_id,
            catalog=catalog,
            now=now,
            grants={g.id: g for g in grants},
            holds={h.id: h for h in holds},
        )

    # ---- reading -------------------------------------------------------

    def available_for(self, feature: str) -> int:
        return grant_rules.available_for(self.grants.values(), feature, self.now)

    def balance(self) -> Balance:
        buckets = dict.fromkeys(BUCKETS, 0)
        reserved = 0
        expiring: dict[tuple[datetime, str], int] = {}
        for g in self.grants.values():
            reserved += g.reserved
            if not g.is_usable(self.now) or g.available <= 0:
                continue
            buckets[g.bucket] = buckets.get(g.bucket, 0) + g.available
            if g.expires_at is not None:
                key = (g.expires_at, g.bucket)
                expiring[key] = expiring.get(key, 0) + g.available
        return Balance(
            available=sum(buckets.values()),
            reserved=reserved,
            buckets=buckets,
            expiring=tuple(
                Expiring(credits, at, bucket) for (at, bucket), credits in sorted(expiring.items())
            ),
        )

    # ---- issuing -------------------------------------------------------

    def issue(
        self,
        *,
        credits: int,
        source: Source,
        category: Category,
        bucket: str,
        scope: frozenset[str] | None = None,
        effective_at: datetime | None = None,
        expires_at: datetime | None = None,
        origin: str | None = None,
        actor: Actor = SYSTEM,
        memo: str | None = None,
        idempotency_key: str | None = None,
    ) -> Grant:
        """Create a grant of ``credits`` and post its issuance."""
        spec = NewGrant(credits, source, category, bucket, scope, effective_at, expires_at, origin)
        return self.issue_all([spec], actor=actor, memo=memo, idempotency_key=idempotency_key)[0]

    def issue_all(
        self,
        specs: Sequence[NewGrant],
        *,
        actor: Actor = SYSTEM,
        memo: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[Grant]:
        """Create several grants and post their issuance as one entry.

        A period's allowances (general credits and the calling allowance) are
        issued together: one ``grant`` entry with two postings per grant.
        Every spec is checked before anything changes.
        """
        if not specs:
            raise InvalidInput("issue at least one grant")
        for spec in specs:
            self._check_new_grant(spec)
        made: list[Grant] = []
        postings: list[Posting] = []
        for spec in specs:
            grant = Grant(
                id=new_id("grt"),
                team_id=self.team_id,
                source=spec.source,
                category=spec.category,
                scope=spec.scope,
                amount=spec.credits,
                remaining=spec.credits,
                reserved=0,
                effective_at=spec.effective_at or self.now,
                expires_at=spec.expires_at,
                created_at=self.now,
                origin=spec.origin,
                bucket=spec.bucket,
            )
            self.grants[grant.id] = grant
            self.new_grants.add(grant.id)
            postings.append(Posting(grant.id, Account.ISSUED, -spec.credits))
            postings.append(Posting(grant.id, Account.AVAILABLE, spec.credits))
            made.append(grant)
        self._post(
            EntryKind.GRANT,
            postings,
            credits=sum(spec.credits for spec in specs),
            actor=actor,
            memo=memo,
            idempotency_key=idempotency_key,
            meta={
                "source": _joined(spec.source.value for spec in specs),
                "category": _joined(spec.category.value for spec in specs),
            },
        )
        return made

    def _check_new_grant(self, spec: NewGrant) -> None:
        limit = self.catalog.limits.max_grant_credits
        credits = spec.credits
        if isinstance(credits, bool) or not isinstance(credits, int) or not 0 < credits <= limit:
            raise InvalidAmount(
                f"a grant must be a whole number of credits between 1 and {limit}, got {credits!r}",
                minimum=1,
                maximum=limit,
            )
        if spec.scope is not None:
            if not spec.scope:
                raise InvalidInput("a grant's scope lists at least one feature, or is omitted")
            for feature in spec.scope:
                self.catalog.feature(feature)
        if spec.bucket not in BUCKETS:
            raise InvalidInput(
                f"unknown bucket {spec.bucket!r}; valid buckets: {', '.join(BUCKETS)}"
            )
        start = spec.effective_at or self.now
        if spec.expires_at is not None and spec.expires_at < start:
            raise InvalidInput("a grant cannot expire before it becomes effective")

    # ---- spending ------------------------------------------------------

    def charge(
        self,
        feature: str,
        *,
        quantity: int = 1,
        outcome: str | None = None,
        call: Call | None = None,
        actor: Actor = SYSTEM,
        idempotency_key: str | None = None,
    ) -> ChargeResult:
        """A one-step charge: the outcome is known; only billable outcomes cost."""
        q = quote(self.catalog, feature, quantity=quantity, outcome=outcome, call=call)
        if not q.billable:
            entry = self._post(
                EntryKind.ATTEMPT,
                [],
                credits=0,
                actor=actor,
                quote=q,
                idempotency_key=idempotency_key,
            )
            return ChargeResult(entry, q)
        taken = self._take(q.feature, q.credits)
        postings: list[Posting] = []
        for grant, credits in taken:
            grant.remaining -= credits
            self._touch(grant)
            postings.append(Posting(grant.id, Account.AVAILABLE, -credits))
            postings.append(Posting(grant.id, Account.USED, credits))
        entry = self._post(
            EntryKind.CHARGE,
            postings,
            credits=q.credits,
            actor=actor,
            quote=q,
            idempotency_key=idempotency_key,
        )
        return ChargeResult(entry, q)

    def hold(
        self,
        feature: str,
        *,
        quantity: int = 1,
        ttl_seconds: int | None = None,
        call: Call | None = None,
        actor: Actor = SYSTEM,
        idempotency_key: str | None = None,
    ) -> Hold:
        """Reserve the most ``quantity`` uses of ``feature`` can cost."""
        limits = self.catalog.limits
        ttl = limits.default_hold_ttl_seconds if ttl_seconds is None else ttl_seconds
        if (
            isinstance(ttl, bool)
            or not isinstance(ttl, int)
            or not 1 <= ttl <= limits.max_hold_ttl_seconds
        ):
            raise InvalidQuantity(
                f"ttl_seconds must be between 1 and {limits.max_hold_ttl_seconds}, got {ttl!r}",
                minimum=1,
                maximum=limits.max_hold_ttl_seconds,
            )
        q = max_quote(self.catalog, feature, quantity=quantity, call=call)
        taken = self._take(q.feature, q.credits)
        hold = Hold(
            id=new_id("hold"),
            team_id=self.team_id,
            feature=q.feature,
            amount=q.credits,
            quantity=q.quantity,
            unit_cost=q.unit_cost,
            multiplier=q.multiplier,
            allocations=tuple((g.id, c) for g, c in taken),
            status=HoldStatus.ACTIVE,
            created_at=self.now,
            expires_at=self.now + timedelta(seconds=ttl),
            actor=actor,
            tier=q.tier,
            idempotency_key=idempotency_key,
        )
        postings: list[Posting] = []
        for grant, credits in taken:
            grant.reserved += credits
            self._touch(grant)
            postings.append(Posting(grant.id, Account.AVAILABLE, -credits))
            postings.append(Posting(grant.id, Account.HELD, credits))
        self.holds[hold.id] = hold
        self.new_holds.add(hold.id)
        self._post(
            EntryKind.HOLD,
            postings,
            credits=q.credits,
            actor=actor,
            quote=q,
            hold_id=hold.id,
            idempotency_key=idempotency_key,
        )
        return hold

    def capture(
        self,
        hold: Hold,
        *,
        outcome: str | None = None,
        quantity: int | None = None,
        call: Call | None = None,
        settled_by: Actor | None = None,
        idempotency_key: str | None = None,
    ) -> ChargeResult:
        """Charge what the work cost, at most the held amount; return the rest.

        The capture is booked to the hold's owner (the member, key and job that
        placed it), so usage and caps count it there whoever settles it; a
        ``settled_by`` other than the owner is recorded in the entry's meta.
        """
        self._require_active(hold)
        q = self._capture_quote(hold, outcome, quantity, call)
        if q.credits > hold.amount:
            raise CaptureExceedsHold(hold.id, hold.amount, q.credits)
        charged, returned = split_capture(hold.allocations, q.credits)
        postings: list[Posting] = []
        for grant_id, credits in charged:
            grant = self._grant(grant_id)
            grant.reserved -= credits
            grant.remaining -= credits
            self._touch(grant)
            postings.append(Posting(grant_id, Account.HELD, -credits))
            postings.append(Posting(grant_id, Account.USED, credits))
        postings.extend(self._return_held(returned))
        hold.status = HoldStatus.CAPTURED
        hold.captured = q.credits
        hold.resolved_at = self.now
        self._touch_hold(hold)
        entry = self._post(
            EntryKind.CAPTURE,
            postings,
            credits=q.credits,
            actor=hold.actor,
            quote=q,
            hold_id=hold.id,
            idempotency_key=idempotency_key,
            meta=_settler(hold, settled_by),
        )
        return ChargeResult(entry, q)

    def release(
        self,
        hold: Hold,
        *,
        settled_by: Actor | None = None,
        idempotency_key: str | None = None,
        expired: bool = False,
    ) -> Entry:
        """Give every held credit back to the grants it came from.

        Booked to the hold's owner, as a capture is; an expired hold, which
        nobody released, to the system.
        """
        if expired:
            # The TTL has passed; only the status must still be active.
            if hold.status is not HoldStatus.ACTIVE:
                raise HoldNotActive(hold.id, hold.status.value)
        else:
            self._require_active(hold)
        returned = list(reversed(hold.allocations))
        postings = self._return_held(returned)
        hold.status = HoldStatus.EXPIRED if expired else HoldStatus.RELEASED
        hold.resolved_at = self.now
        self._touch_hold(hold)
        return self._post(
            EntryKind.RELEASE,
            postings,
            credits=hold.amount,
            actor=SYSTEM if expired else hold.actor,
            feature=hold.feature,
            hold_id=hold.id,
            idempotency_key=idempotency_key,
            memo="hold expired" if expired else None,
            meta=_settler(hold, settled_by),
        )

    def expire_holds(self) -> list[Entry]:
        """Release every loaded hold past its time to live."""
        if not self.holds:  # the usual case in a sweep: no hold loaded
            return []
        return [
            self.release(h, expired=True)
            for h in list(self.holds.values())
            if h.is_past_ttl(self.now)
        ]

    def expire_grants(self) -> list[Entry]:
        """Write off what is unspent and unreserved in every grant past its expiry.

        One ``expire`` entry per expiry instant, with the postings of every
        grant that ended then (a period's general and calling credits end
        together). Reserved credits stay until their holds resolve; they then
        go to ``expired`` instead of back to the grant.
        """
        now = self.now
        # A sweep calls this several times per team, mostly with nothing due:
        # only the grants to close are sorted.
        due = [
            g
            for g in self.grants.values()
            if not g.closed and g.expires_at is not None and now >= g.expires_at
        ]
        if not due:
            return []
        due.sort(key=lambda g: (g.expires_at or now, g.id))
        entries: list[Entry] = []
        start = 0
        while start < len(due):
            ended_at = due[start].expires_at
            stop = start
            while stop < len(due) and due[stop].expires_at == ended_at:
                stop += 1
            group = due[start:stop]
            start = stop
            postings: list[Posting] = []
            expired = 0
            for grant in group:
                grant.closed = True
                self._touch(grant)
                credits = grant.available
                if credits:
                    grant.remaining -= credits
                    expired += credits
                    postings.append(Posting(grant.id, Account.AVAILABLE, -credits))
                    postings.append(Posting(grant.id, Account.EXPIRED, credits))
            entries.append(
                self._post(
                    EntryKind.EXPIRE,
                    postings,
                    credits=expired,
                    actor=SYSTEM,
                    memo=f"{_joined((g.bucket for g in group), ' and ')} credits expired",
                    meta={"grant_ids": ",".join(g.id for g in group)},
                )
            )
        return entries

    def revoke(
        self,
        grant_id: str,
        credits: int | None = None,
        *,
        actor: Actor = SYSTEM,
        memo: str | None = None,
        idempotency_key: str | None = None,
    ) -> Entry:
        """Take back unspent, unreserved credits of a grant (a refund or clawback).

        ``credits=None`` takes all that is left; more than is left is taken
        as what is left, never more.
        """
        grant = self._grant(grant_id)
        if credits is not None and (
            isinstance(credits, bool) or not isinstance(credits, int) or credits < 1
        ):
            raise InvalidAmount(
                f"credits to revoke must be a whole number of at least 1, got {credits!r}"
            )
        take = grant.available if credits is None else min(credits, grant.available)
        postings: list[Posting] = []
        if take > 0:
            grant.remaining -= take
            self._touch(grant)
            postings = [
                Posting(grant.id, Account.AVAILABLE, -take),
                Posting(grant.id, Account.REVOKED, take),
            ]
        if grant.remaining == 0:
            grant.closed = True
            self._touch(grant)
        return self._post(
            EntryKind.REVOKE,
            postings,
            credits=take,
            actor=actor,
            memo=memo,
            idempotency_key=idempotency_key,
            meta={"grant_id": grant.id},
        )

    # ---- helpers ---------------------------------------------------------

    def _capture_quote(
        self, hold: Hold, outcome: str | None, quantity: int | None, call: Call | None
    ) -> Quote:
        feature = self.catalog.feature(hold.feature)
        if feature.metered_by_call:
            if call is None:
                # Without the call's details the outcome decides: all that was held or nothing.
                chosen = outcome or feature.default_outcome
                credits = hold.amount if feature.is_billable(chosen) else 0
                return Quote(
                    hold.feature,
                    hold.quantity if credits else 0,
                    chosen,
                    hold.unit_cost,
                    hold.multiplier,
                    credits,
                    hold.tier,
                )
            q = quote(self.catalog, hold.feature, outcome=outcome, call=call)
            if call.destination is None and q.credits:
                # The tier fixed at hold time prices the call.
                credits = q.quantity * hold.unit_cost * hold.multiplier
                return Quote(
                    q.feature,
                    q.quantity,
                    q.outcome,
                    hold.unit_cost,
                    hold.multiplier,
                    credits,
                    hold.tier,
                )
            return q
        if quantity is not None and (
            isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0
        ):
            raise InvalidQuantity(
                f"quantity to capture must be a whole number from 0 to {hold.quantity}, "
                f"got {quantity!r}",
                minimum=0,
                maximum=hold.quantity,
            )
        if quantity is not None and quantity > hold.quantity:
            raise CaptureExceedsHold(
                hold.id, hold.amount, quantity * hold.unit_cost * hold.multiplier
            )
        used = hold.quantity if quantity is None else quantity
        if used == 0:
            chosen = outcome if outcome is not None else feature.default_outcome
            feature.check_outcome(chosen)
            return Quote(hold.feature, 0, chosen, hold.unit_cost, hold.multiplier, 0)
        q = quote(self.catalog, hold.feature, quantity=used, outcome=outcome)
        # The price fixed at hold time is what the capture charges.
        credits = hold.unit_cost * hold.multiplier * used if q.billable else 0
        return Quote(q.feature, used, q.outcome, hold.unit_cost, hold.multiplier, credits)

    def _return_held(self, returned: Iterable[tuple[str, int]]) -> list[Posting]:
        postings: list[Posting] = []
        for grant_id, credits in returned:
            grant = self._grant(grant_id)
            grant.reserved -= credits
            self._touch(grant)
            postings.append(Posting(grant_id, Account.HELD, -credits))
            if grant.closed:
                # The grant expired while these credits were held: write them off.
                grant.remaining -= credits
                postings.append(Posting(grant_id, Account.EXPIRED, credits))
            else:
                postings.append(Posting(grant_id, Account.AVAILABLE, credits))
        return postings

    def _take(self, feature: str, credits: int) -> list[tuple[Grant, int]]:
        order = grant_rules.eligible(self.grants.values(), feature, self.now)
        taken = grant_rules.split(order, credits)
        if not taken:
            raise InsufficientCredits(credits, sum(g.available for g in order), feature)
        return taken

    def _require_active(self, hold: Hold) -> None:
        if hold.status is not HoldStatus.ACTIVE:
            raise HoldNotActive(hold.id, hold.status.value)
        if hold.is_past_ttl(self.now):
            raise HoldNotActive(hold.id, "expired")

    def _grant(self, grant_id: str) -> Grant:
        try:
            return self.grants[grant_id]
        except KeyError:
            raise GrantNotFound(grant_id) from None

    def _touch(self, grant: Grant) -> None:
        if grant.id not in self.new_grants:
            self.changed_grants.add(grant.id)

    def _touch_hold(self, hold: Hold) -> None:
        if hold.id not in self.new_holds:
            self.changed_holds.add(hold.id)

    def _post(
        self,
        kind: EntryKind,
        postings: list[Posting],
        *,
        credits: int,
        actor: Actor,
        quote: Quote | None = None,
        feature: str | None = None,
        hold_id: str | None = None,
        idempotency_key: str | None = None,
        memo: str | None = None,
        meta: dict[str, str] | None = None,
    ) -> Entry:
        entry = Entry(
            id=new_id("ent"),
            team_id=self.team_id,
            kind=kind,
            created_at=self.now,
            postings=tuple(postings),
            credits=credits,
            actor=actor,
            feature=quote.feature if quote else feature,
            quantity=quote.quantity if quote else None,
            outcome=quote.outcome if quote else None,
            unit_cost=quote.unit_cost if quote else None,
            multiplier=quote.multiplier if quote else None,
            hold_id=hold_id,
            idempotency_key=idempotency_key,
            memo=memo,
            meta=dict(meta or {}),
        )
        if not entry.is_balanced():  # pragma: no cover - a bug, not an input
            raise AssertionError(f"unbalanced entry {entry}")
        self.entries.append(entry)
        return entry

    def pending(self) -> tuple[list[Grant], list[Grant], list[Hold], list[Hold], list[Entry]]:
        """What to persist: (new grants, changed grants, new holds, changed holds, entries)."""
        return (
            [self.grants[g] for g in sorted(self.new_grants)],
            [self.grants[g] for g in sorted(self.changed_grants)],
            [self.holds[h] for h in sorted(self.new_holds)],
            [self.holds[h] for h in sorted(self.changed_holds)],
            list(self.entries),
        )

    def savepoint(self) -> BookMark:
        """Remember the book's state; ``rollback_to`` undoes whatever came after.

        Group commit applies many commands to one book and needs to drop one
        that a later check (a spend guard) refused, keeping the others.
        """
        return BookMark(
            entries=len(self.entries),
            grants={g.id: (g.remaining, g.reserved, g.closed) for g in self.grants.values()},
            holds={h.id: (h.status, h.captured, h.resolved_at) for h in self.holds.values()},
            marks=(
                frozenset(self.new_grants),
                frozenset(self.changed_grants),
                frozenset(self.new_holds),
                frozenset(self.changed_holds),
            ),
        )

    def rollback_to(self, mark: BookMark) -> None:
        """Put the book back as it was at ``savepoint()``."""
        del self.entries[mark.entries :]
        for grant_id in [g for g in self.grants if g not in mark.grants]:
            del self.grants[grant_id]
        for grant_id, (remaining, reserved, closed) in mark.grants.items():
            grant = self.grants[grant_id]
            grant.remaining, grant.reserved, grant.closed = remaining, reserved, closed
        for hold_id in [h for h in self.holds if h not in mark.holds]:
            del self.holds[hold_id]
        for hold_id, (status, captured, resolved_at) in mark.holds.items():
            hold = self.holds[hold_id]
            hold.status, hold.captured, hold.resolved_at = status, captured, resolved_at
        new_grants, changed_grants, new_holds, changed_holds = mark.marks
        self.new_grants = set(new_grants)
        self.changed_grants = set(changed_grants)
        self.new_holds = set(new_holds)
        self.changed_holds = set(changed_holds)

    def clear_pending(self) -> None:
        self.new_grants.clear()
        self.changed_grants.clear()
        self.new_holds.clear()
        self.changed_holds.clear()
        self.entries.clear()


def _settler(hold: Hold, settled_by: Actor | None) -> dict[str, str] | None:
    """The meta naming who settled a hold, when it was not its owner (an admin, a service)."""
    if settled_by is None or settled_by == hold.actor or settled_by == SYSTEM:
        return None
    return {"settled_by": settled_by.describe()}


def _joined(values: Iterable[str], separator: str = ",") -> str:
    """Distinct ``values`` in first-seen order, joined."""
    return separator.join(dict.fromkeys(values))


def check_invariants(grants: Iterable[Grant], holds: Iterable[Hold] = ()) -> list[str]:
    """Problems with the materialized state; [] when everything holds."""
    problems: list[str] = []
    reserved_by_holds: dict[str, int] = {}
    for h in holds:
        if h.captured < 0 or h.captured > h.amount:
            problems.append(f"hold {h.id} captured {h.captured} of {h.amount}")
        if sum(c for _, c in h.allocations) != h.amount:
            problems.append(f"hold {h.id} allocations do not sum to {h.amount}")
        if h.status is HoldStatus.ACTIVE:
            for grant_id, credits in h.allocations:
                reserved_by_holds[grant_id] = reserved_by_holds.get(grant_id, 0) + credits
    for g in grants:
        if g.remaining < 0 or g.reserved < 0:
            problems.append(
                f"grant {g.id} negative: remaining {g.remaining}, reserved {g.reserved}"
            )
        if g.reserved > g.remaining:
            problems.append(f"grant {g.id} reserved {g.reserved} > remaining {g.remaining}")
        if g.remaining > g.amount:
            problems.append(f"grant {g.id} remaining {g.remaining} > amount {g.amount}")
        if g.reserved != reserved_by_holds.get(g.id, 0):
            problems.append(
                f"grant {g.id} reserved {g.reserved} but active holds reserve "
                f"{reserved_by_holds.get(g.id, 0)}"
            )
    return problems
