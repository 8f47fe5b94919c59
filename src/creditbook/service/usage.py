"""Usage reports: credits spent by feature, member, API key, job or day, and their CSV.

Spending is what the ledger calls ``charge`` and ``capture`` entries (credits
that went to ``used``); ``attempt`` entries are uses with a non-billable
outcome, counted as ``attempts`` for hit rates. Everything is one SQL
aggregate over ``ledger_entries`` on the team (``team_id`` leads every
filter). Days are calendar days in the team's time zone: SQL groups by
15-minute slots (every real-world UTC offset is a multiple of 15 minutes)
and the slots are folded into local days here, which gives the same answer
on SQLite and PostgreSQL without time-zone support in SQL.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, cast, func, literal_column, select

from creditbook.adapters.db.repository import SqlUnitOfWork
from creditbook.adapters.db.tables import ledger_entries
from creditbook.domain.clock import ensure_aware
from creditbook.domain.errors import InvalidInput, TeamNotFound
from creditbook.domain.ledger import EntryKind
from creditbook.service.access import calendar_month_start
from creditbook.service.csv_safe import csv_writer
from creditbook.service.kernel import Kernel

GROUPS = ("feature", "member", "api_key", "job", "day")
# The ledger column each grouping reads ("day" is computed from ``created_at``).
_GROUP_COLUMNS = {
    "feature": "feature",
    "member": "member_id",
    "api_key": "api_key_id",
    "job": "job_id",
}
SLOT_SECONDS = 900
MAX_RANGE = timedelta(days=366 * 2)
SPENT = (EntryKind.CHARGE.value, EntryKind.CAPTURE.value)


@dataclass(frozen=True, slots=True)
class UsageRow:
    key: str | None  # the feature, the member, key or job id (None: none) or the ISO day
    credits: int
    uses: int
    attempts: int


@dataclass(frozen=True, slots=True)
class UsageReport:
    group_by: str
    since: datetime
    until: datetime
    time_zone: str
    rows: tuple[UsageRow, ...]

    @property
    def total_credits(self) -> int:
        return sum(r.credits for r in self.rows)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv_writer(out, lineterminator="\n")
        writer.writerow([self.group_by, "credits", "uses", "attempts"])
        for r in self.rows:
            writer.writerow([r.key or "", r.credits, r.uses, r.attempts])
        return out.getvalue()


def _slot(dialect: str) -> ColumnElement[Any]:
    """The 15-minute slot (seconds since the epoch // 900) of an entry."""
    if dialect == "postgresql":
        epoch = func.extract("epoch", ledger_entries.c.created_at)
        return cast(func.floor(epoch / SLOT_SECONDS), Integer)
    # SQLite: integer division of integers already floors (times are after 1970).
    return cast(func.strftime("%s", ledger_entries.c.created_at), Integer) / SLOT_SECONDS


def usage(
    kernel: Kernel[SqlUnitOfWork],
    team_id: str,
    *,
    group_by: str = "feature",
    since: datetime | None = None,
    until: datetime | None = None,
    member_id: str | None = None,
) -> UsageReport:
    """Credits spent by the team between ``since`` (inclusive) and ``until`` (exclusive).

    Defaults: from the start of the calendar month in the team's time zone to now.
    ``member_id`` restricts the report to one member's spending.
    """
    if group_by not in GROUPS:
        raise InvalidInput(
            f"unknown group_by {group_by!r}; valid: {', '.join(GROUPS)}", field="group_by"
        )
    now = kernel.clock.now()
    e = ledger_entries
    with kernel.uow() as uow:
        team = uow.get_team(team_id)
        if team is None:
            raise TeamNotFound(team_id)
        start = ensure_aware(since) if since else calendar_month_start(now, team.time_zone)
        end = ensure_aware(until) if until else now
        if end < start:
            raise InvalidInput("'to' must not be before 'from'", field="to")
        if end - start > MAX_RANGE:
            raise InvalidInput("a usage report covers at most two years", field="from")
        spent = func.sum(func.coalesce(e.c.credits, 0)).filter(e.c.kind.in_(SPENT))
        uses = func.count().filter(e.c.kind.in_(SPENT))
        attempts = func.count().filter(e.c.kind == EntryKind.ATTEMPT.value)
        day = group_by == "day"
        group: ColumnElement[Any] = _slot(uow.dialect) if day else e.c[_GROUP_COLUMNS[group_by]]
        query = (
            select(group.label("g"), spent.label("credits"), uses.label("uses"), attempts)
            .where(
                e.c.team_id == team_id,
                e.c.kind.in_([*SPENT, EntryKind.ATTEMPT.value]),
                e.c.created_at >= start,
            )
            # Group by position: the slot expression carries bound parameters, and
            # PostgreSQL would not match it against a second copy of itself.
            .group_by(literal_column("1"))
        )
        if until is not None:
            # Without 'to' the report runs to now, including entries made this instant.
            query = query.where(e.c.created_at < end)
        if member_id is not None:
            query = query.where(e.c.member_id == member_id)
        rows = list(uow.conn.execute(query))
    found: dict[str | None, list[int]] = {}
    zone = ZoneInfo(team.time_zone)
    for row in rows:
        key: str | None
        if group_by == "day":
            instant = datetime.fromtimestamp(int(row[0]) * SLOT_SECONDS, UTC)
            key = instant.astimezone(zone).date().isoformat()
        else:
            key = row[0]
        acc = found.setdefault(key, [0, 0, 0])
        acc[0] += int(row[1] or 0)
        acc[1] += int(row[2] or 0)
        acc[2] += int(row[3] or 0)
    ordered = sorted(found.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    return UsageReport(
        group_by,
        start,
        end,
        team.time_zone,
        tuple(UsageRow(k, v[0], v[1], v[2]) for k, v in ordered),
    )


def local_day(when: datetime, time_zone: str) -> date:
    return when.astimezone(ZoneInfo(time_zone)).date()
