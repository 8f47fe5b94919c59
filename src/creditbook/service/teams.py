"""Teams and their members: creating, reading, adding (the rows every other service hangs on)."""

from __future__ import annotations

import zoneinfo
from typing import Any

from email_validator import EmailNotValidError, validate_email

from creditbook.domain.errors import AlreadyExists, InvalidInput, TeamNotFound
from creditbook.domain.ids import new_id
from creditbook.domain.team import Member, Role, Team
from creditbook.service.kernel import Kernel


def check_time_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris' or 'UTC'",
            field="time_zone",
        ) from None
    return name


def check_email(email: str) -> str:
    try:
        return validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput(f"invalid email {email!r}: {exc}", field="email") from None


class Teams:
    """Teams and members over the kernel's units of work."""

    def __init__(self, kernel: Kernel[Any]) -> None:
        self.kernel = kernel

    def create_team(self, name: str, *, time_zone: str = "UTC", team_id: str | None = None) -> Team:
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("a team name is 1 to 200 characters", field="name")
        team = Team(
            id=team_id or new_id("team"),
            name=name,
            time_zone=check_time_zone(time_zone),
            created_at=self.kernel.clock.now(),
        )
        with self.kernel.uow() as uow:
            if uow.get_team(team.id) is not None:
                raise AlreadyExists(f"team {team.id!r} already exists", id=team.id)
            uow.add_team(team)
            uow.commit()
        return team

    def get_team(self, team_id: str) -> Team:
        with self.kernel.uow() as uow:
            team: Team | None = uow.get_team(team_id)
        if team is None:
            raise TeamNotFound(team_id)
        return team

    def add_member(
        self,
        team_id: str,
        email: str,
        role: Role | str = Role.MEMBER,
        *,
        monthly_cap: int | None = None,
    ) -> Member:
        member = Member(
            id=new_id("mem"),
            team_id=team_id,
            email=check_email(email),
            role=role if isinstance(role, Role) else Role.parse(role),
            created_at=self.kernel.clock.now(),
            monthly_cap=monthly_cap,
        )
        with self.kernel.uow() as uow:
            uow.lock_team(team_id)
            if uow.find_member_by_email(team_id, member.email) is not None:
                raise AlreadyExists(
                    f"{member.email} is already a member of this team", email=member.email
                )
            uow.add_member(member)
            uow.commit()
        return member

    def members(self, team_id: str) -> list[Member]:
        with self.kernel.uow() as uow:
            if uow.get_team(team_id) is None:
                raise TeamNotFound(team_id)
            found: list[Member] = uow.list_members(team_id)
        return found
