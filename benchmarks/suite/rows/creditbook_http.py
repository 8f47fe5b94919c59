"""HTTP rows: ``creditbook serve`` under wrk, charges beside the same server's no-op.

One server (a ``creditbook serve`` subprocess on 127.0.0.1, a free port, PostgreSQL
storage, ``CREDITBOOK_GROUP_COMMIT=1``) serves every row of the run:

- ``http noop cN``: ``GET /v1/noop`` (no auth, no database): what the server stack
  (uvicorn, FastAPI, the request-id middleware) costs by itself.
- ``http charges cN``: ``POST /v1/charges`` (email_finder, deliverable) with the team's
  API key and a unique ``Idempotency-Key`` per request, on one team with a billion
  credits; every request must answer 201 (wrk counts any other status as an error and
  the row fails).
- ``http charges:batch x100 c32``: ``POST /v1/charges:batch`` of 100 charges per request.
- ``sqlite http noop cN`` and ``sqlite http charges cN``: the same rows against a second
  server whose storage is a SQLite file (WAL, ``synchronous=FULL``); without a loop
  committer on SQLite, its group commit runs on the committer thread.

The key is exempt from the rate limit (``CREDITBOOK_RATE_LIMIT_EXEMPT_KEYS``), as a
service key would be. Each charge row first runs wrk unmeasured for a fifth of
its time (1-3 s): the server's first charges open its database connections and
prepare its statements. After each charge row the database is audited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import creditbook
from creditbook.service.access import AccessService

from ..core import CREDITBOOK, BenchmarkError, RowResult, RunContext, free_port, row
from ..pg import create_scratch_database, drop_scratch_database
from ..targets import (
    HTTP_CHARGE_C32,
    HTTP_CHARGE_C128,
    HTTP_NOOP_C32,
    HTTP_NOOP_C128,
    SQLITE_HTTP_CHARGE_C32,
    SQLITE_HTTP_CHARGE_C128,
    SQLITE_HTTP_NOOP_C32,
    SQLITE_HTTP_NOOP_C128,
)
from ..wrk import run_wrk, wrk_post_script

DBNAME = "cb_bench_http"
BALANCE = 1_000_000_000
BATCH = 100


@dataclass
class Server:
    url: str
    api_key: str
    team_id: str
    book: creditbook.Creditbook
    proc: subprocess.Popen[bytes]
    log: Path

    def audit(self) -> list[str]:
        return list(self.book.audit().problems)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.book.disable_group_commit()
        if self.book.engine is not None:
            self.book.engine.dispose()


def _creditbook_command() -> list[str]:
    """The ``creditbook`` console script beside this interpreter, else the same via -c."""
    script = Path(sys.executable).with_name("creditbook")
    if script.exists():
        return [str(script)]
    return [
        sys.executable,
        "-c",
        "import sys; from creditbook.entrypoints.cli.app import main; sys.exit(main())",
    ]


def _start(ctx: RunContext, sqlite: bool) -> Server:
    if sqlite:
        db_url = f"sqlite:///{Path(ctx.workdir) / 'http-sqlite' / 'creditbook.db'}"
    else:
        db_url = ctx.pg.sqlalchemy_url(create_scratch_database(ctx.pg, DBNAME))
    book = creditbook.open(db_url)
    _, _, key = AccessService(book.kernel).create_team(
        "HTTP bench", time_zone="UTC", admin_email="bench@example.com"
    )
    book.grant(key.team_id, BALANCE, category="purchased", source="purchase")
    port = free_port()
    log = Path(ctx.workdir) / f"creditbook-serve{'-sqlite' if sqlite else ''}.log"
    env = os.environ | {
        "CREDITBOOK_DATABASE_URL": db_url,
        "CREDITBOOK_GROUP_COMMIT": "1",
        "CREDITBOOK_RATE_LIMIT_EXEMPT_KEYS": key.key_id,
        "CREDITBOOK_API_NOOP": "true",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *_creditbook_command(),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v1/noop", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise BenchmarkError(f"creditbook serve did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    return Server(url, key.api_key, key.team_id, book, proc, log)


def _server(ctx: RunContext, sqlite: bool) -> Server:
    def cleanup(server: Server) -> None:
        server.stop()
        if not sqlite:
            drop_scratch_database(ctx.pg, DBNAME)

    key = "creditbook-http-sqlite" if sqlite else "creditbook-http"
    return ctx.fixture(key, lambda: _start(ctx, sqlite), cleanup)


def _with_load(result: RowResult, load: float, storage: str) -> RowResult:
    return RowResult(
        name=result.name,
        unit=result.unit,
        ops=result.ops,
        seconds=result.seconds,
        throughput=result.throughput,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        extra=result.extra
        | {"load_average_1m": load, "server": "creditbook serve, 1 process", "storage": storage},
    )


def _warm_up(seconds: float) -> float:
    """A fifth of the row's time, 1 to 3 s."""
    return min(3.0, max(1.0, seconds / 5))


def _settled(server: Server, timeout: float = 30.0) -> int:
    """The team's available credits once they stop moving (no request in flight)."""
    deadline = time.monotonic() + timeout
    last = server.book.balance(server.team_id).available
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = server.book.balance(server.team_id).available
        if now == last:
            return now
        last = now
    raise BenchmarkError("the server kept charging 30 s after wrk stopped")


def _storage(sqlite: bool) -> str:
    return "SQLite" if sqlite else "PostgreSQL"


def _noop_row(name: str, connections: int, sqlite: bool = False) -> None:
    def run(ctx: RunContext) -> RowResult:
        server = _server(ctx, sqlite)
        load = round(os.getloadavg()[0], 2)
        ctx.add_audit(server.audit)
        return _with_load(
            run_wrk(f"{server.url}/v1/noop", connections, ctx.seconds, name=name),
            load,
            _storage(sqlite),
        )

    where = ", the SQLite server" if sqlite else ""
    row(name, group=CREDITBOOK, description=f"GET /v1/noop, wrk {connections} connections{where}")(
        run
    )


def _charge_row(name: str, connections: int, batch: int = 1, sqlite: bool = False) -> None:
    def run(ctx: RunContext) -> RowResult:
        server = _server(ctx, sqlite)
        headers = {"Authorization": f"Bearer {server.api_key}"}
        if batch == 1:
            path = "/v1/charges"
            body = json.dumps({"feature": "email_finder", "outcome": "deliverable"})
        else:
            path = "/v1/charges:batch"
            body = json.dumps(
                {"charges": [{"feature": "email_finder", "outcome": "deliverable"}] * batch}
            )

        def script(file_name: str) -> Path:
            # A script of its own per wrk run: its idempotency keys start from a new
            # run id, so no request of one run replays a key of another.
            path_to = ctx.row_dir() / file_name
            path_to.write_text(
                wrk_post_script(
                    body,
                    headers | {"Content-Type": "application/json"},
                    unique_header="Idempotency-Key" if batch == 1 else None,
                )
            )
            return path_to

        # Unmeasured warm-up: the server's first charges open its connections and
        # prepare its statements, which is start-up, not the steady state measured.
        run_wrk(
            f"{server.url}{path}", connections, _warm_up(ctx.seconds), script("warm.lua"), name=name
        )
        before = _settled(server)
        load = round(os.getloadavg()[0], 2)
        measured = script("charge.lua")
        result = run_wrk(f"{server.url}{path}", connections, ctx.seconds, measured, name=name)
        # wrk stops counting at the deadline while the server still answers requests it
        # had queued: audit once those committed (the audit reads the live database).
        spent = before - _settled(server)

        def audit() -> list[str]:
            problems = list(server.audit())
            # Every 201 wrk counted is 5 credits spent (batches: every item must succeed).
            charged = spent // 5
            if charged < result.ops * batch:
                problems.append(f"wrk counted {result.ops * batch} charges but {charged} were made")
            return problems

        ctx.add_audit(audit)
        out = _with_load(result, load, _storage(sqlite))
        if batch == 1:
            return out
        return RowResult(
            name=out.name,
            unit="charges/s",
            ops=out.ops * batch,
            seconds=out.seconds,
            throughput=out.throughput * batch,
            p50_ms=out.p50_ms,
            p99_ms=out.p99_ms,
            extra=out.extra | {"latency_is_per_request_of": batch},
        )

    what = "POST /v1/charges" if batch == 1 else f"POST /v1/charges:batch x{batch}"
    where = ", SQLite storage" if sqlite else ""
    row(name, group=CREDITBOOK, description=f"{what}, wrk {connections} connections{where}")(run)


_noop_row(HTTP_NOOP_C32, 32)
_charge_row(HTTP_CHARGE_C32, 32)
_noop_row(HTTP_NOOP_C128, 128)
_charge_row(HTTP_CHARGE_C128, 128)
_charge_row(f"http charges:batch x{BATCH} c32", 32, batch=BATCH)
_noop_row(SQLITE_HTTP_NOOP_C32, 32, sqlite=True)
_charge_row(SQLITE_HTTP_CHARGE_C32, 32, sqlite=True)
_noop_row(SQLITE_HTTP_NOOP_C128, 128, sqlite=True)
_charge_row(SQLITE_HTTP_CHARGE_C128, 128, sqlite=True)
