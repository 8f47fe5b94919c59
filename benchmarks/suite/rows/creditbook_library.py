"""Creditbook library rows: charges from N threads of one process, PostgreSQL and SQLite.

Every charge is a real, durable ``Creditbook.charge`` (email_finder, deliverable: 5
credits) with its own idempotency key, as an API client would send it. Rows:

- ``library hot team cN``: every worker charges ONE team, group commit on (the
  production setting); ``... no group commit`` rows run the same load one
  transaction per charge, so the gain is visible.
- ``library zipf 10k teams cN``: the team of each charge is drawn Zipf(s=1) over
  10,000 teams (team 0 the hottest), group commit on / off.
- ``library hot team charge_many x100 c8``: the batch API, 100 charges per call
  (throughput counts charges, latency is per call of 100).
- ``sqlite durable charges``: the hot-team load on a SQLite file (WAL,
  ``synchronous=FULL``: a committed charge survives a power loss), 32 workers, group
  commit on; plus the same without group commit and with the batch API.
- ``sqlite library hot team c8`` and ``sqlite library zipf 10k teams c8/c32``: the
  PostgreSQL rows' loads on the same SQLite file (which holds the same 10,000 Zipf
  teams), group commit on.

The process calls ``creditbook.settle_gc()`` once the data is seeded, as a server
embedding the library should (see docs/operations.md).

After every row the whole database is audited (``Creditbook.audit``): every grant's
balance recomputed from the ledger must match, or the run fails. Each row also records
the group committer's mean batch size and the load average when it started.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import creditbook
from creditbook.adapters.db.tables import teams as teams_table
from creditbook.domain.book import TeamBook
from creditbook.domain.grants import Category, Source
from creditbook.service.group_commit import ChargeItem

from ..core import CREDITBOOK, BenchmarkError, RowResult, RunContext, row
from ..load import Zipf, run_workers
from ..pg import create_scratch_database, drop_scratch_database
from ..targets import (
    LIB_HOT_C8,
    LIB_HOT_C32,
    LIB_ZIPF_C8,
    LIB_ZIPF_C32,
    SQLITE_DURABLE,
    SQLITE_DURABLE_BATCH,
    SQLITE_LIB_HOT_C8,
    SQLITE_LIB_ZIPF_C8,
    SQLITE_LIB_ZIPF_C32,
)

DBNAME = "cb_bench_library"
TEAMS = 10_000
BALANCE = 1_000_000_000  # the catalog's largest grant: no row can drain a team
FEATURE, OUTCOME, COST = "email_finder", "deliverable", 5
BATCH = 100
assert f"{SQLITE_DURABLE} charge_many x{BATCH} c1" == SQLITE_DURABLE_BATCH  # targets' name


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def seed_teams(book: creditbook.Creditbook, count: int, prefix: str) -> list[str]:
    """``count`` teams with one big purchased grant each, written 500 per transaction."""
    ids = [f"{prefix}{i:05d}" for i in range(count)]
    now = book.clock.now()
    for start in range(0, count, 500):
        chunk = ids[start : start + 500]
        with book.uow() as uow:
            uow.conn.execute(
                teams_table.insert(),
                [
                    {"id": t, "name": t, "time_zone": "UTC", "created_at": now, "settings": {}}
                    for t in chunk
                ],
            )
            books = []
            for team_id in chunk:
                team_book = TeamBook.load(team_id, book.catalog, now, [])
                team_book.issue(
                    credits=BALANCE,
                    source=Source.PURCHASE,
                    category=Category.PURCHASED,
                    bucket="purchased",
                )
                books.append(team_book)
            uow.save_books(books)
            uow.commit()
    return ids


class Bench:
    """One migrated database with a hot team and 10,000 Zipf teams."""

    def __init__(self, url: str, zipf_teams: int) -> None:
        self.book = creditbook.open(url)
        self.hot = seed_teams(self.book, 1, "team_hot")[0]
        self.teams = seed_teams(self.book, zipf_teams, "team_z") if zipf_teams else []
        self.run = uuid.uuid4().hex[:8]
        # As docs/operations.md asks of a server embedding the library (and as
        # ``creditbook serve`` does): what exists after start-up stays out of the
        # garbage collector's full collections.
        creditbook.settle_gc()

    def audit(self) -> list[str]:
        report = self.book.audit()
        return list(report.problems)

    def close(self) -> None:
        self.book.disable_group_commit()
        if self.book.engine is not None:
            self.book.engine.dispose()


def _pg_bench(ctx: RunContext) -> Bench:
    def make() -> Bench:
        url = ctx.pg.sqlalchemy_url(create_scratch_database(ctx.pg, DBNAME))
        return Bench(url, TEAMS)

    def cleanup(bench: Bench) -> None:
        bench.close()
        drop_scratch_database(ctx.pg, DBNAME)

    return ctx.fixture("creditbook-pg", make, cleanup)


def _sqlite_bench(ctx: RunContext) -> Bench:
    def make() -> Bench:
        path = Path(ctx.workdir) / "sqlite-bench" / "creditbook.db"
        return Bench(f"sqlite:///{path}", TEAMS)

    return ctx.fixture("creditbook-sqlite", make, lambda bench: bench.close())


def _measure(
    ctx: RunContext,
    bench: Bench,
    name: str,
    workers: int,
    op_for: Callable[[int], Callable[[], object]],
    *,
    grouped: bool,
    per_op: int = 1,
) -> RowResult:
    book = bench.book
    load = _load()
    group = book.enable_group_commit() if grouped else None
    if not grouped:
        book.disable_group_commit()
    try:
        result = run_workers(op_for, workers, ctx.seconds)
    finally:
        book.disable_group_commit()
    result.raise_on_errors()
    ctx.add_audit(bench.audit)
    extra: dict[str, Any] = {
        "group_commit": grouped,
        "load_average_1m": load,
        "charges_per_call": per_op,
    }
    if group is not None:
        extra |= {
            "batches": group.stats.batches,
            "mean_batch": round(group.stats.mean_batch, 2),
            "largest_batch": group.stats.largest,
        }
    out = result.to_row(name, "charges/s", extra)
    if per_op == 1:
        return out
    return RowResult(
        name=out.name,
        unit=out.unit,
        ops=out.ops * per_op,
        seconds=out.seconds,
        throughput=out.throughput * per_op,
        p50_ms=out.p50_ms,
        p99_ms=out.p99_ms,
        extra=out.extra | {"latency_is_per_call_of": per_op},
    )


def _charge_op(bench: Bench, pick: Callable[[], str], worker: int) -> Callable[[], object]:
    book = bench.book
    prefix = f"{bench.run}-{uuid.uuid4().hex[:6]}-{worker}-"
    counter = iter(range(1 << 62))

    def op() -> object:
        return book.charge(
            pick(), FEATURE, outcome=OUTCOME, idempotency_key=prefix + str(next(counter))
        )

    return op


def _batch_op(bench: Bench, worker: int) -> Callable[[], object]:
    book = bench.book
    prefix = f"{bench.run}-{uuid.uuid4().hex[:6]}-{worker}-"
    counter = iter(range(1 << 62))

    def op() -> object:
        items = [
            ChargeItem(FEATURE, outcome=OUTCOME, idempotency_key=prefix + str(next(counter)))
            for _ in range(BATCH)
        ]
        results = book.charge_many(bench.hot, items)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise BenchmarkError(f"{len(failed)} of {BATCH} batched charges failed: {failed[0]}")
        return results

    return op


def _hot_row(name: str, workers: int, grouped: bool, sqlite: bool = False) -> None:
    where = "SQLite file (WAL, synchronous=FULL)" if sqlite else "PostgreSQL"

    def run(ctx: RunContext) -> RowResult:
        bench = _sqlite_bench(ctx) if sqlite else _pg_bench(ctx)
        return _measure(
            ctx,
            bench,
            name,
            workers,
            lambda w: _charge_op(bench, lambda: bench.hot, w),
            grouped=grouped,
        )

    mode = "group commit" if grouped else "one transaction per charge"
    row(
        name,
        group=CREDITBOOK,
        description=f"library charges on ONE team, {workers} threads, {mode}, {where}",
    )(run)


def _zipf_row(name: str, workers: int, grouped: bool, sqlite: bool = False) -> None:
    def run(ctx: RunContext) -> RowResult:
        bench = _sqlite_bench(ctx) if sqlite else _pg_bench(ctx)

        def op_for(worker: int) -> Callable[[], object]:
            zipf = Zipf(len(bench.teams), 1.0, seed=worker)
            return _charge_op(bench, lambda: bench.teams[zipf.sample()], worker)

        return _measure(ctx, bench, name, workers, op_for, grouped=grouped)

    mode = "group commit" if grouped else "one transaction per charge"
    where = ", SQLite" if sqlite else ""
    row(
        name,
        group=CREDITBOOK,
        description=f"library charges over {TEAMS:,} teams Zipf(s=1), {workers} threads, "
        f"{mode}{where}",
    )(run)


def _batch_row(name: str, workers: int, sqlite: bool = False) -> None:
    def run(ctx: RunContext) -> RowResult:
        bench = _sqlite_bench(ctx) if sqlite else _pg_bench(ctx)
        return _measure(
            ctx,
            bench,
            name,
            workers,
            lambda w: _batch_op(bench, w),
            grouped=False,
            per_op=BATCH,
        )

    row(
        name,
        group=CREDITBOOK,
        description=f"Creditbook.charge_many, {BATCH} charges per call on ONE team, "
        f"{workers} threads" + (", SQLite" if sqlite else ""),
    )(run)


_hot_row(LIB_HOT_C8, 8, grouped=True)
_hot_row(LIB_HOT_C32, 32, grouped=True)
_hot_row(f"{LIB_HOT_C8} no group commit", 8, grouped=False)
_hot_row(f"{LIB_HOT_C32} no group commit", 32, grouped=False)
_zipf_row(LIB_ZIPF_C8, 8, grouped=True)
_zipf_row(LIB_ZIPF_C32, 32, grouped=True)
_zipf_row(f"{LIB_ZIPF_C8} no group commit", 8, grouped=False)
_zipf_row(f"{LIB_ZIPF_C32} no group commit", 32, grouped=False)
_batch_row(f"library hot team charge_many x{BATCH} c8", 8)
_hot_row(SQLITE_DURABLE, 32, grouped=True, sqlite=True)
_hot_row(f"{SQLITE_DURABLE} no group commit c8", 8, grouped=False, sqlite=True)
_batch_row(SQLITE_DURABLE_BATCH, 1, sqlite=True)
_hot_row(SQLITE_LIB_HOT_C8, 8, grouped=True, sqlite=True)
_zipf_row(SQLITE_LIB_ZIPF_C8, 8, grouped=True, sqlite=True)
_zipf_row(SQLITE_LIB_ZIPF_C32, 32, grouped=True, sqlite=True)


# ---- statements and round trips per charge (not a row: ``python -m``) ----------------------


def count_round_trips(url: str, charges: int = 100) -> dict[str, dict[str, float]]:
    """Statements and round trips to PostgreSQL per charge: one at a time vs one batch.

    pg_stat_statements is not loaded on this server (it needs a restart), so this
    counts on the client: every psycopg ``execute``/``executemany``, and round trips as
    one per statement sent outside a pipeline, one per ``executemany`` (psycopg pipelines
    it) and one per pipeline block (its sync, the COMMIT included when it is inside).
    """
    import psycopg

    counts = {"statements": 0, "round_trips": 0}
    in_pipeline = [0]
    real_execute = psycopg.Cursor.execute
    real_executemany = psycopg.Cursor.executemany
    real_pipeline = psycopg.Connection.pipeline
    real_commit = psycopg.Connection.commit

    def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["statements"] += 1
        if not in_pipeline[0]:
            counts["round_trips"] += 1
        return real_execute(self, *args, **kwargs)

    def executemany(self: Any, query: Any, params_seq: Any, **kwargs: Any) -> Any:
        rows = list(params_seq)
        counts["statements"] += len(rows)
        if not in_pipeline[0]:
            counts["round_trips"] += 1
        in_pipeline[0] += 1
        try:
            return real_executemany(self, query, rows, **kwargs)
        finally:
            in_pipeline[0] -= 1

    from contextlib import contextmanager

    @contextmanager
    def pipeline(self: Any) -> Any:
        counts["round_trips"] += 1
        in_pipeline[0] += 1
        try:
            with real_pipeline(self) as p:
                yield p
        finally:
            in_pipeline[0] -= 1

    def commit(self: Any) -> Any:
        if not in_pipeline[0] and self.info.transaction_status != 0:  # 0: idle
            counts["statements"] += 1
            counts["round_trips"] += 1
        return real_commit(self)

    book = creditbook.open(url)
    team = seed_teams(book, 1, f"team_rt{uuid.uuid4().hex[:6]}")[0]
    out: dict[str, dict[str, float]] = {}
    psycopg.Cursor.execute = execute  # type: ignore[method-assign,assignment]
    psycopg.Cursor.executemany = executemany  # type: ignore[method-assign,assignment]
    psycopg.Connection.pipeline = pipeline  # type: ignore[method-assign,assignment]
    psycopg.Connection.commit = commit  # type: ignore[method-assign]
    try:
        for label, keyed in (("one charge per transaction", False), ("... with key", True)):
            counts.update(statements=0, round_trips=0)
            for _ in range(charges):
                key = f"rt-{uuid.uuid4().hex}" if keyed else None
                book.charge(team, FEATURE, outcome=OUTCOME, idempotency_key=key)
            out[label] = {k: v / charges for k, v in counts.items()}
        for label, keyed in (("charge_many batch", False), ("... with keys", True)):
            counts.update(statements=0, round_trips=0)
            items = [
                ChargeItem(
                    FEATURE, outcome=OUTCOME, idempotency_key=uuid.uuid4().hex if keyed else None
                )
                for _ in range(charges)
            ]
            book.charge_many(team, items)
            out[f"{label} of {charges}"] = {k: v / charges for k, v in counts.items()}
            out[f"{label} of {charges}"]["per batch round_trips"] = counts["round_trips"]
    finally:
        psycopg.Cursor.execute = real_execute  # type: ignore[method-assign]
        psycopg.Cursor.executemany = real_executemany  # type: ignore[method-assign]
        psycopg.Connection.pipeline = real_pipeline  # type: ignore[method-assign]
        psycopg.Connection.commit = real_commit  # type: ignore[method-assign]
        if book.engine is not None:
            book.engine.dispose()
    return out


if __name__ == "__main__":
    import sys

    target = (
        sys.argv[1] if len(sys.argv) > 1 else "postgresql+psycopg://postgres@127.0.0.1/postgres"
    )
    for what, figures in count_round_trips(target).items():
        print(f"{what:38s} " + "  ".join(f"{k} {v:g}" for k, v in figures.items()))
