"""Who a verified API key acts for, and what of its team it reaches.

Keys
    A *personal* key (the default) acts with its member's role, admin or
    member. A *service* key is the platform's own code (an enrichment worker,
    a dialer, the AI generator): it spends, settles any hold and sees every
    enrichment job of its team, and reaches no admin endpoint (buying,
    members, keys, caps, settings) whatever its member's role. A service key
    opens no dashboard session: the dashboard is for people.

Reach inside a team
    Members see and act on only the holds they placed and the jobs they
    started; admins and service keys reach the whole team's. What is out of
    a caller's reach is answered exactly as an id of another team (not
    found), so no answer tells a member that another member's job or hold
    exists. ``Principal.confined_to`` is what the API hands the library
    (``placed_by`` of holds, ``started_by`` of jobs).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from creditbook.domain.errors import InvalidInput
from creditbook.domain.team import Role


class KeyKind(StrEnum):
    """A personal key acts with its member's role; a service key is the platform's code."""

    PERSONAL = "personal"
    SERVICE = "service"

    @classmethod
    def parse(cls, value: str) -> KeyKind:
        try:
            return cls(value)
        except ValueError:
            raise InvalidInput(
                f"unknown key kind {value!r}; valid kinds: personal, service", field="kind"
            ) from None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified API key acts for."""

    team_id: str
    member_id: str
    key_id: str
    role: Role
    team_status: str = "active"
    kind: KeyKind = KeyKind.PERSONAL

    @property
    def is_service(self) -> bool:
        return self.kind is KeyKind.SERVICE

    @property
    def is_admin(self) -> bool:
        """An admin's personal key: a service key is never an admin."""
        return self.role is Role.ADMIN and self.kind is KeyKind.PERSONAL

    @property
    def confined_to(self) -> str | None:
        """The member whose own holds and jobs alone this key reaches; None: the whole team.

        Admins and service keys reach every hold and job of their team; a
        member's key only what that member placed or started.
        """
        return None if self.is_admin or self.is_service else self.member_id
