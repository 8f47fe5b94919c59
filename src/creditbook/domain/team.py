"""Teams and their members. A team shares one pool of credits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from creditbook.domain.errors import CapExceeded, InvalidInput, KeyCapExceeded


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls(value)
        except ValueError:
            raise InvalidInput(
                f"unknown role {value!r}; valid roles: admin, member", field="role"
            ) from None


@dataclass(frozen=True, slots=True)
class Team:
    id: str
    name: str
    time_zone: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    team_id: str
    email: str
    role: Role
    created_at: datetime
    monthly_cap: int | None = None
    active: bool = True

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class SpendingCap:
    """A monthly cap on what one member, or one API key, spends of the team's credits.

    ``name`` says whose it is in an error: the member's email, or the key's
    label (its id when it has none).
    """

    kind: Literal["member", "api_key"]
    id: str
    name: str
    monthly_cap: int

    def check(self, spent: int, needed: int) -> None:
        """Refuse ``needed`` more credits when ``spent`` this month leaves too little."""
        if spent + needed > self.monthly_cap:
            error = CapExceeded if self.kind == "member" else KeyCapExceeded
            refused = error(self.name, self.monthly_cap, spent, needed)
            refused.details[f"{self.kind}_id"] = self.id
            raise refused
