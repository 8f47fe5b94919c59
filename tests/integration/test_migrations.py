"""Migrations build exactly the schema the code declares, and come back down."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

import creditbook
from creditbook.adapters.db import migrate
from creditbook.adapters.db.engine import make_engine
from creditbook.adapters.db.schema import metadata


def test_upgrading_to_head_gives_the_declared_schema(empty_url: str) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    assert migrate.is_up_to_date(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # Ignore index differences that carry no meaning for SQLite's reflection of JSON.
    assert diff == [], diff
    engine.dispose()


def test_downgrading_to_base_removes_everything(empty_url: str) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert migrate.is_up_to_date(engine)
    engine.dispose()


LEDGER_TABLES = ("grants", "holds", "ledger_entries", "ledger_postings")


def _checks(engine: Engine, schema: str | None = None) -> dict[str, set[tuple[str, str]]]:
    """Every table's CHECK constraints as the database reports them: (name, text)."""
    inspector = inspect(engine)
    return {
        table: {
            (str(check["name"]), " ".join(str(check["sqltext"]).split()))
            for check in inspector.get_check_constraints(table, schema=schema)
        }
        for table in inspector.get_table_names(schema=schema)
        if table != "alembic_version"
    }


def test_the_migrated_checks_are_the_declared_ones(empty_url: str, tmp_path: Path) -> None:
    # compare_metadata does not compare CHECK constraints: the texts are compared
    # here, against the same metadata created in a second database (SQLite) or a
    # second schema of the same database (PostgreSQL), as each database reports them.
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    migrated = _checks(engine)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("create schema declared"))
        declared_engine = engine.execution_options(schema_translate_map={None: "declared"})
        metadata.create_all(declared_engine)
        declared = _checks(engine, schema="declared")
    else:
        declared_engine = make_engine(f"sqlite:///{tmp_path / 'declared.db'}")
        metadata.create_all(declared_engine)
        declared = _checks(declared_engine)
        declared_engine.dispose()
    assert migrated == declared
    assert sum(len(checks) for checks in migrated.values()) > 40
    engine.dispose()


def test_no_ledger_check_is_an_in_list() -> None:
    # SQLite fills a temporary table for an IN list of three or more values each
    # time an INSERT runs: 2 to 2.5 us per entry and posting (tables.one_of).
    for name in LEDGER_TABLES:
        for constraint in metadata.tables[name].constraints:
            if isinstance(constraint, CheckConstraint):
                assert " in (" not in str(constraint.sqltext).lower(), (name, constraint.name)


def test_0009_keeps_the_rows_indexes_and_triggers_both_ways(empty_url: str) -> None:
    book = creditbook.open(empty_url)
    engine = book.engine
    assert engine is not None
    team = book.create_team("Acme").id
    book.grant(team, 100, category="purchased", source="purchase")
    book.charge(team, "email_finder", outcome="deliverable", idempotency_key="k1")
    hold = book.hold(team, "phone_finder", idempotency_key="h1")
    before = _rows(engine)
    indexes = {t: _index_names(engine, t) for t in LEDGER_TABLES}

    migrate.downgrade(engine, "0008_lean_indexes")
    kinds = dict(_checks(engine)["ledger_entries"])["ck_ledger_entries_kind"]
    assert " in " in kinds.lower() or "any" in kinds.lower(), kinds
    assert _rows(engine) == before

    migrate.upgrade(engine)
    assert _rows(engine) == before
    assert {t: _index_names(engine, t) for t in LEDGER_TABLES} == indexes
    # A balanced pair, so that only the account's check can refuse it on PostgreSQL.
    pair = "insert into ledger_postings values ('t', 'e', 0, 'g', 'pocket', 5), "
    pair += "('t', 'e', 1, 'g', 'available', -5)"
    for refused in (
        "update ledger_entries set credits = 0",  # the append-only triggers
        "delete from ledger_postings",
        pair,  # the closed sets
        "update grants set source = 'stolen'",
        "update holds set status = 'lost'",
    ):
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text(refused))
    book.capture(team, hold.hold_id, idempotency_key="c1")
    assert book.balance(team).available == 100 - 5 - 20
    assert book.audit().clean
    engine.dispose()


def _rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: conn.execute(text(f"select count(*) from {t}")).scalar_one() for t in LEDGER_TABLES
        }


def _index_names(engine: Engine, table: str) -> set[str]:
    return {str(index["name"]) for index in inspect(engine).get_indexes(table)}
