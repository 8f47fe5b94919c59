"""On SQLite the group committer reads a batch's rows on sqlite3 directly
(``SqliteSelect``), skipping SQLAlchemy. What it reads must be exactly what the
SQLAlchemy queries read: instants as aware UTC datetimes, booleans as bools, JSON
decoded, NULLs as None, for every column of every table it reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select

import creditbook
from creditbook import Actor, FrozenClock
from creditbook.adapters.db.repository import SqlUnitOfWork
from creditbook.adapters.db.sqlite_rows import SqliteSelect
from creditbook.adapters.db.tables import grants, idempotency_keys, members, teams
from creditbook.adapters.db.tables_purchases import billing_settings
from creditbook.adapters.payments import FakePaymentProvider
from creditbook.service.access import AccessService
from creditbook.service.purchases import install

NOW = datetime(2026, 3, 1, 10, 30, 5, 123456, tzinfo=UTC)


@pytest.fixture
def filled(tmp_path: Path) -> tuple[creditbook.Creditbook, str, list[str]]:
    """A SQLite book whose rows have every kind of value: a team with a due date,
    grants with and without scope and expiry, a settings row with thresholds and
    flags, capped and uncapped members, stored receipts; and a second, bare team."""
    book = creditbook.open(f"sqlite:///{tmp_path / 'c.db'}", clock=FrozenClock(NOW))
    book.purchases = install(book.kernel, FakePaymentProvider("stripe", webhook_secret="whsec_x"))
    team = book.create_team("Acme").id
    bare = book.create_team("Bare").id
    admin = book.add_member(team, "alice@acme.com", "admin")
    bob = book.add_member(team, "bob@acme.com", "member", monthly_cap=40)
    access = AccessService(book.kernel)
    access.issue_key(team, bob.id, label="crm sync", monthly_cap=25)
    gone = access.issue_key(team, bob.id, monthly_cap=5)
    access.revoke_key(team, gone.key_id)  # a revoked key's cap is no cap: it spends nothing
    book.grant(team, 500)
    book.grant(
        team,
        70,
        category="free",
        source="gift",
        scope=["phone_finder", "email_finder"],
        expires_at=NOW + timedelta(days=3),
    )
    book.purchases.update_settings(team, actor=Actor(member_id=admin.id), low_balance_threshold=100)
    keys = [f"k-{i}" for i in range(3)]
    for key in keys:
        book.charge(team, "email_finder", outcome="deliverable", idempotency_key=key)
    book.hold(team, "phone_finder")  # moves the team's due date to the hold's TTL
    return book, team, [bare, team]


def _sqlalchemy_rows(uow: SqlUnitOfWork, table: Table, columns: tuple[str, ...]) -> list[Any]:
    query = select(*(table.c[c] for c in columns))
    return sorted(tuple(r) for r in uow.conn.execute(query))


@pytest.mark.parametrize(
    "table", [teams, idempotency_keys, grants, billing_settings, members], ids=lambda t: t.name
)
def test_every_column_reads_as_sqlalchemy_reads_it(
    filled: tuple[creditbook.Creditbook, str, list[str]], table: Table
) -> None:
    book, _, _ = filled
    reader = SqliteSelect(table)
    with book.uow() as uow:
        raw = uow.conn.connection.driver_connection
        got = sorted(tuple(r) for r in reader.rows(raw, "1 = 1", []))
        want = _sqlalchemy_rows(uow, table, reader.columns)
    assert got and got == want
    # Same types too (== would let 1 pass for True and text for an instant).
    for g, w in zip(got, want, strict=True):
        assert [type(v) for v in g] == [type(v) for v in w], table.name


def test_a_batch_read_on_sqlite_is_the_generic_read(
    filled: tuple[creditbook.Creditbook, str, list[str]],
) -> None:
    book, team, ids = filled
    wanted = [(team, "k-0"), (team, "k-2"), (team, "missing"), (ids[0], "k-0")]
    with book.uow() as uow:
        due, stored, found, held = uow.read_batch(ids, wanted, [], caps=True)
        settings, caps = uow.prefetched_settings, uow.prefetched_caps
        assert due == uow.lock_teams(ids)
        assert due[team] is not None and due[team].tzinfo is UTC
        assert stored == uow.get_idempotency_many(wanted)
        assert sorted(stored) == [(team, "k-0"), (team, "k-2")]
        assert found == uow.load_grants_of(ids)
        assert len(found[team]) == 2 and found[ids[0]] == []
        assert held == {}
        assert settings[ids[0]] is None
        row = uow.conn.execute(
            select(billing_settings).where(billing_settings.c.team_id == team)
        ).one()
        assert tuple(settings[team]) == tuple(row)
        assert settings[team].low_balance_threshold == 100
        assert settings[team].recharge_armed is True
    with book.uow() as fresh:  # nothing prefetched: the SQLAlchemy query
        capped = fresh.spending_caps(team)
    assert caps == {ids[0]: {}, team: capped}
    assert sorted((c.kind, c.name, c.monthly_cap) for c in capped.values()) == [
        ("api_key", "crm sync", 25),
        ("member", "bob@acme.com", 40),
    ]


def test_a_team_missing_from_the_batch_read_is_absent(
    filled: tuple[creditbook.Creditbook, str, list[str]],
) -> None:
    book, team, _ = filled
    with book.uow() as uow:
        due, _, found, _ = uow.read_batch([team, "team_nope"], [], [])
    assert set(due) == {team}
    assert found["team_nope"] == []
