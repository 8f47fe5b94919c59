"""The machine a run measured: CPU, memory, PostgreSQL settings, tool and Python versions.

Saved in every result file, since a ratio is only meaningful next to what produced it.
"""

from __future__ import annotations

import os
import platform
import subprocess
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
    }
