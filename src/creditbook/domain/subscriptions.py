"""Subscriptions: a team's plan, seats and billing periods, and the free grants they issue.

A ``Subscription`` is plain state that the service layer persists next to
the team's grants. The functions here are the pure decisions taken on it,
expressed against a loaded ``TeamBook``; they do no I/O. Each mutates the
subscription and the book in place and returns the ``Event`` list of what
happened. If one raises, the caller discards both (the unit of work rolls
back); validation happens before any change, so in practice nothing moved.

Catching up (``catch_up``) is what makes correctness independent of any
cron job: every command on a team calls it first, and it is idempotent.
It releases holds past their time to live, writes off expired grants, then
walks every period boundary from ``issued_through + 1`` to the period that
contains ``now``, exactly once each:

1. a downgrade waiting for the next period takes effect at its start;
2. if the period is paid for, its free grants are issued: seats x allowance
   for each of the plan's allowances, effective at the period start and
   expiring at its end (no rollover);
3. grants that have already expired are written off at once.

A period that ended entirely before ``now`` (a service down for three
months) is still issued and then expired, each once: an untouched team
could not have spent those credits (any read or write would have caught it
up first), so issuing and writing them off leaves the same ledger a
punctual sweep would have written, with each period's issue and expiry.

States::

    TRIALING --change_plan/reactivate--> ACTIVE --cancel--> CANCELLED
                                            ^                  |
                                            +----reactivate----+

- TRIALING: on a trial plan; the trial grant is a one-off per team
  (``start_trial``), no period grants.
- ACTIVE: every period issues the plan's allowances.
- CANCELLED: periods that start before ``cancel_at`` (the end of the period
  in which the team cancelled; the moment of cancelling for a trial, which
  has no paid period to finish) are still issued, later ones are not.
  Purchased credits are never touched. ``reactivate`` before ``cancel_at``
  simply undoes the cancellation; after it, a new term starts at ``now``
  (new anchor, period 0 issued in full).

Grant origins name the period by its start instant, not its index, because
a new term restarts the index at 0: ``period:<start>:<allowance>``,
``seats:<start>:<allowance>:<old>-<new>``, ``upgrade:<start>:<allowance>:<old>-<new>``
and ``trial``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache

from creditbook.domain.book import NewGrant, TeamBook
from creditbook.domain.catalog import Allowance, Catalog, Plan
from creditbook.domain.errors import Conflict, InvalidCatalog, InvalidInput
from creditbook.domain.grants import Category, Source
from creditbook.domain.ledger import Entry
from creditbook.domain.limits import MAX_SEATS
from creditbook.domain.periods import (
    Period,
    period,
    period_at,
    prorate,
    require_aware,
    time_zone,
)

__all__ = [
    "MAX_SEATS",
    "MIN_SEATS",
    "Event",
    "EventKind",
    "Subscription",
    "SubscriptionStatus",
    "TrialAlreadyUsed",
    "cancel",
    "catch_up",
    "change_plan",
    "change_seats",
    "current_period",
    "new_subscription",
    "reactivate",
    "start_trial",
]

MIN_SEATS = 1


class TrialAlreadyUsed(Conflict):
    code = "trial_already_used"
    title = "Trial already used"

    def __init__(self, team_id: str) -> None:
        super().__init__(
            f"team {team_id!r} has already had its free trial; the trial is granted once "
            "per team, ever",
            team_id=team_id,
        )


class SubscriptionStatus(StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    CANCELLED = "cancelled"


@dataclass(slots=True)
class Subscription:
    """A team's subscription; the ``subscriptions`` table mirrors these fields."""

    team_id: str
    plan: str
    seats: int
    status: SubscriptionStatus
    anchor: datetime  # start of period 0 of the current term (UTC)
    time_zone: str  # IANA name; boundaries keep their local time in it
    # Highest period index whose boundary has been handled (grants issued if
    # the period was paid for); -1 before period 0. Reset to -1 with a new term.
    issued_through: int = -1
    trial_used: bool = False
    trial_ends_at: datetime | None = None
    pending_plan: str | None = None  # a downgrade taking effect at the next boundary
    cancel_at: datetime | None = None  # set when cancelled: end of the last paid period

    def period_at(self, at: datetime) -> Period:
        return period_at(self.anchor, self.time_zone, at)


class EventKind(StrEnum):
    HOLD_EXPIRED = "hold_expired"
    GRANT_EXPIRED = "grant_expired"
    GRANT_ISSUED = "grant_issued"
    PLAN_CHANGED = "plan_changed"
    DOWNGRADE_SCHEDULED = "downgrade_scheduled"
    SEATS_CHANGED = "seats_changed"
    TRIAL_STARTED = "trial_started"
    CANCELLED = "cancelled"
    REACTIVATED = "reactivated"


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a subscription; ``entry`` when credits moved."""

    kind: EventKind
    at: datetime  # when it took effect (a period start for boundary events)
    period: int | None = None
    entry: Entry | None = None
    detail: str = ""


# ---- creating and reading ---------------------------------------------------


def new_subscription(
    team_id: str,
    catalog: Catalog,
    *,
    plan: str,
    anchor: datetime,
    time_zone: str,
    seats: int = 1,
) -> Subscription:
    """A subscription whose period 0 starts at ``anchor``; TRIALING on a trial plan."""
    chosen = catalog.plan(plan)
    _check_seats(seats)
    _check_zone(time_zone)
    return Subscription(
        team_id=team_id,
        plan=chosen.key,
        seats=seats,
        status=SubscriptionStatus.TRIALING if _is_trial_plan(chosen) else SubscriptionStatus.ACTIVE,
        anchor=require_aware(anchor, "anchor"),
        time_zone=time_zone,
    )


def current_period(sub: Subscription, now: datetime) -> Period:
    """The period of the current term that contains ``now``."""
    return period_at(sub.anchor, sub.time_zone, now)


# ---- catching up ------------------------------------------------------------


def catch_up(sub: Subscription, book: TeamBook, catalog: Catalog, now: datetime) -> list[Event]:
    """Bring the team up to ``now``: holds, expiries, then every boundary crossed, once."""
    now = _check_now(book, now)
    events = [
        Event(EventKind.HOLD_EXPIRED, now, entry=e, detail=f"hold {e.hold_id} expired")
        for e in book.expire_holds()
    ]
    events += _expire(book, now)
    current = period_at(sub.anchor, sub.time_zone, now).index
    for index in range(sub.issued_through + 1, current + 1):
        p = period(sub.anchor, sub.time_zone, index)
        if sub.pending_plan is not None:
            old, sub.plan, sub.pending_plan = sub.plan, sub.pending_plan, None
            events.append(
                Event(EventKind.PLAN_CHANGED, p.start, index, detail=f"{old} -> {sub.plan}")
            )
        if _is_paid(sub, p):
            events += _issue_period(sub, book, catalog.plan(sub.plan), p)
        sub.issued_through = index
        events += _expire(book, now)
    return events


# ---- commands ---------------------------------------------------------------


def start_trial(
    sub: Subscription,
    book: TeamBook,
    catalog: Catalog,
    now: datetime,
    *,
    plan: str | None = None,
) -> list[Event]:
    """Grant the trial's free credits, once per team ever, expiring when the trial ends.

    The trial plan is ``plan``, else the subscription's plan if it is a trial
    plan, else the catalog's trial plan (lowest rank). A plan with
    ``trial_days = 0`` grants trial credits that do not expire.
    """
    now = _check_now(book, now)
    if sub.trial_used:
        raise TrialAlreadyUsed(sub.team_id)
    trial = _trial_plan(sub, catalog, plan)
    events = catch_up(sub, book, catalog, now)
    ends = now + timedelta(days=trial.trial_days) if trial.trial_days > 0 else None
    grant = book.issue(
        credits=trial.trial_credits,
        source=Source.TRIAL,
        category=Category.FREE,
        bucket="trial",
        effective_at=now,
        expires_at=ends,
        origin="trial",
        memo=f"{trial.name}: {trial.trial_credits} credits",
    )
    sub.trial_used = True
    sub.trial_ends_at = ends
    events.append(
        Event(EventKind.TRIAL_STARTED, now, entry=book.entries[-1], detail=f"grant {grant.id}")
    )
    return events


def change_seats(
    sub: Subscription, book: TeamBook, catalog: Catalog, new_seats: int, now: datetime
) -> list[Event]:
    """Set the seat count; added seats grant their allowance per the catalog's seat policy.

    ``prorate``: the allowance times the share of the period left;
    ``full``: the whole allowance; ``none``: nothing until the next period.
    Removed seats take nothing back. Only a paid period grants anything.
    """
    now = _check_now(book, now)
    _check_seats(new_seats)
    policy = catalog.seat_policy
    if policy not in ("prorate", "full", "none"):
        raise InvalidCatalog(f"seat_policy {policy!r} is not one of prorate, full, none")
    events = catch_up(sub, book, catalog, now)
    old = sub.seats
    if new_seats == old:
        return events
    sub.seats = new_seats
    events.append(Event(EventKind.SEATS_CHANGED, now, detail=f"{old} -> {new_seats}"))
    p = current_period(sub, now)
    added = new_seats - old
    if added <= 0 or policy == "none" or p.index < 0 or not _is_paid(sub, p):
        return events
    plan = catalog.plan(sub.plan)
    for i, allowance in enumerate(plan.allowances):
        full = added * allowance.credits_per_seat
        credits = prorate(full, p, now) if policy == "prorate" else full
        events += _issue(
            book,
            allowance,
            credits,
            p,
            effective_at=now,
            origin=f"seats:{_stamp(p.start)}:{i}:{old}-{new_seats}",
            memo=f"{added} seats added in period {p.index} ({policy}): "
            f"{credits} {allowance.bucket} credits",
        )
    return events


def change_plan(
    sub: Subscription, book: TeamBook, catalog: Catalog, new_plan: str, now: datetime
) -> list[Event]:
    """Move to ``new_plan``: an upgrade at once, a downgrade per the catalog's policy.

    Upgrade (higher rank): the plan changes now and, for each allowance, the
    per-seat increase times the seats, prorated by the time left, is granted
    until the period ends (allowances are matched by bucket and scope).
    Downgrade or same rank: at the next boundary (``next_period``) or now
    (``immediate``); either way nothing already granted is taken back and
    nothing extra is granted. Choosing the current plan cancels a pending
    downgrade. From TRIALING, or CANCELLED past ``cancel_at``, a new term on
    ``new_plan`` starts now (see ``reactivate``).
    """
    now = _check_now(book, now)
    target = catalog.plan(new_plan)
    policy = catalog.downgrade_policy
    if policy not in ("next_period", "immediate"):
        raise InvalidCatalog(f"downgrade_policy {policy!r} is not one of next_period, immediate")
    if _needs_new_term(sub, now):
        return reactivate(sub, book, catalog, now, plan=target.key)
    events = catch_up(sub, book, catalog, now)
    if target.key == sub.plan:
        if sub.pending_plan is not None:
            events.append(
                Event(EventKind.PLAN_CHANGED, now, detail=f"pending {sub.pending_plan} dropped")
            )
            sub.pending_plan = None
        return events
    current = catalog.plan(sub.plan)
    if target.rank <= current.rank:
        if policy == "next_period":
            sub.pending_plan = target.key
            p = current_period(sub, now)
            events.append(
                Event(
                    EventKind.DOWNGRADE_SCHEDULED,
                    p.end,
                    p.index + 1,
                    detail=f"{current.key} -> {target.key}",
                )
            )
        else:
            sub.plan, sub.pending_plan = target.key, None
            events.append(
                Event(EventKind.PLAN_CHANGED, now, detail=f"{current.key} -> {target.key}")
            )
        return events
    sub.plan, sub.pending_plan = target.key, None
    events.append(Event(EventKind.PLAN_CHANGED, now, detail=f"{current.key} -> {target.key}"))
    p = current_period(sub, now)
    if p.index < 0 or not _is_paid(sub, p):
        return events
    before = {_allowance_key(a): a.credits_per_seat for a in current.allowances}
    for i, allowance in enumerate(target.allowances):
        increase = allowance.credits_per_seat - before.get(_allowance_key(allowance), 0)
        if increase <= 0:
            continue
        credits = prorate(sub.seats * increase, p, now)
        events += _issue(
            book,
            allowance,
            credits,
            p,
            effective_at=now,
            origin=f"upgrade:{_stamp(p.start)}:{i}:{current.key}-{target.key}",
            memo=f"upgrade {current.name} -> {target.name} in period {p.index}: "
            f"{credits} {allowance.bucket} credits",
        )
    return events


def cancel(sub: Subscription, now: datetime) -> list[Event]:
    """Stop the free grants after the current period; purchased credits are untouched.

    The grants already issued expire at the period end as always; no period
    starting at or after ``cancel_at`` is issued. Cancelling twice changes
    nothing.
    """
    now = require_aware(now, "now")
    if sub.status is SubscriptionStatus.CANCELLED:
        return []
    p = current_period(sub, now)
    # A trial, or a term whose period 0 has not begun, has no paid period to
    # finish: the cancellation takes effect at once.
    paid = sub.status is SubscriptionStatus.ACTIVE and p.index >= 0
    sub.cancel_at = p.end if paid else now
    sub.status = SubscriptionStatus.CANCELLED
    return [Event(EventKind.CANCELLED, now, p.index, detail=f"free grants stop at {sub.cancel_at}")]


def reactivate(
    sub: Subscription,
    book: TeamBook,
    catalog: Catalog,
    now: datetime,
    *,
    plan: str | None = None,
) -> list[Event]:
    """Resume free grants.

    CANCELLED before ``cancel_at``: the cancellation is undone (same anchor;
    a different ``plan`` is then applied as ``change_plan`` would). CANCELLED
    after it, or TRIALING: a new term starts now: ``now`` is the new anchor
    and period 0 is issued in full, on ``plan`` (else the pending plan, else
    the current one), which must not be a trial plan. ACTIVE: nothing to do
    (or ``change_plan`` if ``plan`` differs).
    """
    now = _check_now(book, now)
    chosen = catalog.plan(plan) if plan is not None else None
    if not _needs_new_term(sub, now):
        events = catch_up(sub, book, catalog, now)
        if sub.status is SubscriptionStatus.CANCELLED:
            sub.status, sub.cancel_at = SubscriptionStatus.ACTIVE, None
            events.append(Event(EventKind.REACTIVATED, now, detail="cancellation undone"))
        if chosen is not None and chosen.key != sub.plan:
            events += change_plan(sub, book, catalog, chosen.key, now)
        return events
    key = chosen.key if chosen is not None else (sub.pending_plan or sub.plan)
    target = catalog.plan(key)
    if _is_trial_plan(target):
        raise InvalidInput(
            f"plan {key!r} is a trial plan; choose a paid plan to subscribe: "
            + ", ".join(sorted(k for k, p in catalog.plans.items() if not _is_trial_plan(p))),
            plan=key,
        )
    events = catch_up(sub, book, catalog, now)
    old = sub.plan
    sub.plan, sub.pending_plan, sub.cancel_at = target.key, None, None
    sub.status = SubscriptionStatus.ACTIVE
    sub.anchor, sub.issued_through = now, -1
    events.append(
        Event(EventKind.REACTIVATED, now, 0, detail=f"new term from {now} on {old} -> {target.key}")
    )
    return events + catch_up(sub, book, catalog, now)


# ---- helpers ----------------------------------------------------------------


def _issue(
    book: TeamBook,
    allowance: Allowance,
    credits: int,
    p: Period,
    *,
    effective_at: datetime,
    origin: str,
    memo: str,
) -> list[Event]:
    if credits <= 0:
        return []
    book.issue(
        credits=credits,
        # The calling allowance (a narrowed scope) is its own source so the
        # ledger tells it apart from the plan's general credits.
        source=Source.PLAN if allowance.scope is None else Source.ALLOWANCE,
        category=Category.FREE,
        bucket=allowance.bucket,
        scope=allowance.scope,
        effective_at=effective_at,
        expires_at=p.end,
        origin=origin,
        memo=memo,
    )
    return [Event(EventKind.GRANT_ISSUED, effective_at, p.index, book.entries[-1], memo)]


def _issue_period(sub: Subscription, book: TeamBook, plan: Plan, p: Period) -> list[Event]:
    """A period's allowances, issued together as one ``grant`` entry."""
    specs: list[NewGrant] = []
    parts: list[str] = []
    for i, allowance in enumerate(plan.allowances):
        credits = sub.seats * allowance.credits_per_seat
        if credits <= 0:
            continue
        specs.append(
            NewGrant(
                credits,
                Source.PLAN if allowance.scope is None else Source.ALLOWANCE,
                Category.FREE,
                allowance.bucket,
                allowance.scope,
                effective_at=p.start,
                expires_at=p.end,
                origin=f"period:{_stamp(p.start)}:{i}",
            )
        )
        parts.append(f"{allowance.credits_per_seat} {allowance.bucket}")
    if not specs:
        return []
    memo = f"{plan.name}, period {p.index}: {sub.seats} seats x {' + '.join(parts)} credits"
    book.issue_all(specs, memo=memo)
    entry = book.entries[-1]
    return [Event(EventKind.GRANT_ISSUED, p.start, p.index, entry, memo) for _ in specs]


def _expire(book: TeamBook, now: datetime) -> list[Event]:
    return [
        Event(EventKind.GRANT_EXPIRED, now, entry=e, detail=e.memo or "")
        for e in book.expire_grants()
    ]


def _is_paid(sub: Subscription, p: Period) -> bool:
    if sub.status is SubscriptionStatus.ACTIVE:
        return True
    if sub.status is SubscriptionStatus.CANCELLED:
        return sub.cancel_at is not None and p.start < sub.cancel_at
    return False


def _needs_new_term(sub: Subscription, now: datetime) -> bool:
    if sub.status is SubscriptionStatus.TRIALING:
        return True
    return sub.status is SubscriptionStatus.CANCELLED and (
        sub.cancel_at is None or now >= sub.cancel_at
    )


def _is_trial_plan(plan: Plan) -> bool:
    return plan.is_trial and not plan.allowances


def _trial_plan(sub: Subscription, catalog: Catalog, key: str | None) -> Plan:
    if key is not None:
        chosen = catalog.plan(key)
        if not chosen.is_trial:
            raise InvalidInput(f"plan {key!r} grants no trial credits", plan=key)
        return chosen
    current = catalog.plan(sub.plan)
    if current.is_trial:
        return current
    trials = sorted(
        (p for p in catalog.plans.values() if p.is_trial), key=lambda p: (p.rank, p.key)
    )
    if not trials:
        raise InvalidCatalog("the catalog has no trial plan (a plan with trial_credits > 0)")
    return trials[0]


def _allowance_key(allowance: Allowance) -> tuple[str, frozenset[str] | None]:
    return (allowance.bucket, allowance.scope)


def _check_seats(seats: int) -> None:
    if isinstance(seats, bool) or not isinstance(seats, int) or not MIN_SEATS <= seats <= MAX_SEATS:
        raise InvalidInput(
            f"seats must be a whole number between {MIN_SEATS} and {MAX_SEATS}, got {seats!r}",
            minimum=MIN_SEATS,
            maximum=MAX_SEATS,
        )


def _check_zone(name: str) -> None:
    time_zone(name)


def _check_now(book: TeamBook, now: datetime) -> datetime:
    now = require_aware(now, "now")
    if require_aware(book.now, "book.now") != now:
        # A bug in the caller, not an input: entries would be dated apart
        # from the decisions that made them.
        raise ValueError(f"book.now {book.now} differs from now {now}; load the book at now")
    return now


def _stamp(at: datetime) -> str:
    # Period starts are UTC and each is stamped for every team on it; a
    # datetime in another zone could equal a cached one yet print differently,
    # so only UTC ones take the cache.
    if at.tzinfo is UTC:
        return _stamp_utc(at)
    return at.isoformat().replace("+00:00", "Z")


@lru_cache(maxsize=4096)
def _stamp_utc(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
