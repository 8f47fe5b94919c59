"""What the use cases answer: plain, serializable receipts.

A receipt is stored with its idempotency key and rebuilt from that stored
form on a retry, so a retried request gets exactly the first answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


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
        data = asdict(self)
        data["created_at"] = _iso(self.created_at)
        data["grants"] = [asdict(d) for d in self.grants]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChargeReceipt:
        values = dict(data)
        values["grants"] = tuple(Drawn(**d) for d in data["grants"])
        values["created_at"] = _dt(data["created_at"])
        return cls(**values)


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
        data = asdict(self)
        data["expires_at"] = _iso(self.expires_at)
        data["grants"] = [asdict(d) for d in self.grants]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HoldReceipt:
        values = dict(data)
        values["grants"] = tuple(Drawn(**d) for d in data["grants"])
        values["expires_at"] = _dt(data["expires_at"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ReleaseReceipt:
    hold_id: str
    team_id: str
    released: int
    status: str
    entry_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReleaseReceipt:
        return cls(**data)


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
        data = asdict(self)
        data["scope"] = list(self.scope) if self.scope is not None else None
        data["effective_at"] = _iso(self.effective_at)
        data["expires_at"] = _iso(self.expires_at)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GrantReceipt:
        values = dict(data)
        values["scope"] = tuple(data["scope"]) if data["scope"] is not None else None
        values["effective_at"] = _dt(data["effective_at"])
        values["expires_at"] = _dt(data["expires_at"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class RevokeReceipt:
    grant_id: str
    team_id: str
    revoked: int
    entry_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RevokeReceipt:
        return cls(**data)
