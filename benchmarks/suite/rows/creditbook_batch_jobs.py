"""Batch-job rows: ``creditbook tick`` over 100,000 teams and an enrichment job of 100,000 leads.

Each row runs its standalone script (``benchmarks/tick_bench.py``,
``benchmarks/enrich_bench.py``) in a child process with the run's interpreter:
the script makes its own scratch database on the run's PostgreSQL, checks its
result (counts, then a full ``Creditbook.audit``), drops the database and prints
a JSON line, which becomes the row. The row's audit hook reports what the
script's own audit found. Their figures are jobs' rates (teams/s,
lead-features/s), bounded by CPU, not by a load duration: ``--seconds`` does
not apply.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..core import CREDITBOOK, BenchmarkError, RowResult, RunContext, row
from ..targets import ENRICH_100K, TICK_100K

BENCHMARKS = Path(__file__).resolve().parents[2]
SRC = BENCHMARKS.parent / "src"
TEAMS = 100_000
LEADS = 100_000
SWEEPERS = 2  # one per core: see decision 0002


def _run_script(ctx: RunContext, script: str, args: list[str], server_flag: str) -> dict[str, Any]:
    """Run ``script`` with ``args`` and the run's server URL after ``server_flag``."""
    server = ctx.pg.sqlalchemy_url("postgres")
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, server_flag, server],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=False,
    )
    log = ctx.row_dir() / "output.txt"
    log.write_text(done.stdout + done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise BenchmarkError(f"{script} printed no result (exit {done.returncode}); see {log}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["exit_code"] = done.returncode
    return result


def _audit_from(result: dict[str, Any], checks: str) -> list[str]:
    problems = []
    if not result.get("audit_clean"):
        problems.append("the script's audit of the database was not clean")
    if not result.get(checks, True):
        problems.append(f"the script's own checks failed ({checks})")
    if result.get("exit_code") != 0:
        problems.append(f"the script exited with {result.get('exit_code')}")
    return problems


@row(TICK_100K, group=CREDITBOOK)
def tick_100k(ctx: RunContext) -> RowResult:
    """`creditbook tick` over 100,000 teams at a boundary, 2 sweepers, PostgreSQL."""
    result = _run_script(
        ctx, "tick_bench.py", ["--teams", str(TEAMS), "--processes", str(SWEEPERS)], "--server"
    )
    ctx.add_audit(lambda: _audit_from(result, "checks_ok"))
    return RowResult(
        name=TICK_100K,
        unit="teams/s",
        ops=int(result["teams"]),
        seconds=float(result["seconds"]),
        throughput=float(result["teams"]) / float(result["seconds"]),
        p50_ms=None,
        p99_ms=None,
        extra={
            k: result[k]
            for k in (
                "processes",
                "python_cpu_us_per_team",
                "postgres_cpu_us_per_team",
                "wal_bytes_per_team",
                "checkpoints",
            )
        },
    )


@row(ENRICH_100K, group=CREDITBOOK)
def enrich_100k(ctx: RunContext) -> RowResult:
    """Enrichment job of 100,000 leads x 2 features (sandbox providers), PostgreSQL."""
    result = _run_script(ctx, "enrich_bench.py", ["--leads", str(LEADS)], "--server-url")
    ctx.add_audit(lambda: _audit_from(result, "audit_clean"))
    items = int(result["lead_features"])
    return RowResult(
        name=ENRICH_100K,
        unit="lead-features/s",
        ops=items,
        seconds=float(result["run_seconds"]),
        throughput=items / float(result["run_seconds"]),
        p50_ms=None,
        p99_ms=None,
        extra={"status": result["status"], "chunk_size": result["chunk_size"]},
    )
