"""What the numbers are judged against: ratios between rows and absolute limits.

A ratio divides one row's throughput by another's measured in the same run; a limit
bounds one row's own figure. Entries naming a row that is not (yet) registered or not
selected show as "n/a" rather than failing, so the creditbook targets can live here
before their rows exist. The planned row names below are the contract for whoever
writes those rows: register them under exactly these names and the targets light up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Baseline rows (suite/rows/pgbench_rows.py).
PGBENCH_TPCB_C8 = "pgbench tpcb-like c8"
PGBENCH_TPCB_C32 = "pgbench tpcb-like c32"
PGBENCH_SIMPLE_C8 = "pgbench tpcb-like -N c8"
PGBENCH_SIMPLE_C32 = "pgbench tpcb-like -N c32"
SQL_HOT_C1 = "sql conditional-update debit hot row c1"
SQL_HOT_C8 = "sql conditional-update debit hot row c8"
SQL_HOT_C32 = "sql conditional-update debit hot row c32"
SQL_SPREAD_C8 = "sql conditional-update debit 10k rows c8"
SQL_SPREAD_C32 = "sql conditional-update debit 10k rows c32"

# Creditbook rows.
LIB_HOT_C8 = "library hot team c8"
LIB_HOT_C32 = "library hot team c32"
LIB_ZIPF_C8 = "library zipf 10k teams c8"
LIB_ZIPF_C32 = "library zipf 10k teams c32"
HTTP_NOOP_C32 = "http noop c32"
HTTP_NOOP_C128 = "http noop c128"
HTTP_CHARGE_C32 = "http charges c32"
HTTP_CHARGE_C128 = "http charges c128"
SQLITE_DURABLE = "sqlite durable charges"
SQLITE_DURABLE_BATCH = "sqlite durable charges charge_many x100 c1"
TICK_100K = "creditbook tick 100k teams"
ENRICH_100K = "enrichment 100k leads"
# The same loads on SQLite (issue 8: "the same on SQLite"), beside the limit rows above.
SQLITE_LIB_HOT_C8 = "sqlite library hot team c8"
SQLITE_LIB_ZIPF_C8 = "sqlite library zipf 10k teams c8"
SQLITE_LIB_ZIPF_C32 = "sqlite library zipf 10k teams c32"
SQLITE_HTTP_NOOP_C32 = "sqlite http noop c32"
SQLITE_HTTP_NOOP_C128 = "sqlite http noop c128"
SQLITE_HTTP_CHARGE_C32 = "sqlite http charges c32"
SQLITE_HTTP_CHARGE_C128 = "sqlite http charges c128"

PLANNED_ROWS: dict[str, str] = {
    LIB_HOT_C8: "library charges on ONE team from 8 workers (PostgreSQL storage)",
    LIB_HOT_C32: "library charges on ONE team from 32 workers",
    LIB_ZIPF_C8: "library charges over 10,000 teams drawn Zipf(s=1), 8 workers",
    LIB_ZIPF_C32: "library charges over 10,000 teams drawn Zipf(s=1), 32 workers",
    HTTP_NOOP_C32: "the creditbook server's no-op endpoint, wrk 32 connections",
    HTTP_NOOP_C128: "the creditbook server's no-op endpoint, wrk 128 connections",
    HTTP_CHARGE_C32: "POST charges through the HTTP API, wrk 32 connections",
    HTTP_CHARGE_C128: "POST charges through the HTTP API, wrk 128 connections",
    SQLITE_DURABLE: "durable charges/s on the SQLite backend (one process)",
    SQLITE_DURABLE_BATCH: "the same through the batch API, 100 charges per call",
    TICK_100K: "`creditbook tick` (renewals, expiries) over 100,000 teams, teams/s",
    ENRICH_100K: "enrichment job over 100,000 leads (sandbox providers), lead-features/s",
}


@dataclass(frozen=True)
class Ratio:
    """``scale * numerator.throughput / denominator.throughput``; ``minimum`` None = informational.

    ``scale`` serves the ceilings below: N callers that each wait for their own durable
    commit do at most N times what one caller does.
    """

    numerator: str
    denominator: str
    minimum: float | None = None
    source: str = ""
    scale: int = 1

    @property
    def label(self) -> str:
        times = f"{self.scale} x " if self.scale != 1 else ""
        return f"{times}{self.numerator} / {self.denominator}"


@dataclass(frozen=True)
class Limit:
    """A bound on one row's own figure (throughput in its unit, or a latency in ms)."""

    row: str
    metric: Literal["throughput", "p50_ms", "p99_ms"]
    minimum: float | None = None
    maximum: float | None = None
    source: str = ""

    @property
    def label(self) -> str:
        bound = f">= {self.minimum:g}" if self.minimum is not None else f"< {self.maximum:g}"
        return f"{self.row} {self.metric} {bound}"


CEILING = "ceiling: N closed-loop workers each wait for >= 1 durable commit per charge"

RATIOS: list[Ratio] = [
    # Targets from the issues.
    Ratio(LIB_HOT_C8, SQL_HOT_C8, 10.0, "target: hot team >= 10x a SQL conditional update"),
    Ratio(LIB_ZIPF_C8, PGBENCH_TPCB_C8, 3.0, "target: 10k teams >= 3x pgbench tpcb-like c8"),
    Ratio(HTTP_CHARGE_C32, HTTP_NOOP_C32, 0.6, "target: charges >= 0.6x the server's no-op"),
    Ratio(HTTP_CHARGE_C128, HTTP_NOOP_C128, 0.6, "target: charges >= 0.6x the server's no-op"),
    Ratio(HTTP_CHARGE_C32, PGBENCH_TPCB_C32, 1.0, "target: charges >= pgbench tpcb-like c32"),
    # Ceilings: what no implementation can beat on this machine. A library worker waits
    # for its charge's commit, and a commit costs at least what one client's cheapest
    # durable transaction costs (a round trip and a WAL flush): N such workers do at
    # most N times ``SQL_HOT_C1``, however their charges are batched. The first is the
    # most that ``LIB_HOT_C8 / SQL_HOT_C8`` can reach (its target is 10x).
    Ratio(SQL_HOT_C1, SQL_HOT_C8, source=CEILING, scale=8),
    Ratio(SQL_HOT_C1, SQL_HOT_C32, source=CEILING, scale=32),
    Ratio(LIB_HOT_C8, SQL_HOT_C1),
    # Informational: how the baselines relate to each other on this machine.
    Ratio(LIB_HOT_C32, SQL_HOT_C32),
    Ratio(LIB_ZIPF_C32, PGBENCH_TPCB_C32),
    Ratio(SQL_HOT_C8, PGBENCH_TPCB_C8),
    Ratio(SQL_SPREAD_C8, SQL_HOT_C8),
    Ratio(SQL_SPREAD_C32, SQL_HOT_C32),
    Ratio(PGBENCH_TPCB_C32, PGBENCH_TPCB_C8),
    Ratio(PGBENCH_SIMPLE_C8, PGBENCH_TPCB_C8),
    Ratio(SQLITE_HTTP_CHARGE_C32, SQLITE_HTTP_NOOP_C32),
    Ratio(SQLITE_HTTP_CHARGE_C128, SQLITE_HTTP_NOOP_C128),
    Ratio(SQLITE_LIB_HOT_C8, LIB_HOT_C8),
    Ratio(SQLITE_LIB_ZIPF_C8, LIB_ZIPF_C8),
]

LIMITS: list[Limit] = [
    Limit(HTTP_CHARGE_C32, "p99_ms", maximum=50.0, source="target: p99 < 50 ms at 32 conns"),
    # Judged twice: single charges from 32 threads, and the batch API the same issue
    # asks for (what a host that charges in bulk, such as an enrichment job, calls).
    Limit(SQLITE_DURABLE, "throughput", minimum=20_000, source="target: SQLite >= 20k/s"),
    Limit(
        SQLITE_DURABLE_BATCH,
        "throughput",
        minimum=20_000,
        source="target: SQLite >= 20k/s, through charge_many",
    ),
    Limit(TICK_100K, "throughput", minimum=5_000, source="target: tick >= 5,000 teams/s"),
    Limit(ENRICH_100K, "throughput", minimum=2_000, source="target: >= 2,000 lead-features/s"),
]
