"""The ledger: append-only entries whose postings balance (double entry).

Every grant has two accounts, ``available`` and ``held``; credits come into a
grant from ``issued`` and leave it to ``used`` (by feature), ``expired`` or
``revoked``. Each entry's postings sum to zero, so a grant's remaining
credits are the sum of its ``available`` and ``held`` postings and its
reserved credits the sum of its ``held`` postings: ``check_invariants`` and
``creditbook audit`` recompute the materialized balances from that.

    kind        postings (per grant g)
    grant       issued -n, available +n
    hold        available -n, held +n
    capture     held -n, used +n        (feature)
    release     held -n, available +n
    charge      available -n, used +n   (feature)
    attempt     none: a zero-cost use, kept for hit rates
    expire      available -n, expired +n
    revoke      available -n, revoked +n (refunds and clawbacks)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple


class Account(StrEnum):
    ISSUED = "issued"
    AVAILABLE = "available"
    HELD = "held"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"


class EntryKind(StrEnum):
    GRANT = "grant"
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"
    CHARGE = "charge"
    ATTEMPT = "attempt"
    EXPIRE = "expire"
    REVOKE = "revoke"


# Posting and Entry are named tuples, as beancount's are: immutable, and three
# times cheaper to make than frozen dataclasses (a frozen dataclass sets each
# field through object.__setattr__). A month boundary makes ~10 of them per
# team and every charge 3, so their construction showed in profiles.


class Posting(NamedTuple):
    grant_id: str
    account: Account
    amount: int  # credits; never zero


@dataclass(frozen=True, slots=True)
class Actor:
    """Who caused a movement: a member, an API key, a job, or the operator."""

    member_id: str | None = None
    api_key_id: str | None = None
    job_id: str | None = None
    operator: str | None = None

    def describe(self) -> str:
        parts = [
            f"{name}={value}"
            for name, value in (
                ("member", self.member_id),
                ("key", self.api_key_id),
                ("job", self.job_id),
                ("operator", self.operator),
            )
            if value
        ]
        return ", ".join(parts) or "system"


SYSTEM = Actor()


_NO_META: Mapping[str, str] = MappingProxyType({})


class Entry(NamedTuple):
    """One movement of credits, with everything needed to explain it later."""

    id: str
    team_id: str
    kind: EntryKind
    created_at: datetime
    postings: tuple[Posting, ...]
    credits: int  # the credits this entry moved (what a charge cost)
    actor: Actor = SYSTEM
    feature: str | None = None
    quantity: int | None = None
    outcome: str | None = None
    unit_cost: int | None = None
    multiplier: int | None = None
    hold_id: str | None = None
    idempotency_key: str | None = None
    memo: str | None = None
    meta: Mapping[str, str] = _NO_META

    def is_balanced(self) -> bool:
        return sum([p.amount for p in self.postings]) == 0

    def drawn(self) -> dict[str, int]:
        """Credits by grant that this entry took out of ``available``."""
        out: dict[str, int] = {}
        for p in self.postings:
            if p.account is Account.AVAILABLE and p.amount < 0:
                out[p.grant_id] = out.get(p.grant_id, 0) - p.amount
        return out


@dataclass(frozen=True, slots=True)
class GrantBalance:
    amount: int
    remaining: int
    reserved: int


def balances_from_postings(postings: Iterable[Posting]) -> dict[str, GrantBalance]:
    """Recompute every grant's amount, remaining and reserved from postings."""
    issued: dict[str, int] = {}
    remaining: dict[str, int] = {}
    reserved: dict[str, int] = {}
    for p in postings:
        if p.account is Account.ISSUED:
            issued[p.grant_id] = issued.get(p.grant_id, 0) - p.amount
        elif p.account is Account.AVAILABLE:
            remaining[p.grant_id] = remaining.get(p.grant_id, 0) + p.amount
        elif p.account is Account.HELD:
            remaining[p.grant_id] = remaining.get(p.grant_id, 0) + p.amount
            reserved[p.grant_id] = reserved.get(p.grant_id, 0) + p.amount
    grants = set(issued) | set(remaining) | set(reserved)
    return {
        g: GrantBalance(issued.get(g, 0), remaining.get(g, 0), reserved.get(g, 0)) for g in grants
    }
