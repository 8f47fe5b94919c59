"""The group committer's statements stay index lookups under a generic plan made on empty tables.

psycopg prepares a statement after a few runs; PostgreSQL then keeps one generic
plan per connection, planned with the table sizes of that moment. A join of the
batch's keys against ``idempotency_keys`` planned on a new database became a
hash join over a sequential scan and stayed one while the table grew (425 us per
batch of 8 at 8,400 keys); an ``UPDATE ... FROM json_to_recordset`` of changed
grants scanned all 10,000 grants of the benchmark for a hot team's one row. Here
every batch read and update is planned generically on a freshly migrated, empty
database, the worst moment, and must probe an index.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

import creditbook
from creditbook.adapters.db.repository import (
    BATCH_CAPS_SQL,
    BATCH_GRANTS_SQL,
    BATCH_HOLDS_SQL,
    BATCH_KEYS_SQL,
    BATCH_LOCK_SQL,
    BATCH_SETTINGS_SQL,
    TEAM_DUE_SQL,
    _pg_update_sql,
)
from creditbook.adapters.db.tables import grants, holds

pytestmark = pytest.mark.postgres

A, B = "ARRAY['team_a', 'team_b']::text[]", "ARRAY['k1', 'k2']::text[]"

# statement, the table it reads or writes, its arguments as SQL literals
CASES = [
    (BATCH_LOCK_SQL, "teams", [A]),
    (BATCH_KEYS_SQL, "idempotency_keys", [A, B]),
    (BATCH_HOLDS_SQL, "holds", [A, B]),
    (BATCH_GRANTS_SQL, "grants", [A]),
    (BATCH_SETTINGS_SQL, "billing_settings", [A]),
    (BATCH_CAPS_SQL, "members", [A]),
    (BATCH_CAPS_SQL, "api_keys", [A]),
    (
        _pg_update_sql(grants, ("team_id", "id", "remaining", "reserved", "closed")),
        "grants",
        ["5", "0", "false", "'team_a'", "'grant_1'"],
    ),
    (
        _pg_update_sql(holds, ("team_id", "id", "status", "captured", "resolved_at")),
        "holds",
        ["'captured'", "5", "now()", "'team_a'", "'hold_1'"],
    ),
    (TEAM_DUE_SQL, "teams", ["now()", "'team_a'"]),
]

# The forms the committer used before: the same lookups, which the planner turned into scans.
OLD_FORMS = [
    (
        "SELECT k.team_id, k.key FROM idempotency_keys k "
        "JOIN unnest(%s::text[], %s::text[]) AS w(t, k) ON k.team_id = w.t AND k.key = w.k",
        "idempotency_keys",
        [A, B],
    ),
    (
        "UPDATE grants AS t SET remaining = v.remaining FROM json_to_recordset(%s::json) "
        "AS v(team_id text, id text, remaining bigint) "
        "WHERE t.team_id = v.team_id AND t.id = v.id",
        "grants",
        ["""'[{"team_id": "team_a", "id": "g", "remaining": 1}]'"""],
    ),
]


def _numbered(sql: str) -> str:
    """``sql`` with psycopg's ``%s`` as PostgreSQL's ``$1, $2, ...`` (as it prepares them)."""
    numbered = iter(range(1, 100))
    return re.sub("%s", lambda _: f"${next(numbered)}", sql)


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _migrate(url: str) -> None:
    """Create creditbook's tables in the new, empty database at ``url``."""
    engine = creditbook.open(url).engine
    assert engine is not None
    engine.dispose()


def _generic_plan(url: str, sql: str, args: list[str]) -> str:
    literal = ", ".join(args)
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE probe AS {_numbered(sql)}")
        rows = conn.execute(f"EXPLAIN EXECUTE probe({literal})").fetchall()
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize(
    ("sql", "table", "args"), CASES, ids=[f"{i}-{c[1]}" for i, c in enumerate(CASES)]
)
def test_batch_statements_probe_an_index_even_when_planned_on_empty_tables(
    fresh_pg_url: str, sql: str, table: str, args: list[str]
) -> None:
    _migrate(fresh_pg_url)
    plan = _generic_plan(fresh_pg_url, sql, args)
    assert f"Seq Scan on {table}" not in plan, plan
    assert "Index" in plan, plan


@pytest.mark.parametrize(("sql", "table", "args"), OLD_FORMS, ids=[c[1] for c in OLD_FORMS])
def test_the_old_forms_this_guards_against_scan_an_empty_table(
    fresh_pg_url: str, sql: str, table: str, args: list[str]
) -> None:
    # Shows the test above can fail: the old statements, planned the same way, scan.
    _migrate(fresh_pg_url)
    plan = _generic_plan(fresh_pg_url, sql, args)
    assert f"Seq Scan on {table}" in plan, plan


def _prepared_updates(conn: object) -> list[str]:
    rows = conn.exec_driver_sql(  # type: ignore[attr-defined]
        "SELECT statement FROM pg_prepared_statements WHERE starts_with(statement, 'UPDATE')"
    ).fetchall()
    return [r[0] for r in rows]


def test_set_based_updates_are_planned_at_every_run(fresh_pg_url: str) -> None:
    # The sweep's and the enrichment jobs' bulk updates run unprepared: a plan kept
    # from a young table would scan a grown one for the server's whole life.
    from creditbook.adapters.db.tables import teams
    from creditbook.service.sweep import bulk_update

    book = creditbook.open(fresh_pg_url)
    team = book.create_team("Plans").id
    with book.uow() as uow:
        for _ in range(12):
            bulk_update(uow, teams, ("id",), [{"id": team, "due_at": None}])
        assert _prepared_updates(uow.conn) == []
        # What it guards against: the same statement through psycopg's defaults.
        raw = uow.conn.connection.driver_connection
        for _ in range(12):
            raw.execute("UPDATE teams SET due_at = NULL WHERE id = %s", [team])
        assert len(_prepared_updates(uow.conn)) == 1
        uow.rollback()
    assert book.engine is not None
    book.engine.dispose()


# ---- the reads run their generic plan, not a new plan per batch ---------------------------
# PostgreSQL plans a prepared statement afresh (a custom plan) while that looks cheaper
# than its generic plan. Given the batch's array as a constant, ``unnest`` estimated
# its real length and the custom plan always won: each batch planned its reads again.

BATCH_READS = (BATCH_LOCK_SQL, BATCH_KEYS_SQL, BATCH_GRANTS_SQL, BATCH_SETTINGS_SQL)
RUNS = 15  # psycopg prepares at the 6th run; PostgreSQL plans the first 5 runs custom
GENERIC_RUNS = RUNS - 5 - 5  # what is left once both have had their five
PLANS_SQL = "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"


def _plans(rows: Sequence[Sequence[Any]], sql: str) -> tuple[int, int]:
    """(generic plans, custom plans) of the prepared statement psycopg made of ``sql``."""
    text = _numbered(sql)
    found = [(g, c) for statement, g, c in rows if statement == text]
    assert len(found) == 1, f"{sql[:60]} was not prepared on the committer's connection"
    return found[0]


def _assert_generic(rows: Sequence[Sequence[Any]]) -> None:
    for sql in BATCH_READS:
        generic, custom = _plans(rows, sql)
        assert custom <= 5 and generic >= GENERIC_RUNS, (sql[:60], generic, custom)


@pytest.fixture
def funded(pg_session_url: str) -> Iterator[tuple[creditbook.Creditbook, str]]:
    """A book and a team with credits; group commit turned off and the engine closed after."""
    book = creditbook.open(pg_session_url)
    team = book.create_team("Plans").id
    book.grant(team, 1_000, category="purchased", source="purchase")
    yield book, team
    book.disable_group_commit()
    assert book.engine is not None
    book.engine.dispose()


def test_the_threads_batch_reads_run_their_generic_plan(
    funded: tuple[creditbook.Creditbook, str],
) -> None:
    book, team = funded
    group = book.enable_group_commit()
    for i in range(RUNS):  # one at a time: a batch each
        book.charge(team, "email_finder", outcome="deliverable", idempotency_key=f"t{i}")
    assert group.stats.batches == RUNS
    with group.paused():  # the committer's connection is idle while we look
        assert group._conn is not None
        rows = group._conn.exec_driver_sql(PLANS_SQL).fetchall()
    _assert_generic(rows)


def test_the_loops_batch_reads_run_their_generic_plan(
    funded: tuple[creditbook.Creditbook, str],
) -> None:
    book, team = funded
    group = book.enable_group_commit(on_loop=True)

    async def scenario() -> list[tuple[str, int, int]]:
        for i in range(RUNS):
            await book.charge_async(
                team, "email_finder", outcome="deliverable", idempotency_key=f"l{i}"
            )
        conn = group._loops[asyncio.get_running_loop()].conn
        cursor = await conn.execute(PLANS_SQL)
        return [tuple(r) for r in await cursor.fetchall()]

    rows = asyncio.run(scenario())
    assert group.stats.batches == RUNS and group._thread is None
    _assert_generic(rows)


def test_the_old_form_of_the_reads_was_planned_at_every_run(fresh_pg_url: str) -> None:
    # Shows what the two tests above guard against: the array given straight to unnest.
    _migrate(fresh_pg_url)
    old = BATCH_GRANTS_SQL.replace("unnest((SELECT %s::text[]))", "unnest(%s::text[])")
    assert old != BATCH_GRANTS_SQL
    with psycopg.connect(_conninfo(fresh_pg_url), autocommit=True) as conn:
        for sql in (old, BATCH_GRANTS_SQL):
            for _ in range(RUNS):
                conn.execute(sql, [["team_a"]])
        rows = conn.execute(PLANS_SQL).fetchall()
    assert _plans(rows, old) == (0, RUNS - 5)
    generic, custom = _plans(rows, BATCH_GRANTS_SQL)
    assert custom == 5 and generic == GENERIC_RUNS
