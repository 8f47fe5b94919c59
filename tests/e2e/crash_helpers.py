"""A ``creditbook serve`` that a test kills with SIGKILL and starts again, on one port.

The server runs in a process group of its own (``start_new_session``), and only
that group is ever signalled: other servers on the machine are left alone. Its
log (every life of it, appended) is kept beside the test's database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from e2e_helpers import OPERATOR_KEY, SRC, free_port

# A sandbox slowed to a few lookups per second, so a job is still running when the
# server dies (CREDITBOOK_ENRICHMENT_PROVIDERS points at it).
SLOW_SANDBOX = {"email_finder": [{"kind": "sandbox", "rate_per_second": 40, "burst": 1}]}


@dataclass
class CrashableServer:
    database_url: str
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    crashes: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def env(self) -> dict[str, str]:
        providers = self.workdir / "providers.json"
        providers.write_text(json.dumps(SLOW_SANDBOX), encoding="utf-8")
        env = {
            **os.environ,
            "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "CREDITBOOK_OPERATOR_KEY": OPERATOR_KEY,
            "CREDITBOOK_RATE_LIMIT_REQUESTS": "100000",
            "CREDITBOOK_ENRICHMENT_PROVIDERS": str(providers),
            "CREDITBOOK_ENRICHMENT_CHUNK_SIZE": "20",
            **self.extra_env,
        }
        env.pop("CREDITBOOK_DATABASE_URL", None)
        return env

    def start(self, timeout: float = 60) -> None:
        """Start the server (again) and wait until ``/readyz`` answers 200."""
        assert self.process is None, "the server is already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "creditbook.entrypoints.cli", "serve", "--host",
                 "127.0.0.1", "--port", str(self.port), "--database-url", self.database_url],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.crash()
        raise RuntimeError(f"server did not become ready: {self.log_tail()}")

    def crash(self) -> None:
        """SIGKILL the server's process group, as a power cut or the OOM killer would."""
        process, self.process = self.process, None
        if process is None:
            return
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        self.crashes += 1

    def stop(self) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)

    def client(self, key: str | None = None, timeout: float = 30) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def new_team(server: CrashableServer, name: str, credits: int) -> tuple[str, str]:
    """A team with ``credits`` purchased credits; its id and its admin's key."""
    with server.client(OPERATOR_KEY) as op:
        made = op.post(
            "/v1/teams",
            json={"name": name, "time_zone": "UTC", "admin_email": f"admin@{name}.example"},
        )
        assert made.status_code == 201, made.text
        team_id: str = made.json()["team"]["id"]
        granted = op.post(
            f"/v1/teams/{team_id}/grants",
            json={"credits": credits, "category": "purchased", "reason": "bought"},
        )
        assert granted.status_code == 201, granted.text
    return team_id, made.json()["admin_api_key"]


def job_leads(n: int) -> list[dict[str, Any]]:
    return [
        {"first_name": f"Lead{i}", "last_name": "Crash", "company_domain": f"c{i}.example"}
        for i in range(n)
    ]


def run_audit(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "creditbook.entrypoints.cli", "--database-url", database_url,
         "audit"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
