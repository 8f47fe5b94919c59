"""Plans, seats and billing periods as use cases: the ``Plans`` service (``book.plans``).

The rules are the pure functions of ``creditbook.domain.subscriptions``;
this module persists a team's ``Subscription`` in the ``subscriptions``
table and runs each command inside ``Kernel.transact``: one locked
transaction on one team, idempotent under a key, writing only balanced
entries (so ``creditbook audit`` stays clean).

Keeping teams up to date without cron: ``Plans`` registers two hooks on
the kernel when it is built.

- a catch-up step, run by every read or write of a team whose ``due_at``
  has passed (after expired holds and grants are written off): it loads the
  subscription and applies ``catch_up``, which issues each crossed period's
  grants exactly once (``issued_through`` records how far it got, and the
  grants table's UNIQUE(team_id, origin) refuses a second copy);
- a due step giving the team's next period boundary, so ``teams.due_at``
  points at it and ``creditbook tick`` finds the team when it passes.

Both hooks also speak the batch protocol of ``creditbook.service.sweep``
(prefetch the subscriptions of many teams in one query, write them back in
one statement), which is what lets ``tick`` sweep thousands of teams a
second.

Decisions of this layer (the domain's are in its docstrings):

- ``subscribe`` on a team without a subscription starts one; on a trial
  plan it starts the trial. On a team that has one it changes the plan (and
  seats): ``anchor`` and ``time_zone`` are only taken when subscribing.
- A backdated ``anchor`` aligns the billing day; periods that ended before
  the subscription existed are not issued (the current one is, in full).
- The time zone defaults to the team's.
- Switching to a trial plan with ``change_plan`` is refused: the trial is
  ``start_trial``, once per team.
- The actor of a command is recorded on the grant entries it creates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from creditbook.adapters.db.repository import SqlUnitOfWork, as_utc
from creditbook.adapters.db.tables_subscriptions import subscriptions
from creditbook.domain.book import TeamBook
from creditbook.domain.catalog import Catalog, Plan
from creditbook.domain.clock import ensure_aware
from creditbook.domain.errors import InvalidInput, NotFound, TeamNotFound
from creditbook.domain.grants import Category, Source
from creditbook.domain.ledger import SYSTEM, Actor, EntryKind
from creditbook.domain.periods import period_at, period_start
from creditbook.domain.subscriptions import (
    MAX_SEATS,
    MIN_SEATS,
    Event,
    Subscription,
    SubscriptionStatus,
    cancel,
    catch_up,
    change_plan,
    change_seats,
    new_subscription,
    reactivate,
    start_trial,
)
from creditbook.service.kernel import Kernel
from creditbook.service.receipts import GrantReceipt
from creditbook.service.requests import actor_dict
from creditbook.service.spending import Spending
from creditbook.service.sweep import bulk_update

__all__ = [
    "Plans",
    "SubscriptionNotFound",
    "SubscriptionReceipt",
    "next_boundary",
]

MAX_REASON = 500
MAX_OPERATOR = 200


class SubscriptionNotFound(NotFound):
    code = "subscription_not_found"
    title = "No subscription"

    def __init__(self, team_id: str) -> None:
        super().__init__(
            f"team {team_id!r} has no subscription; subscribe it to a plan first "
            "(creditbook team plan TEAM PLAN)",
            resource="subscription",
            id=team_id,
        )


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class SubscriptionReceipt:
    """A subscription after a command, and what the command moved."""

    team_id: str
    plan: str
    seats: int
    status: str
    anchor: datetime
    time_zone: str
    period_start: datetime | None  # the current period (None before the anchor or in a trial)
    period_end: datetime | None
    next_boundary: datetime | None  # when the next period's grants are due (None: no more)
    pending_plan: str | None
    cancel_at: datetime | None
    trial_ends_at: datetime | None
    granted: int  # credits issued in this transaction (catch-up included)
    expired: int  # credits written off in this transaction
    events: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in (
            "anchor",
            "period_start",
            "period_end",
            "next_boundary",
            "cancel_at",
            "trial_ends_at",
        ):
            data[name] = _iso(getattr(self, name))
        data["events"] = list(self.events)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubscriptionReceipt:
        values = dict(data)
        for name in ("period_start", "period_end", "next_boundary", "cancel_at", "trial_ends_at"):
            values[name] = _dt(data[name])
        values["anchor"] = datetime.fromisoformat(data["anchor"])
        values["events"] = tuple(data["events"])
        return cls(**values)


def next_boundary(sub: Subscription) -> datetime | None:
    """The next period start at which ``sub`` issues grants; None if none will come.

    It is the start of the first period not yet handled, so a subscription
    whose anchor is in the future is due at its anchor.
    """
    if sub.status is SubscriptionStatus.TRIALING:
        return None
    start = period_start(sub.anchor, sub.time_zone, sub.issued_through + 1)
    if sub.status is SubscriptionStatus.CANCELLED and (
        sub.cancel_at is None or start >= sub.cancel_at
    ):
        return None
    return start


# ---- rows ------------------------------------------------------------------------------


def _to_row(sub: Subscription, now: datetime) -> dict[str, Any]:
    return {
        "team_id": sub.team_id,
        "plan": sub.plan,
        "seats": sub.seats,
        "status": sub.status.value,
        "anchor": sub.anchor,
        "time_zone": sub.time_zone,
        "issued_through": sub.issued_through,
        "trial_used": sub.trial_used,
        "trial_ends_at": sub.trial_ends_at,
        "pending_plan": sub.pending_plan,
        "cancel_at": sub.cancel_at,
        "updated_at": now,
    }


def _from_row(row: Any) -> Subscription:
    return Subscription(
        team_id=row.team_id,
        plan=row.plan,
        seats=row.seats,
        status=SubscriptionStatus(row.status),
        anchor=row.anchor,
        time_zone=row.time_zone,
        issued_through=row.issued_through,
        trial_used=row.trial_used,
        trial_ends_at=row.trial_ends_at,
        pending_plan=row.pending_plan,
        cancel_at=row.cancel_at,
    )


_COLUMNS = (
    "team_id, plan, seats, status, anchor, time_zone, issued_through, trial_used, "
    "trial_ends_at, pending_plan, cancel_at"
)
_PG_SELECT = f"SELECT {_COLUMNS} FROM subscriptions WHERE team_id = ANY(%s)"
_STATUSES = {s.value: s for s in SubscriptionStatus}
_FIELDS = tuple(f.name for f in dataclasses.fields(Subscription) if f.name != "team_id")


def _from_tuple(r: tuple[Any, ...]) -> Subscription:
    """A subscription from a row of ``_PG_SELECT`` (aware datetimes, made UTC)."""
    return Subscription(
        r[0],
        r[1],
        r[2],
        _STATUSES[r[3]],
        as_utc(r[4]) or r[4],
        r[5],
        r[6],
        r[7],
        as_utc(r[8]),
        r[9],
        as_utc(r[10]),
    )


_UPDATE = (
    update(subscriptions)
    .where(subscriptions.c.team_id == bindparam("b_team_id"))
    .values(
        plan=bindparam("b_plan"),
        seats=bindparam("b_seats"),
        status=bindparam("b_status"),
        anchor=bindparam("b_anchor"),
        time_zone=bindparam("b_time_zone"),
        issued_through=bindparam("b_issued_through"),
        trial_used=bindparam("b_trial_used"),
        trial_ends_at=bindparam("b_trial_ends_at"),
        pending_plan=bindparam("b_pending_plan"),
        cancel_at=bindparam("b_cancel_at"),
        updated_at=bindparam("b_updated_at"),
    )
)


def _update_params(sub: Subscription, now: datetime) -> dict[str, Any]:
    return {f"b_{k}": v for k, v in _to_row(sub, now).items()}


# ---- the service -------------------------------------------------------------------


Apply = Callable[[Subscription | None, TeamBook, SqlUnitOfWork], tuple[Subscription, list[Event]]]


class Plans:
    """Subscriptions of teams to plans: trial, seats, periods, cancellation, gifts."""

    def __init__(self, kernel: Kernel[SqlUnitOfWork], spending: Spending | None = None) -> None:
        self.kernel = kernel
        self.spending = spending or Spending(kernel)
        # Per unit of work while ``tick`` sweeps a batch of teams: the
        # prefetched subscriptions and the ones changed, written at once.
        self._batch: dict[SqlUnitOfWork, dict[str, Subscription]] = {}
        self._dirty: dict[SqlUnitOfWork, dict[str, Subscription]] = {}
        # Columns any subscription of the batch changed: the flush writes only those.
        self._changed: dict[SqlUnitOfWork, set[str]] = {}
        self.catch_up_step = _CatchUpStep(self)
        self.due_step = _DueStep(self)
        kernel.catch_up_steps.append(self.catch_up_step)
        kernel.due_steps.append(self.due_step)

    # ---- reading ----------------------------------------------------------------

    def subscription(self, team_id: str) -> Subscription | None:
        """The team's subscription, brought up to date first; None if it never subscribed."""
        kernel = self.kernel
        with kernel.uow() as uow:
            team_book, ran = kernel.open_book(uow, team_id)
            kernel.finish(uow, team_book, ran_catch_up=ran)
            sub = self._load(uow, team_id)
            uow.commit()
        return sub

    # ---- commands ----------------------------------------------------------------

    def subscribe(
        self,
        team_id: str,
        plan: str,
        *,
        seats: int = 1,
        anchor: datetime | None = None,
        time_zone: str | None = None,
        actor: Actor = SYSTEM,
        idempotency_key: str | None = None,
    ) -> SubscriptionReceipt:
        """Subscribe the team to ``plan`` (or change to it, with ``seats``, if subscribed).

        A new subscription's period 0 starts at ``anchor`` (default: now) in
        ``time_zone`` (default: the team's). On a trial plan the trial starts.
        """
        catalog = self.kernel.catalog
        catalog.plan(plan)
        _check_seats(seats)
        start = ensure_aware(anchor) if anchor is not None else None
        request = {
            "plan": plan,
            "seats": seats,
            "anchor": start,
            "time_zone": time_zone,
            "actor": actor_dict(actor),
        }

        def apply(
            sub: Subscription | None, book: TeamBook, uow: SqlUnitOfWork
        ) -> tuple[Subscription, list[Event]]:
            now = book.now
            if sub is None:
                team = uow.get_team(team_id)
                if team is None:
                    raise TeamNotFound(team_id)
                first = start or now
                sub = new_subscription(
                    team_id,
                    catalog,
                    plan=plan,
                    anchor=first,
                    time_zone=time_zone or team.time_zone,
                    seats=seats,
                )
                if first < now:
                    # A backdated anchor sets the billing day; the periods
                    # before the subscription existed were never paid for.
                    sub.issued_through = sub.period_at(now).index - 1
                if sub.status is SubscriptionStatus.TRIALING:
                    return sub, start_trial(sub, book, catalog, now, plan=sub.plan)
                return sub, catch_up(sub, book, catalog, now)
            if start is not None or time_zone is not None:
                raise InvalidInput(
                    f"team {team_id!r} is already subscribed ({sub.plan}, {sub.status.value}); "
                    "the anchor and time zone are set when subscribing. Change the plan or "
                    "seats without them",
                    team_id=team_id,
                )
            _refuse_trial_plan(catalog.plan(plan))
            events: list[Event] = []
            new_term = sub.status is SubscriptionStatus.TRIALING or (
                sub.status is SubscriptionStatus.CANCELLED
                and (sub.cancel_at is None or now >= sub.cancel_at)
            )
            if new_term:
                # The new term's period 0 is issued for the new seat count.
                events += catch_up(sub, book, catalog, now)
                sub.seats = seats
            events += change_plan(sub, book, catalog, plan, now)
            events += change_seats(sub, book, catalog, seats, now)
            return sub, events

        return self._command(team_id, "plans.subscribe", request, idempotency_key, actor, apply)

    def start_trial(
        self,
        team_id: str,
        *,
        plan: str | None = None,
        time_zone: str | None = None,
        actor: Actor = SYSTEM,
        idempotency_key: str | None = None,
    ) -> SubscriptionReceipt:
        """Grant the trial credits: once per team, ever (``TrialAlreadyUsed`` after that)."""
        catalog = self.kernel.catalog
        if plan is not None:
            catalog.plan(plan)
        request = {"plan": plan, "time_zone": time_zone, "actor": actor_dict(actor)}

        def apply(
            sub: Subscription | None, book: TeamBook, uow: SqlUnitOfWork
        ) -> tuple[Subscription, list[Event]]:
            now = book.now
            if sub is None:
                team = uow.get_team(team_id)
                if team is None:
                    raise TeamNotFound(team_id)
                trial = plan or _default_trial_plan(self.kernel.catalog)
                sub = new_subscription(
                    team_id,
                    catalog,
                    plan=trial,
                    anchor=now,
                    time_zone=time_zone or team.time_zone,
                )
            return sub, start_trial(sub, book, catalog, now, plan=plan)

        return self._command(team_id, "plans.start_trial", request, idempotency_key, actor, apply)

    def change_plan(
        self,
        team_id: str,
        plan: str,
        *,
        actor: Actor = SYSTEM,
        idempotency_key: str | None = None,
    ) -> SubscriptionReceipt:
        """Upgrade at once (prorated difference) or downgrade at the next period."""
        catalog = self.kernel.catalog
        _refuse_trial_plan(catalog.plan(plan))
        request = {"plan": plan, "actor": actor_dict(actor)}

        def apply(
            sub: Subscription | None, book: TeamBook, uow: SqlUnitOfWork
        ) -> tuple[Subscription, list[Event]]:
            sub = _require(sub, team_id)
            return sub, change_plan(sub, book, catalog, plan, book.now)

        return self._command(team_id, "plans.change_plan", request, idempotency_key, actor, apply)

    def change_seats(
        self,
        team_id: str,
        seats: int,
        *,
        actor: Actor = SYSTEM,
        idempotency_key: str | None = None,
    ) -> SubscriptionReceipt:
        """Set the seat count; added seats get their allowance per the seat policy."""
        _check_seats(seats)
        catalog = self.kernel.catalog
        request = {"seats": seats, "actor": actor_dict(actor)}

        def apply(
            sub: Subscription | None, book: TeamBook, uow: SqlUnitOfWork
        ) -> tuple[Subscription, list[Event]]:
            sub = _require(sub, team_id)
            return sub, change_seats(sub, book, catalog, seats, book.now)

        return self._command(team_id, "plans.change_seats", request, idempotency_key, actor, apply)

    def cancel(
        self,
        team_id: str,
        *,
        actor: Actor = SYSTEM,
        idempotency_key: str | None = None,
    ) -> SubscriptionReceipt:
        """Stop free grants after the current period; purchased credits stay."""
        catalog = self.kernel.catalog
        request = {"actor": actor_dict(actor)}

        def apply(
            sub: Subscription | None, book: TeamBook, uow: SqlUnitOfWork
        ) -> tuple[Subscription, list[Event]]:
            sub = _require(sub, team_id)
            events = catch_up(sub, book, catalog, book.now)
            return sub, events + cancel(sub, book.now)

        return self._command(team_id, "plans.cancel", request, idempotency_key, actor, apply)

    def reactivate(
        self,
        team_id: str,
        *,
        plan: str | None = None,
        actor: Actor = SYSTEM,
        idempotency_key: str | None = None,
    ) -> SubscriptionReceipt:
        """Undo a cancellation, or start a new term now once the last paid period ended."""
        catalog = self.kernel.catalog
        if plan is not None:
            _refuse_trial_plan(catalog.plan(plan))
        request = {"plan": plan, "actor": actor_dict(actor)}

        def apply(
            sub: Subscription | None, book: TeamBook, uow: SqlUnitOfWork
        ) -> tuple[Subscription, list[Event]]:
            sub = _require(sub, team_id)
            return sub, reactivate(sub, book, catalog, book.now, plan=plan)

        return self._command(team_id, "plans.reactivate", request, idempotency_key, actor, apply)

    def gift(
        self,
        team_id: str,
        credits: int,
        *,
        reason: str,
        operator: str,
        category: Category | str = Category.FREE,
        scope: Sequence[str] | None = None,
        expires_at: datetime | None = None,
        adjustment: bool = False,
        idempotency_key: str | None = None,
    ) -> GrantReceipt:
        """Credits given by the operator, recorded in the ledger with who and why.

        ``adjustment=True`` records it as an adjustment (a correction) rather
        than a gift; both show in the ``gifted`` bucket unless the category
        is ``purchased``.
        """
        why = _text(reason, "reason", MAX_REASON, "why the credits are given")
        who = _text(operator, "operator", MAX_OPERATOR, "who gives them")
        return self.spending.grant(
            team_id,
            credits,
            category=category,
            source=Source.ADJUSTMENT if adjustment else Source.GIFT,
            scope=list(scope) if scope is not None else None,
            expires_at=expires_at,
            reason=why,
            actor=Actor(operator=who),
            idempotency_key=idempotency_key,
        )

    # ---- the transaction ---------------------------------------------------------

    def _command(
        self,
        team_id: str,
        operation: str,
        request: dict[str, Any],
        idempotency_key: str | None,
        actor: Actor,
        apply: Apply,
    ) -> SubscriptionReceipt:
        engine = self.kernel

        def run(book: TeamBook, uow: SqlUnitOfWork) -> SubscriptionReceipt:
            # The catch-up step has already run if the team was due; the
            # domain functions catch up again (idempotent) before deciding.
            before = self._load(uow, team_id)
            first = len(book.entries)
            sub, events = apply(
                dataclasses.replace(before) if before is not None else None, book, uow
            )
            for i in range(first, len(book.entries)):
                entry = book.entries[i]
                if entry.kind is EntryKind.GRANT and actor != SYSTEM:
                    book.entries[i] = entry._replace(actor=actor)
            granted = sum(e.credits for e in book.entries if e.kind is EntryKind.GRANT)
            expired = sum(e.credits for e in book.entries if e.kind is EntryKind.EXPIRE)
            if before is None:
                uow.conn.execute(
                    insert(subscriptions).values(created_at=book.now, **_to_row(sub, book.now))
                )
            elif sub != before:
                uow.conn.execute(_UPDATE, [_update_params(sub, book.now)])
            # Write now and recompute ``due_at`` in full: a command can move
            # the next boundary (a future anchor, a cancellation, a new term).
            engine.finish(uow, book, ran_catch_up=True)
            return _receipt(sub, book.now, granted, expired, events)

        return engine.transact(
            team_id, operation, request, idempotency_key, run, SubscriptionReceipt
        )

    # ---- storage, one team or a batch --------------------------------------------

    def _load(self, uow: SqlUnitOfWork, team_id: str) -> Subscription | None:
        batch = self._batch.get(uow)
        if batch is not None:
            return batch.get(team_id)
        row = uow.conn.execute(
            select(subscriptions).where(subscriptions.c.team_id == team_id)
        ).first()
        return _from_row(row) if row is not None else None

    def _store(
        self,
        uow: SqlUnitOfWork,
        sub: Subscription,
        now: datetime,
        changed: Sequence[str] = _FIELDS,
    ) -> None:
        batch = self._batch.get(uow)
        if batch is not None:
            batch[sub.team_id] = sub
            self._dirty[uow][sub.team_id] = sub
            self._changed[uow].update(changed)
            return
        uow.conn.execute(_UPDATE, [_update_params(sub, now)])

    def prefetch(self, uow: SqlUnitOfWork, team_ids: Sequence[str]) -> None:
        """Load the subscriptions of a batch of teams in one query (``tick``)."""
        if uow.dialect == "postgresql":
            # A plain cursor and positional rows: a sweep reads thousands at once.
            raw: Any = uow.conn.connection.driver_connection
            with raw.cursor() as cursor:
                cursor.execute(_PG_SELECT, [list(team_ids)])
                self._batch[uow] = {r[0]: _from_tuple(r) for r in cursor.fetchall()}
        else:
            rows = uow.conn.execute(
                select(subscriptions).where(subscriptions.c.team_id.in_(team_ids))
            ).all()
            self._batch[uow] = {r.team_id: _from_row(r) for r in rows}
        self._dirty[uow] = {}
        self._changed[uow] = set()

    def flush(self, uow: SqlUnitOfWork, now: datetime) -> None:
        """Write the batch's changed subscriptions in one statement, changed columns only."""
        dirty = self._dirty.get(uow)
        if dirty:
            wanted = ["team_id", *sorted(self._changed[uow]), "updated_at"]
            rows = [_to_row(sub, now) for sub in dirty.values()]
            bulk_update(uow, subscriptions, ("team_id",), [{k: r[k] for k in wanted} for r in rows])
            dirty.clear()
            self._changed[uow].clear()

    def forget(self, uow: SqlUnitOfWork) -> None:
        self._batch.pop(uow, None)
        self._dirty.pop(uow, None)
        self._changed.pop(uow, None)

    def due_batch(self, uow: SqlUnitOfWork, team_ids: Sequence[str]) -> dict[str, datetime | None]:
        batch = self._batch.get(uow)
        if batch is None:
            return {t: self._due_one(uow, t) for t in team_ids}
        out: dict[str, datetime | None] = {}
        for team_id in team_ids:
            sub = batch.get(team_id)
            out[team_id] = next_boundary(sub) if sub is not None else None
        return out

    def _due_one(self, uow: SqlUnitOfWork, team_id: str) -> datetime | None:
        sub = self._load(uow, team_id)
        return next_boundary(sub) if sub is not None else None


class _CatchUpStep:
    """The catch-up step registered on the engine; batch-aware for ``tick``."""

    def __init__(self, plans: Plans) -> None:
        self.plans = plans

    def __call__(self, uow: SqlUnitOfWork, book: TeamBook, now: datetime) -> None:
        plans = self.plans
        sub = plans._load(uow, book.team_id)
        if sub is None:
            return
        before = dataclasses.replace(sub)
        catch_up(sub, book, plans.kernel.catalog, now)
        changed = [f for f in _FIELDS if getattr(sub, f) != getattr(before, f)]
        if changed:
            plans._store(uow, sub, now, changed)

    def prefetch(self, uow: SqlUnitOfWork, team_ids: Sequence[str]) -> None:
        self.plans.prefetch(uow, team_ids)

    def flush(self, uow: SqlUnitOfWork, now: datetime) -> None:
        self.plans.flush(uow, now)

    def forget(self, uow: SqlUnitOfWork) -> None:
        self.plans.forget(uow)


class _DueStep:
    """The due step: a team's next period boundary; batch-aware for ``tick``."""

    def __init__(self, plans: Plans) -> None:
        self.plans = plans

    def __call__(self, uow: SqlUnitOfWork, team_id: str, now: datetime) -> datetime | None:
        return self.plans._due_one(uow, team_id)

    def due_batch(
        self, uow: SqlUnitOfWork, team_ids: Sequence[str], now: datetime
    ) -> dict[str, datetime | None]:
        return self.plans.due_batch(uow, team_ids)


# ---- helpers ------------------------------------------------------------------------


def _receipt(
    sub: Subscription, now: datetime, granted: int, expired: int, events: list[Event]
) -> SubscriptionReceipt:
    current = period_at(sub.anchor, sub.time_zone, now)
    in_period = current.index >= 0 and sub.status is not SubscriptionStatus.TRIALING
    return SubscriptionReceipt(
        team_id=sub.team_id,
        plan=sub.plan,
        seats=sub.seats,
        status=sub.status.value,
        anchor=sub.anchor,
        time_zone=sub.time_zone,
        period_start=current.start if in_period else None,
        period_end=current.end if in_period else None,
        next_boundary=next_boundary(sub),
        pending_plan=sub.pending_plan,
        cancel_at=sub.cancel_at,
        trial_ends_at=sub.trial_ends_at,
        granted=granted,
        expired=expired,
        events=tuple(f"{e.kind.value}: {e.detail}" if e.detail else e.kind.value for e in events),
    )


def _require(sub: Subscription | None, team_id: str) -> Subscription:
    if sub is None:
        raise SubscriptionNotFound(team_id)
    return sub


def _check_seats(seats: int) -> None:
    if isinstance(seats, bool) or not isinstance(seats, int) or not MIN_SEATS <= seats <= MAX_SEATS:
        raise InvalidInput(
            f"seats must be a whole number between {MIN_SEATS} and {MAX_SEATS}, got {seats!r}",
            field="seats",
            minimum=MIN_SEATS,
            maximum=MAX_SEATS,
        )


def _refuse_trial_plan(plan: Plan) -> None:
    if plan.is_trial and not plan.allowances:
        raise InvalidInput(
            f"plan {plan.key!r} is a trial plan: start the trial instead "
            "(creditbook team trial TEAM); it is granted once per team",
            plan=plan.key,
        )


def _default_trial_plan(catalog: Catalog) -> str:
    trials = sorted(
        (p for p in catalog.plans.values() if p.is_trial), key=lambda p: (p.rank, p.key)
    )
    if not trials:
        raise InvalidInput("the catalog defines no trial plan (a plan with trial_credits > 0)")
    return trials[0].key


def _text(value: str, field: str, limit: int, meaning: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not 1 <= len(text) <= limit:
        raise InvalidInput(f"{field} is required ({meaning}): 1 to {limit} characters", field=field)
    return text
