"""A real ``creditbook serve`` under load while its database goes away and comes back.

PostgreSQL: the server reaches the shared PostgreSQL through a TCP proxy in
this process, which the test cuts (every connection closed, new ones closed
at once) and restores. SQLite: another process holds ``BEGIN EXCLUSIVE`` on
the file past the server's busy timeout. Either way, during the outage the
server answers only 201 or 503 ``database_unavailable`` with ``Retry-After``
(never a 500), loses nothing it acknowledged, serves again by itself once
the database is back, and logs at most one line per refused request (no
traceback at all).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_helpers import (
    OPERATOR_KEY,
    Server,
    create_pg_database,
    drop_pg_database,
    pg_available,
    start_server,
    stop_server,
)

import creditbook
from tcp_proxy import TcpProxy

CHARGE = {"feature": "email_finder", "outcome": "deliverable"}  # 5 credits
START_CREDITS = 1_000_000
WORKERS = 6
MAX_REQUESTS = 4_000  # all workers together: the load is bounded in count and in time
OUTAGE_SECONDS = 1.5
SERVER_ENV = {
    "CREDITBOOK_RATE_LIMIT_REQUESTS": "1000000",
    "CREDITBOOK_DATABASE_RETRY_AFTER_SECONDS": "1",
    "CREDITBOOK_OUTAGE_LOG_INTERVAL_SECONDS": "0.5",
    "CREDITBOOK_DATABASE_BUSY_TIMEOUT_SECONDS": "0.2",
}


@dataclass
class Answer:
    key: str
    sent_at: float
    status: int
    headers: httpx.Headers
    body: dict[str, Any]


@dataclass
class Load:
    """Workers charging with a new idempotency key each, until ``stop`` or the budget ends."""

    server: Server
    api_key: str
    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._work, daemon=True) for _ in range(WORKERS)]
        for t in threads:
            t.start()
        return threads

    def _work(self) -> None:
        with self.server.client(self.api_key) as client:
            while not self.stop.is_set():
                with self.lock:
                    if len(self.answers) >= MAX_REQUESTS:
                        return
                key = f"load-{uuid.uuid4().hex}"
                sent = time.monotonic()
                r = client.post("/v1/charges", json=CHARGE, headers={"Idempotency-Key": key})
                with self.lock:
                    self.answers.append(Answer(key, sent, r.status_code, r.headers, r.json()))
                if r.status_code == 503:
                    time.sleep(0.02)  # a client honouring Retry-After would wait longer

    def successes_after(self, moment: float, count: int = 1, timeout: float = 20.0) -> float:
        """When the first of ``count`` charges sent after ``moment`` was acknowledged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                ok = [a.sent_at for a in self.answers if a.sent_at >= moment and a.status == 201]
            if len(ok) >= count:
                return min(ok)
            time.sleep(0.02)
        raise AssertionError(f"fewer than {count} charges were acknowledged after {moment}")


def _team(server: Server) -> str:
    with server.client(OPERATOR_KEY) as op:
        made = op.post("/v1/teams", json={"name": "Outage", "admin_email": "ada@out.example"})
        assert made.status_code == 201, made.text
        team_id = made.json()["team"]["id"]
        granted = op.post(
            f"/v1/teams/{team_id}/grants",
            json={"credits": START_CREDITS, "category": "purchased", "reason": "load"},
        )
        assert granted.status_code == 201, granted.text
    key: str = made.json()["admin_api_key"]
    return key


def _outage_under_load(
    server: Server, database_url: str, go_away: Callable[[], None], come_back: Callable[[], None]
) -> None:
    api_key = _team(server)
    log_start = server.log_path.stat().st_size  # this test's lines only
    load = Load(server, api_key)
    threads = load.run()
    try:
        load.successes_after(0.0, count=WORKERS * 5)  # the server is warm and serving
        went_away = time.monotonic()
        go_away()
        time.sleep(OUTAGE_SECONDS / 2)
        ready = httpx.get(f"{server.base_url}/readyz", timeout=10)
        time.sleep(OUTAGE_SECONDS / 2)
        came_back = time.monotonic()
        come_back()
        first = load.successes_after(came_back)
        load.successes_after(first, count=WORKERS * 5)
    finally:
        load.stop.set()
        for t in threads:
            t.join(30)
    assert ready.status_code == 503  # readiness says so while the database is away
    answers = list(load.answers)
    refused = [a for a in answers if a.status == 503]
    served = [a for a in answers if a.status == 201]
    print(  # the figures docs/reliability.md quotes (pytest -rP shows them)
        f"\n{len(answers)} requests: {len(served)} acknowledged, {len(refused)} refused in "
        f"{came_back - went_away:.2f} s of outage; serving again "
        f"{first - came_back:.3f} s after the database came back"
    )

    # Only 201s and 503 database_unavailable with Retry-After: never a 500.
    assert {a.status for a in answers} == {201, 503}
    assert any(a.sent_at < went_away for a in served) and any(a.sent_at > first for a in served)
    for a in refused:
        assert a.headers["content-type"].startswith("application/problem+json")
        assert a.body["code"] == "database_unavailable"
        assert int(a.headers["retry-after"]) == a.body["retry_after"] == 1
        assert a.body["outcome"] in ("not_applied", "unknown")

    # Nothing acknowledged was lost: each acknowledged key replays its first answer
    # (a lost charge would run again, with a new id). Refused keys, retried with the
    # same key, run now or replay what may have committed: each key charged once.
    def replay(batch: list[Answer]) -> None:
        with server.client(api_key) as client:
            for a in batch:
                again = client.post("/v1/charges", json=CHARGE, headers={"Idempotency-Key": a.key})
                assert again.status_code == 201, again.text
                if a.status == 201:
                    assert again.json() == a.body

    with ThreadPoolExecutor(WORKERS) as pool:
        everything = served + refused
        for done in [pool.submit(replay, everything[i::WORKERS]) for i in range(WORKERS)]:
            done.result()
    with server.client(api_key) as client:
        available = client.get("/v1/credits").json()["available"]
    assert available == START_CREDITS - 5 * len(answers)
    direct = creditbook.open(database_url, upgrade=False)
    try:
        assert direct.audit().clean
    finally:
        assert direct.engine is not None
        direct.engine.dispose()

    # At most one log line per refused request, and not one traceback.
    with server.log_path.open("rb") as log:
        log.seek(log_start)
        lines = [json.loads(line) for line in log.read().decode().splitlines() if line]
    by_request: dict[str, int] = {}
    for line in lines:
        by_request[line.get("request_id", "-")] = by_request.get(line.get("request_id", "-"), 0) + 1
    assert all(by_request.get(a.body["request_id"], 0) <= 1 for a in refused)
    assert not [line for line in lines if "exception" in line or line["level"] == "error"]
    outage_lines = [line for line in lines if line["level"] == "warning"]
    assert 1 <= len(outage_lines) <= len(refused)
    assert not [line for line in lines if line["logger"] == "creditbook.group_commit"]
    summaries = [line for line in lines if line["logger"] == "creditbook.outage"]
    assert summaries and all(
        line["message"] == f"{line['refused']} requests refused: database unavailable"
        and line["request_id"] == "-"
        for line in summaries
    )
    logged = sum(1 for line in lines if line.get("outage")) + sum(
        line["not_logged"] for line in summaries
    )
    assert logged <= len(refused)  # what was logged or summed up, never more than refused


@pytest.fixture(scope="module")
def pg_behind_proxy(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, TcpProxy, str]]:
    if not pg_available():
        pytest.skip("PostgreSQL not reachable")
    tmp_path = tmp_path_factory.mktemp("outage-pg")
    url = create_pg_database("cb_outage")
    migrated = creditbook.open(url)  # directly: the server starts on an up-to-date schema
    assert migrated.engine is not None
    migrated.engine.dispose()
    with TcpProxy() as proxy:
        server = start_server(proxy.url_for(url), tmp_path / "server.log", **SERVER_ENV)
        try:
            yield server, proxy, url
        finally:
            stop_server(server)
    drop_pg_database(url)


@pytest.mark.postgres
def test_a_postgresql_outage_under_load_is_503s_with_retry_after_and_loses_nothing(
    pg_behind_proxy: tuple[Server, TcpProxy, str],
) -> None:
    server, proxy, url = pg_behind_proxy
    _outage_under_load(server, url, proxy.cut, proxy.restore)


@pytest.mark.postgres
def test_a_charge_whose_commit_answer_was_lost_answers_unknown_and_its_retry_replays_it(
    pg_behind_proxy: tuple[Server, TcpProxy, str],
) -> None:
    server, proxy, _ = pg_behind_proxy
    api_key = _team(server)
    with server.client(api_key) as client:
        warm = client.post("/v1/charges", json=CHARGE, headers={"Idempotency-Key": "warm"})
        assert warm.status_code == 201
        lost_before = proxy.commits_lost
        proxy.lose_next_commit_answer()
        lost = client.post("/v1/charges", json=CHARGE, headers={"Idempotency-Key": "lost"})
        assert proxy.commits_lost == lost_before + 1
        assert lost.status_code == 503 and lost.headers["retry-after"] == "1"
        body = lost.json()
        assert (body["code"], body["outcome"]) == ("database_unavailable", "unknown")
        assert "same idempotency key" in body["detail"]
        again = client.post("/v1/charges", json=CHARGE, headers={"Idempotency-Key": "lost"})
        assert again.status_code == 201  # the first request had committed: its answer
        charges = client.get("/v1/ledger", params={"kind": "charge"}).json()["entries"]
        assert len(charges) == 2
        assert again.json()["charge_id"] in {e["id"] for e in charges}
        assert client.get("/v1/credits").json()["available"] == START_CREDITS - 2 * 5


LOCKER = """
import sqlite3, sys, time
holder = sqlite3.connect(sys.argv[1], isolation_level=None)
holder.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
holder.rollback()
"""


def test_a_sqlite_file_locked_by_another_process_under_load_is_503s_and_loses_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "creditbook.db"
    url = f"sqlite:///{path}"
    server = start_server(url, tmp_path / "server.log", **SERVER_ENV)
    locker: subprocess.Popen[str] | None = None

    def lock() -> None:
        nonlocal locker
        locker = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"

    def unlock() -> None:
        assert locker is not None and locker.stdin is not None
        locker.stdin.write("\n")
        locker.stdin.flush()
        locker.wait(10)

    try:
        _outage_under_load(server, url, lock, unlock)
    finally:
        if locker is not None and locker.poll() is None:
            locker.kill()
            locker.wait()
        stop_server(server)
