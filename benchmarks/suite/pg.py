"""PostgreSQL plumbing for rows: psql one-liners, scratch databases, and a pgbench runner.

Everything goes through the ``psql`` and ``pgbench`` binaries so the SQL baselines use
exactly the client the PostgreSQL project ships, with nothing of ours in between.
Per-transaction latencies come from ``pgbench -l`` (one log file per pgbench thread in a
temporary directory): pgbench's own summary only prints the average and, with -P, the
standard deviation, never percentiles.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .core import BenchmarkError, PgTarget, RowResult
from .load import percentile
from .parsers import parse_pgbench_log, parse_pgbench_summary


def _pg_args(pg: PgTarget) -> list[str]:
    return ["-h", pg.host, "-p", str(pg.port), "-U", pg.user]


def psql(pg: PgTarget, sql: str, dbname: str = "postgres") -> str:
    """Run ``sql`` with psql (stop on the first error) and return its unaligned output."""
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *_pg_args(pg), "-d", dbname]
    proc = subprocess.run(
        [*cmd, "-c", sql], capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode != 0:
        raise BenchmarkError(f"psql failed on {sql[:200]!r}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def create_scratch_database(pg: PgTarget, dbname: str) -> str:
    """(Re)create ``dbname``, dropping a leftover from an interrupted run first."""
    if not dbname.startswith("cb_bench_"):
        raise BenchmarkError(f"scratch databases are named cb_bench_*, refusing {dbname!r}")
    psql(pg, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    psql(pg, f'CREATE DATABASE "{dbname}"')
    return dbname


def drop_scratch_database(pg: PgTarget, dbname: str) -> None:
    if not dbname.startswith("cb_bench_"):
        raise BenchmarkError(f"scratch databases are named cb_bench_*, refusing {dbname!r}")
    psql(pg, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def pgbench_init(pg: PgTarget, dbname: str, scale: int) -> None:
    """``pgbench -i -s <scale> -q``: the standard TPC-B-like tables, quietly."""
    proc = subprocess.run(
        ["pgbench", *_pg_args(pg), "-i", "-s", str(scale), "-q", dbname],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchmarkError(f"pgbench -i failed: {proc.stderr.strip()}")


def run_pgbench(
    name: str,
    pg: PgTarget,
    dbname: str,
    *,
    clients: int,
    seconds: float,
    logdir: Path,
    threads: int = 2,
    builtin: str | None = "tpcb-like",
    script: Path | None = None,
    extra_args: tuple[str, ...] = (),
    vacuum: bool = True,
) -> RowResult:
    """Run pgbench for ``seconds`` and return tps plus p50/p99 from its transaction log.

    Either ``builtin`` (``tpcb-like``, ``simple-update``, ``select-only``) or a custom
    ``script`` file. ``vacuum=False`` adds ``-n`` (needed when the database has no
    pgbench tables, and pointless for custom scripts).
    """
    duration = max(1, round(seconds))
    cmd = [
        "pgbench",
        *_pg_args(pg),
        "-c",
        str(clients),
        "-j",
        str(min(threads, clients)),
        "-T",
        str(duration),
        "--protocol=prepared",
        "-l",
        f"--log-prefix={logdir / 'pgbench_log'}",
    ]
    if not vacuum:
        cmd.append("-n")
    if script is not None:
        cmd += ["-f", str(script)]
    elif builtin is not None:
        cmd += ["-b", builtin]
    cmd += [*extra_args, dbname]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 300, check=False)
    if proc.returncode != 0:
        raise BenchmarkError(f"pgbench exited {proc.returncode}: {proc.stderr.strip()}")
    summary = parse_pgbench_summary(proc.stdout)
    lines: list[str] = []
    for log_file in sorted(logdir.glob("pgbench_log.*")):
        lines.extend(log_file.read_text().splitlines())
    log = parse_pgbench_log(lines)
    if summary.failed:
        raise BenchmarkError(f"pgbench reported {summary.failed} failed transactions")
    return RowResult(
        name=name,
        unit="tx/s",
        ops=summary.processed,
        seconds=float(duration),
        throughput=summary.tps,
        p50_ms=percentile(log.latencies_ms, 50),
        p99_ms=percentile(log.latencies_ms, 99),
        extra={
            "tool": "pgbench",
            "transaction_type": summary.transaction_type,
            "clients": summary.clients,
            "threads": summary.threads,
            "latency_avg_ms": summary.latency_avg_ms,
            "logged_transactions": len(log.latencies_ms),
            "command": " ".join(cmd).replace(str(logdir), "<tmp>"),
        },
    )
