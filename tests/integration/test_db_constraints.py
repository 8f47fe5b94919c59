"""The database refuses a bad write made around the code (the money rules, twice)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

import creditbook
from creditbook import Creditbook
from creditbook.service.access import AccessService


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def raw(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[Creditbook, Engine, str]]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'raw.db'}"
    else:
        url = request.getfixturevalue("fresh_pg_url")
    book = creditbook.open(url)
    team = book.create_team("Acme").id
    book.grant(team, 100, category="purchased", source="purchase")
    assert book.engine is not None
    yield book, book.engine, team
    book.engine.dispose()


def _grant_id(engine: Engine, team: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(text("select id from grants where team_id = :t"), {"t": team}).scalar_one()
        )


def _refused(engine: Engine, sql: str, **params: object) -> None:
    with pytest.raises((IntegrityError, DBAPIError)), engine.begin() as conn:
        conn.execute(text(sql), params)


@pytest.mark.parametrize(
    ("what", "sql"),
    [
        ("remaining below zero", "update grants set remaining = -1 where id = :g"),
        ("reserved above remaining", "update grants set reserved = 101 where id = :g"),
        ("reserved below zero", "update grants set reserved = -5 where id = :g"),
        ("remaining above amount", "update grants set remaining = 101 where id = :g"),
        ("amount zero", "update grants set amount = 0, remaining = 0 where id = :g"),
        ("unknown category", "update grants set category = 'stolen' where id = :g"),
        ("unknown source", "update grants set source = 'found' where id = :g"),
        ("unknown bucket", "update grants set bucket = 'pocket' where id = :g"),
    ],
)
def test_the_database_refuses_a_grant_that_breaks_a_money_rule(
    raw: tuple[Creditbook, Engine, str], what: str, sql: str
) -> None:
    book, engine, team = raw
    _refused(engine, sql, g=_grant_id(engine, team))
    assert book.audit().clean, what


def test_the_ledger_is_append_only(raw: tuple[Creditbook, Engine, str]) -> None:
    book, engine, team = raw
    _refused(engine, "update ledger_entries set credits = 0 where team_id = :t", t=team)
    _refused(engine, "delete from ledger_entries where team_id = :t", t=team)
    _refused(engine, "update ledger_postings set amount = 1 where team_id = :t", t=team)
    _refused(engine, "delete from ledger_postings where team_id = :t", t=team)
    assert book.audit().clean


def test_a_zero_posting_and_an_unknown_account_are_refused(
    raw: tuple[Creditbook, Engine, str],
) -> None:
    _, engine, team = raw
    entry = "insert into ledger_postings (team_id, entry_id, seq, grant_id, account, amount) "
    _refused(engine, entry + "values (:t, 'ent_x', 0, 'g', 'available', 0)", t=team)
    # Balanced, so that on PostgreSQL only the account's check can refuse it.
    pair = "values (:t, 'ent_x', 0, 'g', 'pocket', 5), (:t, 'ent_x', 1, 'g', 'available', -5)"
    _refused(engine, entry + pair, t=team)


def test_an_unknown_entry_kind_is_refused(raw: tuple[Creditbook, Engine, str]) -> None:
    _, engine, team = raw
    columns = "team_id, id, kind, created_at, credits, meta"
    sql = f"insert into ledger_entries ({columns}) values (:t, 'ent_x', :k, :at, 0, '{{}}')"
    at = datetime(2026, 1, 1, tzinfo=UTC)
    _refused(engine, sql, t=team, k="gift", at=at)
    with engine.begin() as conn:  # the same row with a known kind goes in
        conn.execute(text(sql), {"t": team, "k": "charge", "at": at})


def test_one_idempotency_key_per_team(raw: tuple[Creditbook, Engine, str]) -> None:
    _, engine, team = raw
    sql = (
        "insert into idempotency_keys "
        "(team_id, key, request_hash, operation, response, created_at) "
        "values (:t, 'k', :h, 'charge', '{}', :now)"
    )
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text(sql), {"t": team, "h": "a" * 64, "now": now})
    _refused(engine, sql, t=team, h="b" * 64, now=now)


def test_a_hold_cannot_capture_more_than_it_holds(raw: tuple[Creditbook, Engine, str]) -> None:
    book, engine, team = raw
    hold = book.hold(team, "phone_finder")
    _refused(
        engine,
        "update holds set status = 'captured', captured = 21, resolved_at = created_at "
        "where id = :h",
        h=hold.hold_id,
    )


@pytest.mark.postgres
def test_postgres_refuses_an_entry_whose_postings_do_not_balance(fresh_pg_url: str) -> None:
    book = creditbook.open(fresh_pg_url)
    team = book.create_team("Acme").id
    grant = book.grant(team, 100, category="purchased", source="purchase")
    assert book.engine is not None
    with pytest.raises(DBAPIError, match="does not balance"), book.engine.begin() as conn:
        conn.execute(
            text(
                "insert into ledger_postings (team_id, entry_id, seq, grant_id, account, amount) "
                "values (:t, 'ent_forged', 0, :g, 'issued', -500)"
            ),
            {"t": team, "g": grant.grant_id},
        )
    assert book.audit().clean
    book.engine.dispose()


def test_audit_finds_a_balance_changed_around_the_code(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # SQLite has no deferred triggers: a consistent-looking forged balance is the audit's to find.
    book = creditbook.open(f"sqlite:///{tmp_path / 'forged.db'}")
    team = book.create_team("Acme").id
    grant = book.grant(team, 100, category="purchased", source="purchase")
    assert book.engine is not None
    with book.engine.begin() as conn:
        conn.execute(text("update grants set remaining = 90 where id = :g"), {"g": grant.grant_id})
    report = book.audit()
    assert not report.clean
    assert "remaining is 90 but the ledger says 100" in report.problems[0]


def test_a_negative_monthly_cap_is_refused_for_members_and_api_keys(
    raw: tuple[Creditbook, Engine, str],
) -> None:
    book, engine, team = raw
    access = AccessService(book.kernel)
    member = book.add_member(team, "max@acme.example", "member")
    key = access.issue_key(team, member.id)
    _refused(engine, "update members set monthly_cap = -1 where id = :m", m=member.id)
    _refused(engine, "update api_keys set monthly_cap = -1 where id = :k", k=key.key_id)
    with engine.begin() as conn:  # zero is a cap (nothing may be spent), not a refusal
        conn.execute(text("update api_keys set monthly_cap = 0 where id = :k"), {"k": key.key_id})
    assert access.get_key(team, key.key_id).monthly_cap == 0
