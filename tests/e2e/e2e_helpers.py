"""Helpers of the end-to-end tests: start and stop ``creditbook serve`` on a free loopback port."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

OPERATOR_KEY = "e2e-operator-key-0123456789abcdef0123"
SRC = Path(__file__).resolve().parents[2] / "src"


def _root_conftest():  # type: ignore[no-untyped-def]
    # The shared PostgreSQL helpers live in tests/conftest.py, which is not importable
    # by name next to this conftest; load it by path (its fixtures stay inert here).
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("creditbook_tests_root_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_root = _root_conftest()
create_pg_database = _root.create_pg_database
drop_pg_database = _root.drop_pg_database
pg_available = _root.pg_available


@dataclass
class Server:
    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(
    database_url: str, log_path: Path, extra_env: dict[str, str] | None = None
) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "CREDITBOOK_OPERATOR_KEY": OPERATOR_KEY,
        "CREDITBOOK_RATE_LIMIT_REQUESTS": "1000",
        **(extra_env or {}),
    }
    env.pop("CREDITBOOK_DATABASE_URL", None)
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "creditbook.entrypoints.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database-url",
            database_url,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", log_path, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"server did not become ready: {log_path.read_text()[-2000:]}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
