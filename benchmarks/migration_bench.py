"""How long each migration takes on a large ledger, up and down, on SQLite or PostgreSQL.

Creates a scratch database (a temporary SQLite file, or a PostgreSQL database
dropped at the end), migrates it to 0008 and bulk-loads ``--entries`` ledger
entries (default 1,000,000) over ``--teams`` teams (one grant each, its grant
entry, then charges of one credit: two postings per entry, so twice as many
postings), with the audit clean. Then it times every step, one at a time: up
from 0008 to the head, down to 0007, and up to the head again. On SQLite it
also times the VACUUM that ``creditbook db upgrade`` runs after a step that
leaves a tenth of the file free, and prints the file's size around it. It
checks the audit after the round trip and prints a table and one JSON line.

    PYTHONPATH=src .venv/bin/python benchmarks/migration_bench.py --database sqlite
    PYTHONPATH=src .venv/bin/python benchmarks/migration_bench.py --database postgres \\
        --server postgresql+psycopg://postgres@127.0.0.1:5432/postgres

A step's time is also how long it holds its locks: on PostgreSQL the whole
upgrade is one transaction, so a lock a step takes is held until the commit.
This is a manual benchmark, never a test.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from creditbook.adapters.db import migrate
from creditbook.adapters.db.audit import audit
from creditbook.adapters.db.engine import make_engine

LOAD_AT = "0008_lean_indexes"
CREATED = "2026-01-15 09:30:00"


def _series(dialect: str, upper: str, body: str, join: str = "") -> str:
    """``body`` selected for n in 1..upper (PostgreSQL's generate_series, SQLite's CTE)."""
    joined = f" CROSS JOIN {join}" if join else ""
    if dialect == "postgresql":
        return f"SELECT {body} FROM generate_series(1, {upper}) AS s(n){joined}"
    return (
        f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {upper}) "
        f"SELECT {body} FROM s{joined}"
    )


def load(engine: Engine, entries: int, teams: int) -> None:
    """Teams, one grant each, a grant entry each, then one-credit charges: audit-clean."""
    dialect = engine.dialect.name
    per_team = entries // teams
    false = "false" if dialect == "postgresql" else "0"
    team = f"'t' || ((n - 1) % {teams})"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO teams (id, name, time_zone, created_at, settings) "
                + _series(
                    dialect, str(teams), f"'t' || (n - 1), 'Team', 'UTC', '{CREATED}', '{{}}'"
                )
            )
        )
        conn.execute(
            text(
                "INSERT INTO grants (team_id, id, source, category, bucket, scope, amount, "
                "remaining, reserved, effective_at, expires_at, created_at, origin, closed) "
                + _series(
                    dialect,
                    str(teams),
                    f"'t' || (n - 1), 'g', 'purchase', 'purchased', 'purchased', 'null', "
                    f"{per_team}, 1, 0, '{CREATED}', NULL, '{CREATED}', NULL, {false}",
                )
            )
        )
        # Entry n belongs to team (n - 1) % teams; the team's first entry is its grant.
        kind = f"CASE WHEN n <= {teams} THEN 'grant' ELSE 'charge' END"
        credits = f"CASE WHEN n <= {teams} THEN {per_team} ELSE 1 END"
        conn.execute(
            text(
                "INSERT INTO ledger_entries (team_id, id, kind, created_at, credits, feature, "
                "meta) "
                + _series(
                    dialect,
                    str(teams * per_team),
                    f"{team}, 'e' || n, {kind}, '{CREATED}', {credits}, "
                    f"CASE WHEN n <= {teams} THEN NULL ELSE 'ai_variable' END, '{{}}'",
                )
            )
        )
        # Both postings of every entry in one statement: the balance trigger of 0007
        # checks each statement's postings per entry.
        issue = f"n <= {teams}"
        account = (
            f"CASE WHEN seq = 0 THEN (CASE WHEN {issue} THEN 'issued' ELSE 'available' END) "
            f"ELSE (CASE WHEN {issue} THEN 'available' ELSE 'used' END) END"
        )
        amount = f"CASE WHEN seq = 0 THEN -({credits}) ELSE {credits} END"
        both = "(SELECT 0 AS seq UNION ALL SELECT 1 AS seq) AS p"
        conn.execute(
            text(
                "INSERT INTO ledger_postings (team_id, entry_id, seq, grant_id, account, amount) "
                + _series(
                    dialect,
                    str(teams * per_team),
                    f"{team}, 'e' || n, seq, 'g', {account}, {amount}",
                    join=both,
                )
            )
        )


def _sqlite_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int(pages * size)


def run(args: argparse.Namespace) -> dict[str, Any]:
    scratch: str | None = None
    path: Path | None = None
    if args.database == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="cb-migbench-")) / "ledger.db"
        url = f"sqlite:///{path}"
    else:
        server = make_url(args.server)
        scratch = f"cb_migbench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{scratch}"'))
        url = server.set(database=scratch).render_as_string(hide_password=False)
    engine = make_engine(url, busy_timeout=600)
    steps: list[dict[str, Any]] = []
    try:
        migrate.upgrade(engine, LOAD_AT)
        started = time.perf_counter()
        load(engine, args.entries, args.teams)
        loaded = time.perf_counter() - started
        print(f"loaded {args.entries:,} entries in {loaded:.1f} s", file=sys.stderr)
        known = migrate.known_revisions()
        after = known[known.index(LOAD_AT) + 1 :]
        plan = [("up", r) for r in after]
        plan += [("down", r) for r in reversed([LOAD_AT, *after[:-1]])]
        plan += [("down", "0007_group_commit")]
        plan += [("up", r) for r in [LOAD_AT, *after]]
        for direction, target in plan:
            before = migrate.current_revision(engine)
            size = _sqlite_bytes(path) if path else None
            started = time.perf_counter()
            if direction == "up":
                done = migrate.upgrade(engine, target, vacuum=False, lock_timeout=None)
            else:
                done = migrate.downgrade(engine, target, vacuum=False, lock_timeout=None)
            seconds = time.perf_counter() - started
            step: dict[str, Any] = {
                "step": f"{before} -> {target}",
                "direction": direction,
                "migration": done.steps[0] if done.steps else None,
                "seconds": round(seconds, 2),
            }
            if path is not None:
                step["mb_before"] = round((size or 0) / 2**20, 1)
                step["mb_after"] = round(_sqlite_bytes(path) / 2**20, 1)
                started = time.perf_counter()
                vacuumed = migrate.vacuum_if_worth_it(engine)
                if vacuumed is not None:
                    step["vacuum_seconds"] = round(time.perf_counter() - started, 2)
                    step["mb_after_vacuum"] = round(_sqlite_bytes(path) / 2**20, 1)
            steps.append(step)
            print(json.dumps(step), file=sys.stderr)
        with engine.connect() as conn:
            report = audit(conn)
        if not report.clean:
            raise SystemExit(f"audit failed: {report.problems[:3]}")
        return {
            "database": args.database,
            "entries": args.entries,
            "postings": 2 * args.entries,
            "teams": args.teams,
            "load_seconds": round(loaded, 1),
            "steps": steps,
            "audit": "clean",
        }
    finally:
        engine.dispose()
        if scratch is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}"'))
            admin.dispose()
        if path is not None:
            for leftover in path.parent.iterdir():
                leftover.unlink()
            path.parent.rmdir()


def _bounded(low: int, high: int) -> Any:
    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{value} is not within {low:,}..{high:,}")
        return number

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--server",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL URL whose server gets the scratch database",
    )
    parser.add_argument("--entries", type=_bounded(1000, 20_000_000), default=1_000_000)
    parser.add_argument("--teams", type=_bounded(1, 100_000), default=1000)
    args = parser.parse_args(argv)
    result = run(args)
    print(f"{'step':<58} {'seconds':>8}  notes")
    for step in result["steps"]:
        notes = ""
        if "mb_before" in step:
            notes = f"{step['mb_before']} -> {step['mb_after']} MB"
            if "vacuum_seconds" in step:
                notes += f", VACUUM {step['vacuum_seconds']} s -> {step['mb_after_vacuum']} MB"
        print(f"{step['step']:<58} {step['seconds']:>8.2f}  {notes}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
