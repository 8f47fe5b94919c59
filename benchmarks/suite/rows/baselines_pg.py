"""Baseline rows: what PostgreSQL alone does on this machine, driven by pgbench.

- ``pgbench tpcb-like cN``: the standard TPC-B-like transaction (3 updates, 1 select,
  1 insert) on a scale-10 database (1,000,000 accounts, 10 branches), N clients.
- ``pgbench tpcb-like -N cN``: pgbench's "simple update" (-N), which skips the branch and
  teller updates, so no two clients fight over the 10 branch rows.
- ``sql conditional-update debit hot row cN``: the one statement a naive credits system
  runs per charge, ``UPDATE account SET balance = balance - 1 WHERE id = 1 AND balance
  >= 1``, every client on the SAME row: the ceiling for "one team charged from many
  workers" done in SQL. With ONE client (``c1``) nothing waits for a lock: each
  transaction is a round trip and a WAL flush, the cheapest durable write a client can
  make, and N clients that each wait for their own can do at most N times it (the
  ceilings in ``targets.py``).
- ``sql conditional-update debit 10k rows cN``: the same statement on a random id among
  10,000 rows (uniform), the no-contention counterpart.

All share one scratch database, ``cb_bench_pgbench``, created at the first row and
dropped at the end of the run. The debit rows audit that the balances dropped by exactly
the number of transactions pgbench reports.
"""

from __future__ import annotations

from ..core import BASELINE, RowResult, RunContext, row
from ..pg import create_scratch_database, drop_scratch_database, pgbench_init, psql, run_pgbench
from ..targets import (
    PGBENCH_SIMPLE_C8,
    PGBENCH_SIMPLE_C32,
    PGBENCH_TPCB_C8,
    PGBENCH_TPCB_C32,
    SQL_HOT_C1,
    SQL_HOT_C8,
    SQL_HOT_C32,
    SQL_SPREAD_C8,
    SQL_SPREAD_C32,
)

DBNAME = "cb_bench_pgbench"
SCALE = 10
ACCOUNTS = 10_000
# Large enough that no debit run can drain a row: the WHERE guard is then always true, so
# every transaction is a real write and the audit can count them exactly.
SEED_BALANCE = 10**15

HOT_SCRIPT = "UPDATE account SET balance = balance - 1 WHERE id = 1 AND balance >= 1;\n"
SPREAD_SCRIPT = (
    f"\\set id random(1, {ACCOUNTS})\n"
    "UPDATE account SET balance = balance - 1 WHERE id = :id AND balance >= 1;\n"
)


def _pgbench_database(ctx: RunContext) -> str:
    def make() -> str:
        create_scratch_database(ctx.pg, DBNAME)
        pgbench_init(ctx.pg, DBNAME, SCALE)
        return DBNAME

    return ctx.fixture("pgbench-db", make, lambda name: drop_scratch_database(ctx.pg, name))


def _account_table(ctx: RunContext) -> str:
    def make() -> str:
        db = _pgbench_database(ctx)
        psql(
            ctx.pg,
            "CREATE TABLE account (id int PRIMARY KEY,"
            " balance bigint NOT NULL CHECK (balance >= 0))",
            db,
        )
        psql(
            ctx.pg,
            f"INSERT INTO account SELECT g, {SEED_BALANCE} FROM generate_series(1, {ACCOUNTS}) g",
            db,
        )
        psql(ctx.pg, "VACUUM ANALYZE account", db)
        return db

    return ctx.fixture("account-table", make)


def _tpcb(ctx: RunContext, name: str, clients: int, simple: bool) -> RowResult:
    db = _pgbench_database(ctx)
    return run_pgbench(
        name,
        ctx.pg,
        db,
        clients=clients,
        seconds=ctx.seconds,
        logdir=ctx.row_dir(),
        builtin="simple-update" if simple else "tpcb-like",
    )


def _debit(ctx: RunContext, name: str, clients: int, script_text: str) -> RowResult:
    db = _account_table(ctx)
    before = int(psql(ctx.pg, "SELECT sum(balance) FROM account", db))
    workdir = ctx.row_dir()
    script = workdir / "debit.sql"
    script.write_text(script_text)
    logdir = workdir / "log"
    logdir.mkdir()
    result = run_pgbench(
        name,
        ctx.pg,
        db,
        clients=clients,
        seconds=ctx.seconds,
        logdir=logdir,
        script=script,
        vacuum=False,
    )

    def audit() -> list[str]:
        after = int(psql(ctx.pg, "SELECT sum(balance) FROM account", db))
        negative = int(psql(ctx.pg, "SELECT count(*) FROM account WHERE balance < 0", db))
        problems = []
        if before - after != result.ops:
            problems.append(
                f"balances dropped by {before - after} but pgbench reports {result.ops} debits"
            )
        if negative:
            problems.append(f"{negative} accounts went negative")
        return problems

    ctx.add_audit(audit)
    return result


def _tpcb_row(name: str, clients: int, simple: bool) -> None:
    kind = "pgbench -N (simple update)" if simple else "pgbench TPC-B-like"

    def run(ctx: RunContext) -> RowResult:
        return _tpcb(ctx, name, clients, simple)

    row(name, group=BASELINE, description=f"{kind}, scale {SCALE}, {clients} clients")(run)


def _debit_row(name: str, clients: int, spread: bool) -> None:
    where = f"a random id of {ACCOUNTS:,} rows" if spread else "ONE row (id = 1)"

    def run(ctx: RunContext) -> RowResult:
        return _debit(ctx, name, clients, SPREAD_SCRIPT if spread else HOT_SCRIPT)

    description = f"UPDATE balance - 1 WHERE id AND balance >= 1 on {where}, {clients} clients"
    row(name, group=BASELINE, description=description)(run)


_tpcb_row(PGBENCH_TPCB_C8, 8, simple=False)
_tpcb_row(PGBENCH_TPCB_C32, 32, simple=False)
_tpcb_row(PGBENCH_SIMPLE_C8, 8, simple=True)
_tpcb_row(PGBENCH_SIMPLE_C32, 32, simple=True)
_debit_row(SQL_HOT_C1, 1, spread=False)
_debit_row(SQL_HOT_C8, 8, spread=False)
_debit_row(SQL_HOT_C32, 32, spread=False)
_debit_row(SQL_SPREAD_C8, 8, spread=True)
_debit_row(SQL_SPREAD_C32, 32, spread=True)
