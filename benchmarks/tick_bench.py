"""Benchmark of ``creditbook tick`` at a period boundary on PostgreSQL.

Creates a scratch database, loads N teams (default 100,000) as the library
would have left them one month after subscribing to ``multichannel_expert``
(a subscription row, the period's two free grants with their grant entries
and postings, ``due_at`` at the boundary), bulk-loaded with COPY. Then it
moves a frozen clock past the boundary and times ``Creditbook.tick()``,
which for every team writes off the two ended grants and issues the new
period's two (2 entries: one expiry, one issue; 8 postings, 2 new and 2 updated
grants, 1 updated subscription and team). It checks the result (counts and a full audit) and
drops the database.

    PYTHONPATH=src python benchmarks/tick_bench.py \\
        --server postgresql+psycopg://postgres@127.0.0.1:5432/postgres --teams 100000 \\
        --processes 2

Target: at least 5,000 teams per second. Besides the figures it prints the CPU
time per team of the sweeping processes and of the PostgreSQL server, and a
JSON line (``benchmarks/run`` reads it for its ``creditbook tick 100k teams`` row).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import creditbook
from creditbook.domain.clock import FrozenClock
from creditbook.domain.ids import new_id

ANCHOR = datetime(2026, 1, 10, 9, tzinfo=UTC)
BOUNDARY = datetime(2026, 2, 10, 9, tzinfo=UTC)
ALLOWANCES = ((1500, "subscription", None, "plan"), (400, "calling", ["calling"], "allowance"))


def _admin(server: str) -> Any:
    return create_engine(server, isolation_level="AUTOCOMMIT")


def create_database(server: str) -> str:
    name = f"cb_tick_bench_{uuid.uuid4().hex[:8]}"
    with _admin(server).connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def drop_database(server: str, url: str) -> None:
    name = make_url(url).database
    with _admin(server).connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))


def load(url: str, teams: int, seats: int) -> None:
    """COPY the state one month of subscriptions leaves, as the library would write it."""
    engine = create_engine(url)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        # The ledger's triggers (append-only, balanced entries) are for the
        # application's writes; a bulk load of balanced rows skips them.
        cur.execute("SET session_replication_role = replica")
        rows: dict[str, list[tuple[Any, ...]]] = {
            k: [] for k in ("teams", "subscriptions", "grants", "ledger_entries", "ledger_postings")
        }
        for i in range(teams):
            team_id = f"team_{i:010d}"
            rows["teams"].append((team_id, f"team {i}", "UTC", ANCHOR, BOUNDARY, "{}"))
            rows["subscriptions"].append(
                (
                    team_id,
                    "multichannel_expert",
                    seats,
                    "active",
                    ANCHOR,
                    "UTC",
                    0,
                    False,
                    ANCHOR,
                    ANCHOR,
                )
            )
            for n, (per_seat, bucket, scope, source) in enumerate(ALLOWANCES):
                credits = per_seat * seats
                grant_id, entry_id = new_id("grt"), new_id("ent")
                rows["grants"].append(
                    (
                        team_id, grant_id, source, "free", bucket,
                        json.dumps(scope) if scope else None,
                        credits, credits, 0, ANCHOR, BOUNDARY, ANCHOR,
                        f"period:2026-01-10T09:00:00Z:{n}", False,
                    )
                )  # fmt: skip
                rows["ledger_entries"].append(
                    (team_id, entry_id, "grant", ANCHOR, credits,
                     json.dumps({"source": source, "category": "free"}))
                )  # fmt: skip
                rows["ledger_postings"] += [
                    (team_id, entry_id, 0, grant_id, "issued", -credits),
                    (team_id, entry_id, 1, grant_id, "available", credits),
                ]
        columns = {
            "teams": "id, name, time_zone, created_at, due_at, settings",
            "subscriptions": "team_id, plan, seats, status, anchor, time_zone, issued_through, "
            "trial_used, created_at, updated_at",
            "grants": "team_id, id, source, category, bucket, scope, amount, remaining, "
            "reserved, effective_at, expires_at, created_at, origin, closed",
            "ledger_entries": "team_id, id, kind, created_at, credits, meta",
            "ledger_postings": "team_id, entry_id, seq, grant_id, account, amount",
        }
        for table, data in rows.items():
            with cur.copy(f"COPY {table} ({columns[table]}) FROM STDIN") as copy:
                for row in data:
                    copy.write_row(row)
        cur.execute("SET session_replication_role = DEFAULT")
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()


def _wal_position(url: str) -> tuple[int, int]:
    """The server's WAL insert position (bytes) and how many checkpoints it has done."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            lsn = conn.execute(text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")).scalar_one()
            done = conn.execute(
                text("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
            ).scalar_one()
    finally:
        engine.dispose()
    return int(lsn), int(done)


def _own_cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the sweeping processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _postgres_cpu_seconds() -> float:
    """CPU time of the local PostgreSQL server so far (Linux /proc; 0 elsewhere).

    Live processes count their own time; backends that have exited count in
    the postmaster's reaped-children time (cutime, cstime).
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / tick


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--server",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL of a database to connect to while creating the scratch one",
    )
    parser.add_argument("--teams", type=int, default=100_000)
    parser.add_argument("--seats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--processes", type=int, default=2, help="sweepers (Creditbook.tick processes=)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)

    url = create_database(args.server)
    try:
        book = creditbook.open(url, clock=FrozenClock(ANCHOR))  # migrates the empty database
        started = time.perf_counter()
        load(url, args.teams, args.seats)
        loaded = time.perf_counter() - started
        print(f"loaded {args.teams:,} teams in {loaded:.1f} s")

        book = creditbook.open(url, clock=FrozenClock(BOUNDARY + timedelta(seconds=1)))
        wal_before, checkpoints_before = _wal_position(url)
        cpu_before, pg_before = _own_cpu_seconds(), _postgres_cpu_seconds()
        started = time.perf_counter()
        done = book.tick(batch_size=args.batch_size, processes=args.processes)
        elapsed = time.perf_counter() - started
        python_cpu = _own_cpu_seconds() - cpu_before
        pg_cpu = _postgres_cpu_seconds() - pg_before
        wal_after, checkpoints_after = _wal_position(url)
        wal_bytes, checkpoints = wal_after - wal_before, checkpoints_after - checkpoints_before
        rate = done / elapsed if elapsed else float("inf")
        print(
            f"tick: {done:,} teams in {elapsed:.2f} s = {rate:,.0f} teams/s "
            f"(batch size {args.batch_size}, {args.processes} process(es); target >= 5,000/s; "
            f"load average {os.getloadavg()[0]:.1f})"
        )
        per_team = 1e6 / max(done, 1)
        print(
            f"cpu: Python {python_cpu:.1f} s ({python_cpu * per_team:.0f} us/team), "
            f"PostgreSQL {pg_cpu:.1f} s ({pg_cpu * per_team:.0f} us/team), "
            f"{os.cpu_count()} cores x {elapsed:.1f} s = {(os.cpu_count() or 1) * elapsed:.1f} s; "
            f"WAL {wal_bytes / max(done, 1) / 1024:.1f} KiB/team, {checkpoints} checkpoint(s) "
            "during the sweep"
        )

        engine = book.engine
        assert engine is not None
        with engine.connect() as conn:
            issued = conn.execute(
                text("SELECT count(*) FROM grants WHERE effective_at = :b"), {"b": BOUNDARY}
            ).scalar()
            expired = conn.execute(
                text("SELECT count(*) FROM ledger_postings WHERE account = 'expired'")
            ).scalar()
            left = conn.execute(
                text("SELECT count(*) FROM teams WHERE due_at <= :b"), {"b": BOUNDARY}
            ).scalar()
        ok = done == args.teams and issued == 2 * args.teams and expired == 2 * args.teams
        started = time.perf_counter()
        report = book.audit()
        audit_s = time.perf_counter() - started
        print(
            f"check: {issued:,} grants issued, {expired:,} expiries, {left} teams still due, "
            f"audit {'clean' if report.clean else 'FAILED'} ({audit_s:.1f} s)"
        )
        print(
            json.dumps(
                {
                    "benchmark": "tick",
                    "teams": done,
                    "seconds": round(elapsed, 3),
                    "teams_per_second": round(rate),
                    "processes": args.processes,
                    "batch_size": args.batch_size,
                    "python_cpu_us_per_team": round(python_cpu * per_team),
                    "postgres_cpu_us_per_team": round(pg_cpu * per_team),
                    "wal_bytes_per_team": round(wal_bytes / max(done, 1)),
                    "checkpoints": checkpoints,
                    "checks_ok": bool(ok and left == 0),
                    "audit_clean": report.clean,
                }
            )
        )
        engine.dispose()
        return 0 if ok and left == 0 and report.clean else 1
    finally:
        if not args.keep:
            drop_database(args.server, url)


if __name__ == "__main__":
    sys.exit(main())
