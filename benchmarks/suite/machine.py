"""The machine a run measured: CPU, memory, PostgreSQL settings, tool and Python versions.

Saved in every result file, since a ratio is only meaningful next to what produced it.
Two calibration figures go with them (``calibrate``): the same machine type has given
runs twice as slow from one day to the next, and an absolute limit (SQLite's 20,000
charges/s) can only be compared across runs next to how fast that day's machine was.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .core import BenchmarkError, PgTarget
from .pg import psql

PG_SETTINGS = ("server_version", "fsync", "synchronous_commit", "shared_buffers", "max_connections")


def _first_line(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else None


def cpu_model(cpuinfo: str) -> str | None:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return None


def mem_total_gib(meminfo: str) -> float | None:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


# A receipt-shaped document, as the charge path encodes and hashes one per charge.
_RECEIPT = {
    "charge_id": "ent_01m88sggek2enwrcgw1mvwmyk1",
    "team_id": "team_hot00000",
    "feature": "email_finder",
    "outcome": "deliverable",
    "quantity": 1,
    "unit_cost": 5,
    "multiplier": 1,
    "credits": 5,
    "grants": [{"grant_id": "grt_01m88sg8mg7tg5myybkf4x6788", "credits": 5, "bucket": "free"}],
    "created_at": "2026-11-25T07:25:20.720708+00:00",
    "hold_id": None,
    "returned": 0,
}


def _python_work() -> None:
    for _ in range(100):
        text = json.dumps(dict(_RECEIPT), sort_keys=True)
        hashlib.sha256(text.encode()).hexdigest()


def python_speed_us(seconds: float = 2.0) -> float:
    """Median microseconds of a fixed pure-Python task (100 JSON encodings and hashes of a
    receipt), repeated for ``seconds``: lower is a faster machine. On the shared benchmark
    machine the same task has taken 830 to 1,630 us within ten idle seconds, so one short
    timing would say little."""
    timings = []
    deadline = time.perf_counter() + seconds
    while not timings or time.perf_counter() < deadline:
        started = time.perf_counter()
        _python_work()
        timings.append(time.perf_counter() - started)
    return round(statistics.median(timings) * 1e6, 1)


def fsync_latency_us(directory: str | None = None, count: int = 100) -> float:
    """Median microseconds of writing 4 KiB and ``fsync`` in ``directory`` (the temporary
    directory by default, where the SQLite rows keep their file)."""
    timings = []
    with tempfile.NamedTemporaryFile(dir=directory, prefix="fsync-probe-") as probe:
        block = b"\0" * 4096
        for _ in range(count):
            started = time.perf_counter()
            os.write(probe.fileno(), block)
            os.fsync(probe.fileno())
            timings.append(time.perf_counter() - started)
    return round(statistics.median(timings) * 1e6, 1)


def calibrate() -> dict[str, float]:
    return {"python_task_us": python_speed_us(), "fsync_4k_us": fsync_latency_us()}


def describe_machine(pg: PgTarget) -> dict[str, Any]:
    postgres: dict[str, Any] = {"host": pg.host, "port": pg.port}
    try:
        for setting in PG_SETTINGS:
            postgres[setting] = psql(pg, f"SHOW {setting}")
    except BenchmarkError as exc:
        postgres["error"] = str(exc)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(_read("/proc/cpuinfo")),
        "mem_total_gib": mem_total_gib(_read("/proc/meminfo")),
        "kernel": platform.release(),
        # Another process busy on a 2-core machine moves every row; keep the evidence.
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "postgresql": postgres,
        "pgbench": _first_line(["pgbench", "--version"]),
        "wrk": _first_line(["wrk", "-v"]),
        "git_commit": _first_line(["git", "rev-parse", "--short", "HEAD"]),
        "calibration": calibrate(),
    }
