"""What the use cases answer: plain, serializable receipts.

A receipt is stored with its idempotency key and rebuilt from that stored
form on a retry, so a retried request gets exactly the first answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


# The stored form of every receipt is written out by hand: ``dataclasses.asdict``
# deep-copies recursively and was about 40% of a group-commit batch's Python time
# when an idempotency key is stored. Key order follows the field order, as asdict's.


def _drawn_dicts(grants: tuple[Drawn, ...]) -> list[dict[str, Any]]:
    return [
        {"grant_id": d.grant_id, "credits": d.credits, "category": d.category, "bucket": d.bucket}
        for d in grants
    ]


def _drawn_tuple(data: list[dict[str, Any]]) -> tuple[Drawn, ...]:
    return tuple(Drawn(d["grant_id"], d["credits"], d["category"], d["bucket"]) for d in data)


@dataclass(frozen=True, slots=True)
class Drawn:
    """Credits one grant paid (or reserved) for an operation."""

    grant_id: str
    credits: int
    category: str
    bucket: str


@dataclass(frozen=True, slots=True)
class ChargeReceipt:
    """A one-step charge or a capture: what it cost and which grants paid."""

    charge_id: str
    team_id: str
    feature: str
    outcome: str
    quantity: int
    unit_cost: int
    multiplier: int
    credits: int
    grants: tuple[Drawn, ...]
    created_at: datetime
    hold_id: str | None = None
    returned: int = 0  # for captures: credits given back to the grants

    def to_dict(self) -> dict[str, Any]:
        return {
            "charge_id": self.charge_id,
            "team_id": self.team_id,
            "feature": self.feature,
            "outcome": self.outcome,
            "quantity": self.quantity,
            "unit_cost": self.unit_cost,
            "multiplier": self.multiplier,
            "credits": self.credits,
            "grants": _drawn_dicts(self.grants),
            "created_at": self.created_at.isoformat(),
            "hold_id": self.hold_id,
            "returned": self.returned,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChargeReceipt:
        return cls(
            charge_id=data["charge_id"],
            team_id=data["team_id"],
            feature=data["feature"],
            outcome=data["outcome"],
            quantity=data["quantity"],
            unit_cost=data["unit_cost"],
            multiplier=data["multiplier"],
            credits=data["credits"],
            grants=_drawn_tuple(data["grants"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            hold_id=data.get("hold_id"),
            returned=data.get("returned", 0),
        )


@dataclass(frozen=True, slots=True)
class HoldReceipt:
    hold_id: str
    team_id: str
    feature: str
    credits: int
    quantity: int
    expires_at: datetime
    status: str
    grants: tuple[Drawn, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "hold_id": self.hold_id,
            "team_id": self.team_id,
            "feature": self.feature,
            "credits": self.credits,
            "quantity": self.quantity,
            "expires_at": self.expires_at.isoformat(),
            "status": self.status,
            "grants": _drawn_dicts(self.grants),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HoldReceipt:
        return cls(
            hold_id=data["hold_id"],
            team_id=data["team_id"],
            feature=data["feature"],
            credits=data["credits"],
            quantity=data["quantity"],
            expires_at=datetime.fromisoformat(data["expires_at"]),
            status=data["status"],
            grants=_drawn_tuple(data.get("grants", [])),
        )


@dataclass(frozen=True, slots=True)
class ReleaseReceipt:
    hold_id: str
    team_id: str
    released: int
    status: str
    entry_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "hold_id": self.hold_id,
            "team_id": self.team_id,
            "released": self.released,
            "status": self.status,
            "entry_id": self.entry_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReleaseReceipt:
        return cls(
            hold_id=data["hold_id"],
            team_id=data["team_id"],
            released=data["released"],
            status=data["status"],
            entry_id=data["entry_id"],
        )


@dataclass(frozen=True, slots=True)
class GrantReceipt:
    grant_id: str
    team_id: str
    credits: int
    category: str
    source: str
    bucket: str
    scope: tuple[str, ...] | None
    effective_at: datetime
    expires_at: datetime | None
    entry_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "grant_id": self.grant_id,
            "team_id": self.team_id,
            "credits": self.credits,
            "category": self.category,
            "source": self.source,
            "bucket": self.bucket,
            "scope": list(self.scope) if self.scope is not None else None,
            "effective_at": self.effective_at.isoformat(),
            "expires_at": _iso(self.expires_at),
            "entry_id": self.entry_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GrantReceipt:
        scope = data["scope"]
        return cls(
            grant_id=data["grant_id"],
            team_id=data["team_id"],
            credits=data["credits"],
            category=data["category"],
            source=data["source"],
            bucket=data["bucket"],
            scope=tuple(scope) if scope is not None else None,
            effective_at=datetime.fromisoformat(data["effective_at"]),
            expires_at=_dt(data["expires_at"]),
            entry_id=data["entry_id"],
        )


@dataclass(frozen=True, slots=True)
class RevokeReceipt:
    grant_id: str
    team_id: str
    revoked: int
    entry_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "grant_id": self.grant_id,
            "team_id": self.team_id,
            "revoked": self.revoked,
            "entry_id": self.entry_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RevokeReceipt:
        return cls(
            grant_id=data["grant_id"],
            team_id=data["team_id"],
            revoked=data["revoked"],
            entry_id=data["entry_id"],
        )
