"""Databases as an earlier version left them, with data, and what must hold after an upgrade.

``build`` migrates an empty database with today's (frozen) migrations through a
list of steps (``Upgrade``, ``Stamp``, ``Ddl``: see ``schema_history.py`` for
the historical ones), then ``insert_rows`` writes the rows of
``upgrade_rows.ROWS`` into the tables and columns that database has, with plain
SQL, as the code of that time wrote them. ``stored_rows`` reads every row back
through today's table types, to compare before and after; ``assert_engine_keeps_everything``
opens today's engine on the result and checks what an operator relies on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, inspect, select, text
from upgrade_rows import (
    ADMIN,
    API_KEY,
    AVAILABLE,
    CHARGE,
    HOLD_EMAIL,
    HOLD_PHONE,
    JOB,
    MEMBER,
    PURCHASE,
    RECORDED_AT,
    RESERVED,
    ROWS,
    TEAM,
)

import creditbook
from creditbook import Actor
from creditbook.adapters.db import migrate
from creditbook.adapters.db.audit import audit
from creditbook.adapters.db.schema import metadata
from creditbook.adapters.db.tables import ledger_entries
from creditbook.domain.clock import FrozenClock

# The ``db_cli`` fixture (conftest.py): ``creditbook ARGS`` -> (exit code, stdout, stderr).
DbCli = Callable[..., tuple[int, str, str]]


@dataclass(frozen=True)
class Upgrade:
    """Run today's migrations up to ``revision``."""

    revision: str


@dataclass(frozen=True)
class Stamp:
    """Record ``revision`` without running anything (what an empty migration did)."""

    revision: str


@dataclass(frozen=True)
class Ddl:
    """Statements a first version of a migration ran, per dialect (sqlite, postgresql)."""

    statements: dict[str, tuple[str, ...]]


Step = Upgrade | Stamp | Ddl


def build(engine: Engine, steps: Sequence[Step]) -> None:
    """Bring an empty database through ``steps``, in one transaction, then write the rows."""
    with engine.begin() as conn:
        for step in steps:
            if isinstance(step, Upgrade):
                migrate.upgrade_on(conn, step.revision)
            elif isinstance(step, Stamp):
                migrate.stamp_on(conn, step.revision)
            else:
                for statement in step.statements.get(conn.dialect.name, ()):
                    conn.exec_driver_sql(statement)
    insert_rows(engine)


def _plain(dialect: str, value: Any) -> Any:
    if isinstance(value, datetime):
        # As SQLAlchemy stores a datetime in SQLite: naive UTC text.
        utc = value.astimezone(UTC)
        return (
            utc.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
            if dialect == "sqlite"
            else utc
        )
    return value


def present_columns(conn: Connection) -> dict[str, list[str]]:
    inspector = inspect(conn)
    return {
        table: [column["name"] for column in inspector.get_columns(table)]
        for table in inspector.get_table_names()
        if table != migrate.VERSION_TABLE
    }


def insert_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        present = present_columns(conn)
        for table, rows in ROWS.items():
            if table not in present:
                continue
            columns = [c for c in rows[0] if c in present[table]]
            # One statement per table: from 0007 on PostgreSQL checks that the postings
            # each INSERT statement writes balance per entry, as the engine writes them.
            values = ", ".join(
                "(" + ", ".join(f":{c}_{n}" for c in columns) + ")" for n in range(len(rows))
            )
            conn.execute(
                text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}"),
                {
                    f"{c}_{n}": _plain(conn.dialect.name, row[c])
                    for n, row in enumerate(rows)
                    for c in columns
                },
            )


def stored_rows(
    engine: Engine, columns: dict[str, list[str]] | None = None
) -> dict[str, list[Any]]:
    """Every row of every table, read through today's types, of the columns given (default:
    those the database has), in primary-key order."""
    found: dict[str, list[Any]] = {}
    with engine.connect() as conn:
        present = columns or present_columns(conn)
        for name, names in present.items():
            if name not in metadata.tables:
                continue
            table = metadata.tables[name]
            query = select(*[table.c[n] for n in names]).order_by(*table.primary_key.columns)
            found[name] = [tuple(row) for row in conn.execute(query)]
    return found


def audit_is_clean(engine: Engine) -> None:
    """The audit of today's code, on any revision: it reads only the ledger tables of 0001."""
    with engine.connect() as conn:
        report = audit(conn)
    assert report.clean, report.problems
    assert report.entries == len(ROWS["ledger_entries"])


def assert_engine_keeps_everything(url: str, tables: set[str]) -> None:
    """Today's engine on the upgraded database: audit, balances, holds, idempotency keys.

    ``tables``: the tables that held rows before the upgrade (their rows are checked).
    """
    book = creditbook.open(url, clock=FrozenClock(RECORDED_AT), upgrade=False)
    assert book.engine is not None
    try:
        assert book.audit().clean
        balance = book.balance(TEAM)
        assert (balance.available, balance.reserved) == (AVAILABLE, RESERVED)
        entries = _entries(book.engine)
        member = Actor(member_id=MEMBER)

        # The same requests with the same keys answer what they answered then.
        again = book.charge(
            TEAM, "email_finder", outcome="deliverable", actor=member, idempotency_key="charge-1"
        )
        assert again.charge_id == CHARGE and again.credits == 5
        held = book.hold(
            TEAM, "phone_finder", actor=member, ttl_seconds=86400, idempotency_key="hold-1"
        )
        assert held.hold_id == HOLD_PHONE
        if "purchases" in tables:
            bought = book.purchases.buy(
                TEAM, package="1k", actor=Actor(member_id=ADMIN), idempotency_key="buy-1"
            )
            assert bought.id == PURCHASE and bought.status == "completed"
        assert _entries(book.engine) == entries, "a replay wrote a second entry"
        assert book.balance(TEAM).available == AVAILABLE

        if "subscriptions" in tables:
            subscription = book.plans.subscription(TEAM)
            assert subscription is not None and subscription.plan == "email_pro"
        if "enrichment_jobs" in tables:
            from creditbook.service.enrichment import EnrichmentService

            assert EnrichmentService(book).get_job(TEAM, JOB).status == "completed"
        if "api_keys" in tables:
            from creditbook.service.access import AccessService

            assert AccessService(book).verify(API_KEY) is not None

        # The holds opened before the upgrade still settle.
        captured = book.capture(TEAM, HOLD_PHONE, outcome="found")
        assert captured.credits == 20
        released = book.release(TEAM, HOLD_EMAIL)
        assert released.released == 5
        balance = book.balance(TEAM)
        assert (balance.available, balance.reserved) == (AVAILABLE + 5, 0)
        assert book.audit().clean
    finally:
        book.engine.dispose()


def _entries(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ledger_entries)).scalar_one())
