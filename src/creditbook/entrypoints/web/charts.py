"""The dashboard's charts: daily usage by feature and the balance over time, as SVG.

Two small read-only aggregates over the ledger (one SQL query each, ``team_id``
first), folded into calendar days of the team's time zone the same way as
``service.usage`` does (15-minute slots), and drawn server-side by ``pygal``
with its JavaScript turned off: the page works offline and without scripts.
Each chart comes with the same numbers as a table, for screen readers and
for anyone who prefers reading figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pygal  # type: ignore[import-untyped]
from pygal.style import Style  # type: ignore[import-untyped]
from sqlalchemy import ColumnElement, Integer, and_, cast, func, literal_column, select

from creditbook.adapters.db.tables import ledger_entries, ledger_postings
from creditbook.domain.ledger import EntryKind
from creditbook.service.credits import Creditbook

SLOT_SECONDS = 900
SPENT = (EntryKind.CHARGE.value, EntryKind.CAPTURE.value)
# The pool's own accounts: what a team holds is available + held.
POOL = ("available", "held")
# Colour-blind-safe palette (Okabe-Ito), dark enough on white for contrast.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#8A6D00", "#56B4E9", "#000000")


@dataclass(frozen=True, slots=True)
class Series:
    """Days (oldest first) and, per name, one value per day."""

    days: tuple[date, ...]
    values: dict[str, tuple[int, ...]]


def _slot(dialect: str) -> ColumnElement[Any]:
    created = ledger_entries.c.created_at
    if dialect == "postgresql":
        return cast(func.floor(func.extract("epoch", created) / SLOT_SECONDS), Integer)
    return cast(func.strftime("%s", created), Integer) / SLOT_SECONDS


def _day_of(slot: int, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(int(slot) * SLOT_SECONDS, UTC).astimezone(zone).date()


def _window(book: Creditbook, days: int, zone: ZoneInfo) -> tuple[tuple[date, ...], datetime]:
    today = book.clock.now().astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=zone)
    return tuple(first + timedelta(days=i) for i in range(days)), start


def daily_usage(
    book: Creditbook, team_id: str, days: int, *, member_id: str | None = None
) -> Series:
    """Credits spent per feature per local day over the last ``days`` days (today included).

    ``member_id`` restricts it to one member's spending (what a member may see).
    """
    team = book.get_team(team_id)
    zone = ZoneInfo(team.time_zone)
    day_list, start = _window(book, days, zone)
    e = ledger_entries
    with book.uow() as uow:
        query = (
            select(e.c.feature, _slot(uow.dialect).label("s"), func.sum(e.c.credits))
            .where(e.c.team_id == team_id, e.c.kind.in_(SPENT), e.c.created_at >= start)
            .group_by(literal_column("1"), literal_column("2"))
        )
        if member_id is not None:
            query = query.where(e.c.member_id == member_id)
        rows = list(uow.conn.execute(query))
    index = {d: i for i, d in enumerate(day_list)}
    found: dict[str, list[int]] = {}
    for feature, slot, credits in rows:
        i = index.get(_day_of(slot, zone))
        if i is None:
            continue
        found.setdefault(feature or "other", [0] * len(day_list))[i] += int(credits or 0)
    return Series(day_list, {k: tuple(v) for k, v in sorted(found.items())})


def balance_history(book: Creditbook, team_id: str, days: int) -> Series:
    """The team's credits (available + reserved) at the end of each local day."""
    team = book.get_team(team_id)
    zone = ZoneInfo(team.time_zone)
    day_list, start = _window(book, days, zone)
    e, p = ledger_entries, ledger_postings
    joined = p.join(e, and_(e.c.team_id == p.c.team_id, e.c.id == p.c.entry_id))
    pool = and_(p.c.team_id == team_id, p.c.account.in_(POOL))
    with book.uow() as uow:
        before = uow.conn.execute(
            select(func.coalesce(func.sum(p.c.amount), 0))
            .select_from(joined)
            .where(pool, e.c.created_at < start)
        ).scalar_one()
        rows = list(
            uow.conn.execute(
                select(_slot(uow.dialect).label("s"), func.sum(p.c.amount))
                .select_from(joined)
                .where(pool, e.c.created_at >= start)
                .group_by(literal_column("1"))
            )
        )
    change = dict.fromkeys(day_list, 0)
    for slot, amount in rows:
        day = _day_of(slot, zone)
        if day in change:
            change[day] += int(amount or 0)
    running, out = int(before), []
    for d in day_list:
        running += change[d]
        out.append(running)
    return Series(day_list, {"credits": tuple(out)})


def _style() -> Any:
    return Style(
        background="white",
        plot_background="white",
        foreground="#1a1a1a",
        foreground_strong="#1a1a1a",
        foreground_subtle="#595959",
        colors=PALETTE,
        font_family="system-ui, sans-serif",
        label_font_size=12,
        major_label_font_size=12,
        legend_font_size=13,
        title_font_size=15,
    )


def _labels(days: tuple[date, ...]) -> tuple[list[str], list[str]]:
    labels = [d.strftime("%b %d") for d in days]
    step = max(1, len(days) // 6)
    return labels, labels[::step]


_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL)


def _render(chart: Any) -> str:
    svg: str = chart.render(is_unicode=True)
    # pygal always writes an inline config script for its (unused) tooltips; the
    # page's CSP would block it, so it is dropped rather than left to fail.
    return _SCRIPT.sub("", svg)


def usage_svg(series: Series, title: str) -> str:
    chart = pygal.StackedBar(
        style=_style(),
        js=[],  # pygal would otherwise link its tooltip script from the internet
        disable_xml_declaration=True,
        width=900,
        height=320,
        legend_at_bottom=True,
        legend_at_bottom_columns=4,
        show_minor_x_labels=False,
        x_label_rotation=0,
        print_values=False,
        explicit_size=False,
        truncate_label=-1,
        no_data_text="No usage in this period",
        title=title,
    )
    labels, major = _labels(series.days)
    chart.x_labels = labels
    chart.x_labels_major = major
    for name, values in series.values.items():
        chart.add(name, list(values))
    return _render(chart)


def balance_svg(series: Series, title: str) -> str:
    chart = pygal.Line(
        style=_style(),
        js=[],
        disable_xml_declaration=True,
        width=900,
        height=280,
        show_legend=False,
        show_minor_x_labels=False,
        show_dots=False,
        fill=True,
        explicit_size=False,
        truncate_label=-1,
        title=title,
    )
    labels, major = _labels(series.days)
    chart.x_labels = labels
    chart.x_labels_major = major
    chart.add("credits", list(series.values.get("credits", ())))
    return _render(chart)
