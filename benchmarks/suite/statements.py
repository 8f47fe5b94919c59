"""Statements per operation on PostgreSQL, counted by the server (``pg_stat_statements``).

Each scenario runs real charges against a private cluster with the extension
loaded (``private_pg.py``): after a warm-up (connections opened, statements
prepared), ``pg_stat_statements_reset()``, the charges, then the server's own
counts for the scenario's database. Every execution counts, so a statement that
a batch sends once per charge shows up as 100 calls per batch of 100.

Two things are counted apart. Statements run by a trigger (the ledger's balance
check) are ``nested``: the client did not send them. ``BEGIN`` and ``COMMIT`` are
left out: every transaction has exactly one of each (the round-trip tests in
``tests/integration/test_pg_write_pipeline.py`` count them on the wire), and
PostgreSQL 15's ``pg_stat_statements`` counts a prepared ``BEGIN`` or ``COMMIT``
once, when it is prepared, not at each run (psycopg prepares a statement after
five runs), so its counts of them say nothing.

Scenarios:

- ``charge``: ``Creditbook.charge``, one transaction per charge, with an
  idempotency key (what a charge costs without group commit);
- ``charge_many xN``: the batch API, N keyed charges per call;
- ``group commit, 8 threads``: 8 threads calling ``charge`` on one team, the
  committer thread batching them;
- ``group commit on the loop, 32 tasks``: 32 tasks awaiting ``charge_async``
  with ``on_loop=True`` (the HTTP server's path).

``python -m suite.statements`` prints the table; ``benchmarks/run`` adds it to
each saved run unless ``--no-statements``.
"""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

import creditbook
from creditbook.service.group_commit import ChargeItem

from .core import BenchmarkError, PgTarget
from .pg import create_scratch_database, drop_scratch_database
from .private_pg import private_postgres
from .rows.creditbook_library import FEATURE, OUTCOME, seed_teams

DBNAME = "cb_bench_statements"


@dataclass(frozen=True)
class Statement:
    """One normalized statement of a scenario: what it starts with and how often it ran."""

    text: str
    calls: int


@dataclass(frozen=True)
class Scenario:
    """What the server counted for one scenario."""

    name: str
    charges: int
    batches: int  # transactions of charges (one per call, per batch or per charge)
    statements: int  # executions the client sent, BEGIN and COMMIT left out
    nested: int  # executions run by triggers
    server_ms: float  # every counted statement's execution time, summed (milliseconds)
    top: tuple[Statement, ...]

    @property
    def per_charge(self) -> float:
        return self.statements / self.charges

    @property
    def per_batch(self) -> float:
        return self.statements / self.batches

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "per_charge": round(self.per_charge, 3),
            "per_batch": round(self.per_batch, 2),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scenario:
        counts = {k: data[k] for k in ("charges", "batches", "statements", "nested", "server_ms")}
        top = tuple(Statement(t["text"], t["calls"]) for t in data["top"])
        return cls(name=data["name"], top=top, **counts)


def _short(query: str) -> str:
    """A statement's first words, enough to tell it apart in a table."""
    text = re.sub(r"\s+", " ", query).strip()
    return text if len(text) <= 70 else text[:67] + "..."


class _Counter:
    """Reads and resets ``pg_stat_statements`` for one database of the private cluster."""

    def __init__(self, pg: PgTarget, dbname: str) -> None:
        self.conn = psycopg.connect(pg.conninfo(dbname), autocommit=True)
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        row = self.conn.execute(
            "SELECT oid FROM pg_database WHERE datname = %s", [dbname]
        ).fetchone()
        if row is None:
            raise BenchmarkError(f"database {dbname!r} not found on the private cluster")
        self.dbid = row[0]

    def reset(self) -> None:
        self.conn.execute("SELECT pg_stat_statements_reset()")

    def read(self) -> tuple[int, int, float, list[Statement]]:
        """Top-level and nested executions, their time, the top-level statements."""
        # Our own reads and resets run as the same user in the same database: leave
        # them out by their text (the counter's statements all name pg_stat_statements).
        rows = self.conn.execute(
            "SELECT query, calls, total_exec_time, toplevel FROM pg_stat_statements"
            " WHERE dbid = %s AND query NOT LIKE %s"
            " AND upper(btrim(query)) NOT IN ('BEGIN', 'COMMIT', 'ROLLBACK')"
            " ORDER BY calls DESC, query",
            [self.dbid, "%pg_stat_statements%"],
        ).fetchall()
        top = [Statement(_short(r[0]), int(r[1])) for r in rows if r[3]]
        nested = sum(int(r[1]) for r in rows if not r[3])
        server_ms = sum(float(r[2]) for r in rows)
        return sum(t.calls for t in top), nested, server_ms, top

    def close(self) -> None:
        self.conn.close()


def _measure(
    counter: _Counter,
    name: str,
    run: Callable[[], tuple[int, int]],
    warm_up: Callable[[], object],
) -> Scenario:
    warm_up()
    counter.reset()
    charges, batches = run()
    return _scenario(counter, name, charges, batches)


def _scenario(counter: _Counter, name: str, charges: int, batches: int) -> Scenario:
    """What the server counted since the last reset, as the scenario ``name``."""
    statements, nested, server_ms, top = counter.read()
    return Scenario(
        name, charges, batches, statements, nested, round(server_ms, 3), tuple(top[:12])
    )


def count_statements(pg: PgTarget, *, charges: int = 400, batch: int = 100) -> list[Scenario]:
    """Run the scenarios against ``pg`` (a server with pg_stat_statements loaded)."""
    create_scratch_database(pg, DBNAME)
    counter = _Counter(pg, DBNAME)
    book = creditbook.open(pg.sqlalchemy_url(DBNAME))
    try:
        team = seed_teams(book, 1, "team_stmt")[0]
        run_id = uuid.uuid4().hex[:8]
        keys = iter(range(1 << 62))

        def key() -> str:
            return f"{run_id}-{next(keys)}"

        def one() -> object:
            return book.charge(team, FEATURE, outcome=OUTCOME, idempotency_key=key())

        def singles() -> tuple[int, int]:
            count = max(1, charges // 4)
            for _ in range(count):
                one()
            return count, count

        def many() -> tuple[int, int]:
            calls = max(1, charges // batch)
            for _ in range(calls):
                items = [
                    ChargeItem(FEATURE, outcome=OUTCOME, idempotency_key=key())
                    for _ in range(batch)
                ]
                failed = [r for r in book.charge_many(team, items) if isinstance(r, Exception)]
                if failed:
                    raise BenchmarkError(f"{len(failed)} batched charges failed: {failed[0]}")
            return calls * batch, calls

        out = [
            _measure(counter, "charge (one transaction each)", singles, one),
            _measure(counter, f"charge_many x{batch}", many, many),
            _grouped_threads(counter, book, one, charges, threads=8),
            _grouped_loop(counter, book, team, key, charges, tasks=32),
        ]
        problems = book.audit().problems
        if problems:
            raise BenchmarkError(f"audit after the statement count: {list(problems)}")
        return out
    finally:
        book.disable_group_commit()
        if book.engine is not None:
            book.engine.dispose()
        counter.close()
        drop_scratch_database(pg, DBNAME)


def _grouped_threads(
    counter: _Counter,
    book: creditbook.Creditbook,
    one: Callable[[], object],
    charges: int,
    *,
    threads: int,
) -> Scenario:
    group = book.enable_group_commit()
    each = max(1, charges // threads)

    def in_threads(count: int) -> tuple[int, int]:
        before = group.stats.batches
        start = threading.Barrier(threads)

        def work() -> None:
            start.wait()
            for _ in range(count):
                one()

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
        return threads * count, group.stats.batches - before

    try:
        name = f"group commit, {threads} threads"
        return _measure(counter, name, lambda: in_threads(each), lambda: in_threads(2))
    finally:
        book.disable_group_commit()


def _grouped_loop(
    counter: _Counter,
    book: creditbook.Creditbook,
    team: str,
    key: Callable[[], str],
    charges: int,
    *,
    tasks: int,
) -> Scenario:
    group = book.enable_group_commit(on_loop=True)
    each = max(1, charges // tasks)

    async def in_tasks(count: int) -> tuple[int, int]:
        before = group.stats.batches

        async def work() -> None:
            for _ in range(count):
                await book.charge_async(team, FEATURE, outcome=OUTCOME, idempotency_key=key())

        await asyncio.gather(*(work() for _ in range(tasks)))
        return tasks * count, group.stats.batches - before

    async def scenario() -> Scenario:
        await in_tasks(2)  # the warm-up: the loop's connection, its prepared statements
        counter.reset()
        charged, batches = await in_tasks(each)
        return _scenario(counter, f"group commit on the loop, {tasks} tasks", charged, batches)

    try:
        return asyncio.run(scenario())
    finally:
        book.disable_group_commit()


def markdown_table(scenarios: list[Scenario]) -> str:
    """The scenarios as a Markdown table, then each one's statements per batch."""
    lines = [
        "| scenario | charges | transactions | statements sent | per transaction | per charge |"
        " by triggers | server time per charge |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in scenarios:
        lines.append(
            f"| {s.name} | {s.charges:,} | {s.batches:,} | {s.statements:,} |"
            f" {s.per_batch:.2f} | {s.per_charge:.3f} | {s.nested:,} |"
            f" {s.server_ms * 1000 / s.charges:.0f} us |"
        )
    for s in scenarios:
        lines += ["", f"{s.name}, calls per transaction:", ""]
        lines += [f"- {st.calls / s.batches:.2f} `{st.text}`" for st in s.top]
    return "\n".join(lines) + "\n"


def print_table(console: Console, scenarios: list[Scenario]) -> None:
    table = Table(title="Statements per operation (pg_stat_statements, a private cluster)")
    columns = ("scenario", "charges", "transactions", "sent", "per tx", "per charge", "triggers")
    for column in columns:
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for s in scenarios:
        table.add_row(
            s.name,
            f"{s.charges:,}",
            f"{s.batches:,}",
            f"{s.statements:,}",
            f"{s.per_batch:.2f}",
            f"{s.per_charge:.3f}",
            f"{s.nested:,}",
        )
    console.print(table)


def main() -> int:
    with private_postgres() as pg:
        scenarios = count_statements(pg)
    console = Console()
    print_table(console, scenarios)
    console.print(markdown_table(scenarios), markup=False, highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
