"""Statements per batch, counted by PostgreSQL itself (``pg_stat_statements``).

The benchmark suite's statement count (``benchmarks/suite/statements.py``) runs
on a private cluster that loads the extension (``benchmarks/suite/private_pg.py``;
the shared server does not). Here it checks the rule the hot path keeps: a batch
of charges sends the same statements as one charge alone, whatever its size
(one insert per kind of row, not one per charge), on every path that batches.
"""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pytest

# The benchmark suite is a package of the benchmarks/ directory, not of the project.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from suite.private_pg import postgres_bindir, private_postgres
from suite.statements import Scenario, count_statements, markdown_table

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def scenarios() -> list[Scenario]:
    if postgres_bindir() is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    with private_postgres() as pg:
        with psycopg.connect(pg.conninfo("postgres")) as conn:
            loaded = conn.execute("SHOW shared_preload_libraries").fetchone()
        assert loaded is not None and "pg_stat_statements" in loaded[0]
        return count_statements(pg, charges=128, batch=32)


def test_every_scenario_was_counted_by_the_server(scenarios: list[Scenario]) -> None:
    assert [s.name for s in scenarios] == [
        "charge (one transaction each)",
        "charge_many x32",
        "group commit, 8 threads",
        "group commit on the loop, 32 tasks",
    ]
    for s in scenarios:
        assert s.charges >= 32 and s.batches >= 1
        assert s.statements > 0 and s.server_ms > 0
        # The ledger's balance trigger runs once per INSERT of postings, not per posting.
        assert s.nested == s.batches


def test_a_batch_sends_the_statements_of_one_charge_whatever_its_size(
    scenarios: list[Scenario],
) -> None:
    alone, many, *_ = scenarios  # in the order the test above checks
    assert alone.per_batch == alone.per_charge  # one transaction per charge
    for batched in scenarios[1:]:
        assert batched.charges > batched.batches, f"{batched.name} did not batch"
        assert batched.per_batch <= alone.per_batch, (batched.name, batched.top)
    # 32 charges per call: the same statements carry 32 times the charges.
    assert many.per_charge <= alone.per_charge / 32


def test_the_count_survives_its_json_and_reads_as_a_table(scenarios: list[Scenario]) -> None:
    again = [Scenario.from_json(s.to_json()) for s in scenarios]
    assert again == scenarios
    table = markdown_table(again)
    for s in scenarios:
        assert f"| {s.name} | {s.charges:,} |" in table
