"""Parsers for the text the load tools print: pgbench's summary and per-transaction log, wrk.

Kept apart from the code that runs the tools so ``benchmarks/test_parsers.py`` can check
them against captured outputs without PostgreSQL or wrk installed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .core import BenchmarkError

_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_SIZE_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def wrk_time_to_ms(text: str) -> float:
    """``"1.23ms"`` / ``"456.00us"`` / ``"2.00s"`` / ``"1.50m"`` / ``"1.00h"`` → milliseconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(us|ms|s|m|h)\s*", text)
    if m is None:
        raise BenchmarkError(f"not a wrk duration: {text!r} (expected a number + us|ms|s|m|h)")
    return float(m.group(1)) * _TIME_UNITS_MS[m.group(2)]


@dataclass(frozen=True)
class WrkReport:
    """The figures of one ``wrk --latency`` run."""

    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p75_ms: float | None
    p90_ms: float | None
    p99_ms: float
    latency_avg_ms: float | None
    latency_max_ms: float | None
    read_bytes: float | None
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    threads: int | None
    connections: int | None

    @property
    def errors(self) -> int:
        return self.non_2xx_3xx + sum(self.socket_errors.values())


def parse_wrk(output: str) -> WrkReport:
    """Parse wrk's stdout. Needs ``--latency`` (for the 50%/99% lines)."""
    dist: dict[int, float] = {}
    in_dist = False
    for line in output.splitlines():
        stripped = line.strip()
        if stripped == "Latency Distribution":
            in_dist = True
            continue
        if in_dist:
            m = re.fullmatch(r"(\d+(?:\.\d+)?)%\s+(\S+)", stripped)
            if m is None:
                in_dist = False
            else:
                dist[round(float(m.group(1)))] = wrk_time_to_ms(m.group(2))
    m_total = re.search(
        r"^\s*(\d+) requests in ([0-9.]+(?:us|ms|s|m|h)),\s*([0-9.]+)([KMGT]?B) read",
        output,
        re.M,
    )
    m_rps = re.search(r"^Requests/sec:\s*([0-9.]+)", output, re.M)
    if m_total is None or m_rps is None:
        raise BenchmarkError(
            "wrk output has no 'N requests in T' or 'Requests/sec:' line; did it fail?\n" + output
        )
    if 50 not in dist or 99 not in dist:
        raise BenchmarkError("wrk output has no latency distribution; run wrk with --latency")
    m_lat = re.search(r"^\s*Latency\s+(\S+)\s+\S+\s+(\S+)\s+\S+%", output, re.M)
    m_conf = re.search(r"^\s*(\d+) threads and (\d+) connections", output, re.M)
    m_non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    m_sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, m_sock.groups()), strict=True))
        if m_sock
        else {}
    )
    return WrkReport(
        requests=int(m_total.group(1)),
        duration_s=wrk_time_to_ms(m_total.group(2)) / 1000.0,
        requests_per_s=float(m_rps.group(1)),
        p50_ms=dist[50],
        p75_ms=dist.get(75),
        p90_ms=dist.get(90),
        p99_ms=dist[99],
        latency_avg_ms=wrk_time_to_ms(m_lat.group(1)) if m_lat else None,
        latency_max_ms=wrk_time_to_ms(m_lat.group(2)) if m_lat else None,
        read_bytes=float(m_total.group(3)) * _SIZE_UNITS[m_total.group(4)],
        non_2xx_3xx=int(m_non2xx.group(1)) if m_non2xx else 0,
        socket_errors=socket_errors,
        threads=int(m_conf.group(1)) if m_conf else None,
        connections=int(m_conf.group(2)) if m_conf else None,
    )


@dataclass(frozen=True)
class PgbenchSummary:
    """pgbench's closing summary (stdout)."""

    transaction_type: str
    clients: int
    threads: int
    processed: int
    failed: int
    latency_avg_ms: float
    latency_stddev_ms: float | None
    tps: float


def parse_pgbench_summary(output: str) -> PgbenchSummary:
    """Parse pgbench's stdout (PostgreSQL 13..17 wording)."""

    def find(pattern: str) -> str | None:
        m = re.search(pattern, output, re.M)
        return m.group(1) if m else None

    tps = find(r"^tps = ([0-9.]+) \(without initial connection time\)") or find(
        r"^tps = ([0-9.]+) \(excluding connections establishing\)"
    )
    processed = find(r"^number of transactions actually processed: (\d+)")
    latency = find(r"^latency average = ([0-9.]+) ms")
    if tps is None or processed is None or latency is None:
        raise BenchmarkError(
            "pgbench output lacks tps / processed / latency average lines:\n" + output
        )
    return PgbenchSummary(
        transaction_type=find(r"^transaction type: (.+)$") or "?",
        clients=int(find(r"^number of clients: (\d+)") or 0),
        threads=int(find(r"^number of threads: (\d+)") or 0),
        processed=int(processed),
        failed=int(find(r"^number of failed transactions: (\d+)") or 0),
        latency_avg_ms=float(latency),
        latency_stddev_ms=(
            float(s) if (s := find(r"^latency stddev = ([0-9.]+) ms")) is not None else None
        ),
        tps=float(tps),
    )


@dataclass(frozen=True)
class PgbenchLog:
    """Per-transaction latencies (ms) read from ``pgbench -l`` files."""

    latencies_ms: list[float]
    failed: int
    skipped: int


def parse_pgbench_log(lines: Iterable[str]) -> PgbenchLog:
    """Read ``pgbench -l`` lines: ``client_id tx_no time script_no epoch epoch_us [...]``.

    ``time`` is the transaction's latency in microseconds, or ``failed`` / ``skipped``
    for transactions that did not complete (counted apart, not as latencies).
    """
    latencies: list[float] = []
    failed = skipped = 0
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 6:
            raise BenchmarkError(
                f"pgbench log line {number} has {len(fields)} fields, expected >= 6: {line!r}"
            )
        value = fields[2]
        if value == "failed":
            failed += 1
        elif value == "skipped":
            skipped += 1
        else:
            latencies.append(int(value) / 1000.0)
    return PgbenchLog(latencies_ms=latencies, failed=failed, skipped=skipped)
