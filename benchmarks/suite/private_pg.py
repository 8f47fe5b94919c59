"""A throwaway PostgreSQL cluster with ``pg_stat_statements`` loaded, for counting statements.

``pg_stat_statements`` only works when the server loaded it at start-up
(``shared_preload_libraries``). The machine's shared server at 127.0.0.1:5432 does
not, and restarting a server that other work uses is not the benchmark's to do. So
this starts a cluster of its own from the same PostgreSQL binaries: ``initdb`` in a
temporary directory, the server on a free loopback port with the extension loaded
and durability as on the shared server (``fsync`` and ``synchronous_commit`` on),
and removes it all on exit. Run as root, the cluster belongs to the ``postgres``
system user (``initdb`` refuses root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .core import BenchmarkError, PgTarget, free_port

SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.track_utility": "on",
    "fsync": "on",
    "synchronous_commit": "on",
    "max_connections": "50",
}


def postgres_bindir() -> Path | None:
    """The directory of the newest installed ``initdb`` and ``pg_ctl``, or None."""
    override = os.environ.get("CREDITBOOK_PG_BINDIR")
    if override:
        return Path(override)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_owner(cmd: list[str]) -> list[str]:
    """``cmd`` run as the ``postgres`` system user when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str], what: str, timeout: float) -> None:
    proc = subprocess.run(
        _as_owner(cmd), capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise BenchmarkError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


@contextmanager
def private_postgres(timeout: float = 120.0) -> Iterator[PgTarget]:
    """Start a private cluster with ``pg_stat_statements``; yields where it listens.

    Raises ``BenchmarkError`` when the PostgreSQL server binaries are missing or the
    cluster does not start; the cluster is stopped and deleted on exit in any case.
    """
    bindir = postgres_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        raise BenchmarkError(
            "PostgreSQL's server binaries (initdb, pg_ctl) were not found under "
            "/usr/lib/postgresql/*/bin; set CREDITBOOK_PG_BINDIR to their directory"
        )
    root = Path(tempfile.mkdtemp(prefix="creditbook-pgss-"))
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    pg_ctl = str(bindir / "pg_ctl")
    try:
        try:
            # The cluster is thrown away: its files need no sync (--no-sync); its
            # transactions still wait for theirs (fsync=on).
            initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
            _run([*initdb, "-E", "UTF8", "--no-sync"], "initdb", timeout)
            port = _start(pg_ctl, data, root, log, timeout)
        except BenchmarkError as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise BenchmarkError(f"{exc}\nserver log: {tail}") from None
        yield PgTarget("127.0.0.1", port, "postgres")
    finally:
        _stop(pg_ctl, data)
        shutil.rmtree(root, ignore_errors=True)


def _start(pg_ctl: str, data: Path, root: Path, log: Path, timeout: float) -> int:
    """Start the server on a free port; its port. A port taken between the check and the
    server's bind (another test's cluster, say) gets a second and a third try."""
    for attempt in range(3):
        port = free_port()
        settings = SETTINGS | {"port": str(port), "unix_socket_directories": str(root)}
        options = " ".join(f"-c {k}={v}" for k, v in settings.items())
        start = [pg_ctl, "-D", str(data), "-l", str(log), "-o", options]
        try:
            _run([*start, "-w", "-t", str(int(timeout)), "start"], "pg_ctl start", timeout + 10)
            return port
        except BenchmarkError:
            in_use = log.exists() and "could not bind" in log.read_text(errors="replace")
            if attempt == 2 or not in_use:
                raise
            log.unlink()
    raise AssertionError("unreachable")


def _stop(pg_ctl: str, data: Path) -> None:
    """Stop the server if it runs: a fast shutdown, else an immediate one."""
    if not (data / "postmaster.pid").exists():
        return
    for mode in ("fast", "immediate"):
        try:
            _run([pg_ctl, "-D", str(data), "-m", mode, "-w", "stop"], f"pg_ctl stop -m {mode}", 60)
            return
        except (BenchmarkError, subprocess.TimeoutExpired):
            continue
