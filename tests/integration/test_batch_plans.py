"""The group committer's reads stay index lookups under a generic plan made on empty tables.

psycopg prepares a statement after a few runs; PostgreSQL then keeps one generic
plan per connection, planned with the table sizes of that moment. A join of the
batch's keys against ``idempotency_keys`` planned on a new database became a
hash join over a sequential scan and stayed one while the table grew (425 us per
batch of 8 at 8,400 keys). Here every batch read is planned generically on a
freshly migrated, empty database, the worst moment, and must probe an index.
"""

from __future__ import annotations

import re

import psycopg
import pytest
from sqlalchemy.engine import make_url

import creditbook
from creditbook.adapters.db.repository import (
    BATCH_CAPS_SQL,
    BATCH_GRANTS_SQL,
    BATCH_HOLDS_SQL,
    BATCH_KEYS_SQL,
    BATCH_SETTINGS_SQL,
)

pytestmark = pytest.mark.postgres

# statement, the table it reads, its arguments
CASES = [
    (BATCH_KEYS_SQL, "idempotency_keys", [["team_a", "team_b"], ["k1", "k2"]]),
    (BATCH_HOLDS_SQL, "holds", [["team_a"], ["hold_1"]]),
    (BATCH_GRANTS_SQL, "grants", [["team_a", "team_b"]]),
    (BATCH_SETTINGS_SQL, "billing_settings", [["team_a"]]),
    (BATCH_CAPS_SQL, "members", [["team_a"]]),
]

# The form the committer used before: the same lookup the planner may turn into a scan.
JOINED_KEYS_SQL = (
    "SELECT k.team_id, k.key FROM idempotency_keys k "
    "JOIN unnest(%s::text[], %s::text[]) AS w(t, k) ON k.team_id = w.t AND k.key = w.k"
)


def _generic_plan(url: str, sql: str, args: list[list[str]]) -> str:
    numbered = iter(range(1, 100))
    prepared = re.sub("%s", lambda _: f"${next(numbered)}", sql)
    literal = ", ".join("ARRAY[" + ", ".join(f"'{v}'" for v in a) + "]::text[]" for a in args)
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE probe AS {prepared}")
        rows = conn.execute(f"EXPLAIN EXECUTE probe({literal})").fetchall()
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize(("sql", "table", "args"), CASES, ids=[c[1] for c in CASES])
def test_batch_reads_probe_an_index_even_when_planned_on_empty_tables(
    fresh_pg_url: str, sql: str, table: str, args: list[list[str]]
) -> None:
    engine = creditbook.open(fresh_pg_url).engine  # migrates the new, empty database
    assert engine is not None
    engine.dispose()
    plan = _generic_plan(fresh_pg_url, sql, args)
    assert f"Seq Scan on {table}" not in plan, plan
    assert "Index" in plan, plan


def test_the_joined_form_this_guards_against_scans_an_empty_table(fresh_pg_url: str) -> None:
    # Shows the test above can fail: the old statement, planned the same way, scans.
    engine = creditbook.open(fresh_pg_url).engine
    assert engine is not None
    engine.dispose()
    plan = _generic_plan(fresh_pg_url, JOINED_KEYS_SQL, [["team_a"], ["k1"]])
    assert "Seq Scan on idempotency_keys" in plan, plan
