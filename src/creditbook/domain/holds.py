"""Holds: credits reserved before the work, captured or released after it.

A hold records which grants it drew from, in draw order. A capture charges
from the front of that list; what is not captured returns to the grants it
came from, the last drawn first. A hold is resolved once: captured,
released or expired; an expired hold behaves exactly like a released one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from creditbook.domain.ledger import Actor


class HoldStatus(StrEnum):
    ACTIVE = "active"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"


@dataclass(slots=True)
class Hold:
    id: str
    team_id: str
    feature: str
    amount: int
    quantity: int
    unit_cost: int
    multiplier: int
    allocations: tuple[tuple[str, int], ...]  # (grant id, credits) in draw order
    status: HoldStatus
    created_at: datetime
    expires_at: datetime
    actor: Actor
    captured: int = 0
    resolved_at: datetime | None = None
    tier: str | None = None
    idempotency_key: str | None = None

    @property
    def is_active(self) -> bool:
        return self.status is HoldStatus.ACTIVE

    def is_past_ttl(self, at: datetime) -> bool:
        return self.status is HoldStatus.ACTIVE and at >= self.expires_at


def split_capture(
    allocations: tuple[tuple[str, int], ...], credits: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Split a hold's allocations into (charged, returned) for a capture of ``credits``.

    Charged comes from the front (the spending order at hold time); returned
    is listed last drawn first.
    """
    charged: list[tuple[str, int]] = []
    returned: list[tuple[str, int]] = []
    left = credits
    for grant_id, held in allocations:
        take = min(held, left)
        if take:
            charged.append((grant_id, take))
            left -= take
        if held - take:
            returned.append((grant_id, held - take))
    returned.reverse()
    return charged, returned
