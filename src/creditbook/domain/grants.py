"""Grants (buckets of credits) and the order in which they are spent.

A grant is usable from ``effective_at`` (inclusive) to ``expires_at``
(exclusive). Eligible grants for a feature are spent narrower scope first,
then free before purchased, then soonest expiry (none last), then oldest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class Category(StrEnum):
    FREE = "free"
    PURCHASED = "purchased"


class Source(StrEnum):
    TRIAL = "trial"
    PLAN = "plan"
    ALLOWANCE = "allowance"
    PURCHASE = "purchase"
    GIFT = "gift"
    ADJUSTMENT = "adjustment"


@dataclass(slots=True)
class Grant:
    """A bucket of credits. ``remaining`` includes ``reserved`` (held) credits."""

    id: str
    team_id: str
    source: Source
    category: Category
    scope: frozenset[str] | None  # None: every feature
    amount: int
    remaining: int
    reserved: int
    effective_at: datetime
    expires_at: datetime | None
    created_at: datetime
    origin: str | None = None  # what created it: plan period, purchase id, ...
    bucket: str = "subscription"  # trial, subscription, calling, gifted, purchased
    closed: bool = False  # expired or revoked: written off, never usable again

    @property
    def available(self) -> int:
        return self.remaining - self.reserved

    def covers(self, feature: str) -> bool:
        return self.scope is None or feature in self.scope

    def is_usable(self, at: datetime) -> bool:
        if self.closed or self.effective_at > at:
            return False
        return self.expires_at is None or at < self.expires_at

    def is_expired(self, at: datetime) -> bool:
        return self.expires_at is not None and at >= self.expires_at


NEVER = datetime.max.replace(tzinfo=UTC)


def spending_key(grant: Grant) -> tuple[int, int, datetime, datetime, str]:
    """Sort key of the spending order (see module docstring)."""
    scope_width = len(grant.scope) if grant.scope is not None else 1 << 30
    category_rank = 0 if grant.category is Category.FREE else 1
    expiry = grant.expires_at if grant.expires_at is not None else NEVER
    return (scope_width, category_rank, expiry, grant.effective_at, grant.id)


def eligible(grants: Iterable[Grant], feature: str, at: datetime) -> list[Grant]:
    """Grants that can pay for ``feature`` at ``at``, in spending order."""
    usable = [g for g in grants if g.covers(feature) and g.is_usable(at) and g.available > 0]
    usable.sort(key=spending_key)
    return usable


def available_for(grants: Iterable[Grant], feature: str, at: datetime) -> int:
    return sum(g.available for g in eligible(grants, feature, at))


def split(grants: Sequence[Grant], credits: int) -> list[tuple[Grant, int]]:
    """Take ``credits`` from ``grants`` in the given order; [] when they fall short."""
    taken: list[tuple[Grant, int]] = []
    left = credits
    for grant in grants:
        if left == 0:
            break
        take = min(grant.available, left)
        if take > 0:
            taken.append((grant, take))
            left -= take
    return taken if left == 0 else []
