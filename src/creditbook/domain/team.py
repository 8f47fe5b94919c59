"""Teams and their members. A team shares one pool of credits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from creditbook.domain.errors import InvalidInput


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
