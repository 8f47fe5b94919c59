"""``creditbook audit``: recompute every balance from the ledger and compare.

Checks, per team: every entry's postings sum to zero; each grant's amount,
remaining and reserved equal what its postings say; each grant's reserved
equals what its active holds reserve; each hold has one ``hold`` entry and,
once resolved, exactly one resolving entry (capture or release) and none
while active; a captured hold never captured more than it held.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Table, case, func, select

from creditbook.adapters.db.tables import grants, holds, ledger_entries, ledger_postings, teams
from creditbook.domain.errors import TeamNotFound


@dataclass
class AuditReport:
    teams: int = 0
    grants: int = 0
    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


def audit(conn: Connection, team_id: str | None = None) -> AuditReport:
    """Audit one team, or all; ``TeamNotFound`` for an unknown team."""
    report = AuditReport()
    if team_id is not None and (
        conn.execute(select(teams.c.id).where(teams.c.id == team_id)).first() is None
    ):
        raise TeamNotFound(team_id)
    p, g, e, h = ledger_postings, grants, ledger_entries, holds

    def scoped(query: Select[Any], table: Table) -> Select[Any]:
        return query if team_id is None else query.where(table.c.team_id == team_id)

    count_teams = select(func.count()).select_from(teams)
    if team_id is not None:
        count_teams = count_teams.where(teams.c.id == team_id)
    report.teams = conn.execute(count_teams).scalar_one()
    report.entries = conn.execute(scoped(select(func.count()).select_from(e), e)).scalar_one()

    unbalanced = conn.execute(
        scoped(
            select(p.c.team_id, p.c.entry_id, func.sum(p.c.amount).label("total"))
            .group_by(p.c.team_id, p.c.entry_id)
            .having(func.sum(p.c.amount) != 0),
            p,
        )
    )
    for row in unbalanced:
        report.problems.append(
            f"team {row.team_id}: entry {row.entry_id} postings sum to {row.total}, not 0"
        )

    orphans = conn.execute(
        scoped(
            select(p.c.team_id, p.c.entry_id)
            .outerjoin(e, (e.c.team_id == p.c.team_id) & (e.c.id == p.c.entry_id))
            .where(e.c.id.is_(None))
            .distinct(),
            p,
        )
    )
    for row in orphans:
        report.problems.append(f"team {row.team_id}: postings of missing entry {row.entry_id}")

    def total(account: str) -> ColumnElement[Any]:
        return func.coalesce(func.sum(case((p.c.account == account, p.c.amount), else_=0)), 0)

    sums = {
        (row.team_id, row.grant_id): row
        for row in conn.execute(
            scoped(
                select(
                    p.c.team_id,
                    p.c.grant_id,
                    total("issued").label("issued"),
                    total("available").label("available"),
                    total("held").label("held"),
                ).group_by(p.c.team_id, p.c.grant_id),
                p,
            )
        )
    }
    reserved_by_holds: dict[tuple[str, str], int] = {}
    hold_rows = list(conn.execute(scoped(select(h), h)))
    for hold in hold_rows:
        allocated = sum(int(c) for _, c in hold.allocations)
        if allocated != hold.amount:
            report.problems.append(
                f"team {hold.team_id}: hold {hold.id} allocations sum to {allocated}, "
                f"not its amount {hold.amount}"
            )
        if hold.captured > hold.amount:
            report.problems.append(f"team {hold.team_id}: hold {hold.id} captured above its amount")
        if hold.status == "active":
            for grant_id, credits in hold.allocations:
                key = (hold.team_id, str(grant_id))
                reserved_by_holds[key] = reserved_by_holds.get(key, 0) + int(credits)

    for row in conn.execute(scoped(select(g), g)):
        report.grants += 1
        key = (row.team_id, row.id)
        s = sums.get(key)
        amount = -int(s.issued) if s else 0
        remaining = int(s.available) + int(s.held) if s else 0
        reserved = int(s.held) if s else 0
        for name, stored, computed in (
            ("amount", row.amount, amount),
            ("remaining", row.remaining, remaining),
            ("reserved", row.reserved, reserved),
        ):
            if stored != computed:
                report.problems.append(
                    f"team {row.team_id}: grant {row.id} {name} is {stored} "
                    f"but the ledger says {computed}"
                )
        if row.reserved != reserved_by_holds.get(key, 0):
            report.problems.append(
                f"team {row.team_id}: grant {row.id} reserves {row.reserved} "
                f"but its active holds reserve {reserved_by_holds.get(key, 0)}"
            )
    known_grants = {(r.team_id, r.id) for r in conn.execute(scoped(select(g.c.team_id, g.c.id), g))}
    for key in sums:
        if key not in known_grants:
            report.problems.append(f"team {key[0]}: postings to missing grant {key[1]}")

    resolving = {
        (row.team_id, row.hold_id): (row.holds_, row.resolves)
        for row in conn.execute(
            scoped(
                select(
                    e.c.team_id,
                    e.c.hold_id,
                    func.sum(case((e.c.kind == "hold", 1), else_=0)).label("holds_"),
                    func.sum(case((e.c.kind.in_(("capture", "release")), 1), else_=0)).label(
                        "resolves"
                    ),
                )
                .where(e.c.hold_id.is_not(None))
                .group_by(e.c.team_id, e.c.hold_id),
                e,
            )
        )
    }
    for hold in hold_rows:
        placed, resolves = resolving.get((hold.team_id, hold.id), (0, 0))
        expected = 0 if hold.status == "active" else 1
        if placed != 1 or resolves != expected:
            report.problems.append(
                f"team {hold.team_id}: hold {hold.id} ({hold.status}) has {placed} hold entries "
                f"and {resolves} resolving entries; expected 1 and {expected}"
            )
    return report
