"""SIGKILL ``creditbook serve`` again and again while clients spend: nothing acknowledged is
lost, nothing is doubled, nothing overdraws (SQLite file and PostgreSQL).

Client threads send charges, holds, captures and releases to a real server,
each with its own ``Idempotency-Key``, and send every request again with the
same key and body until it is answered, while the test kills the server's
process group with SIGKILL and starts it again: ``CRASHES`` times per database
(5; ``CREDITBOOK_CRASH_LONG=1``: 25). Two teams spend: one with room, one
with little, so refusals for credits happen under the crashes too. An
enrichment job of a third team runs across the crashes (its runner's lease is
2 s), resumed whenever it is found paused. Afterwards:

- every acknowledged operation is in the ledger exactly once, with the credits
  it answered; a refused one left nothing; no key has two entries and no entry
  has a key nobody was answered for;
- a sample of acknowledged requests sent once more answers the same, and adds
  nothing;
- no grant is below zero, and credits are conserved: what a team was granted
  is what its acknowledged charges and captures spent plus what it has;
- ``creditbook audit`` is clean;
- the job completes within a bounded time after the last restart, each lead
  charged at most once.

``CREDITBOOK_CRASH_REPORT=path`` appends the figures as one JSON line (the
figures in docs/reliability.md come from it); ``CREDITBOOK_CRASH_SEED`` fixes
the random choices.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from crash_helpers import CrashableServer, job_leads, new_team, run_audit
from e2e_helpers import create_pg_database, drop_pg_database, pg_available
from sqlalchemy import create_engine, func, select

from creditbook.adapters.db.tables import grants, holds, ledger_entries

LONG = os.environ.get("CREDITBOOK_CRASH_LONG", "").lower() in ("1", "true", "yes")
CRASHES = 25 if LONG else 5
CLIENTS = 4
MAX_OPS_PER_CLIENT = 5_000  # a bound; the crashes end the run long before
ANSWER_WITHIN = 120.0  # seconds a request may go unanswered (a restart takes a few)
JOB_LEADS = 200
JOB_LEASE = 2
JOB_DONE_WITHIN = 120.0  # after the last restart
RICH, TIGHT = 1_000_000, 400
KIND_OF_ENTRY = {"charge": "charge", "hold": "hold", "capture": "capture", "release": "release"}


@dataclass
class Op:
    kind: str
    team: str
    key: str
    api_key: str
    path: str
    body: dict[str, Any] | None
    status: int | None = None
    answer: dict[str, Any] = field(default_factory=dict)
    unanswered: int = 0  # attempts that got no answer (the server was down or died)
    first_unanswered_at: float | None = None  # time.time() when the first one failed
    server_errors: list[int] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def crash_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'crash.db'}"
        return
    if not pg_available():
        pytest.skip("PostgreSQL not reachable")
    url = create_pg_database("cb_crash")
    yield url
    drop_pg_database(url)


def send(client: httpx.Client, op: Op) -> None:
    """Send ``op`` until it is answered (not a transport error, a 5xx or a 429)."""
    headers = {"Authorization": f"Bearer {op.api_key}", "Idempotency-Key": op.key}
    deadline = time.monotonic() + ANSWER_WITHIN
    while True:
        try:
            answer = client.post(op.path, json=op.body, headers=headers)
        except httpx.TransportError:
            op.unanswered += 1
            op.first_unanswered_at = op.first_unanswered_at or time.time()
        else:
            if answer.status_code < 500 and answer.status_code != 429:
                op.status, op.answer = answer.status_code, answer.json()
                return
            op.unanswered += 1
            op.server_errors.append(answer.status_code)
        if time.monotonic() > deadline:
            raise AssertionError(f"{op.kind} {op.key} unanswered for {ANSWER_WITHIN} s")
        time.sleep(0.05)


@dataclass
class Load:
    server: CrashableServer
    teams: dict[str, list[str]]  # team id -> its API keys (admin, member)
    rich: str
    tight: str
    seed: int
    ops: list[Op] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, n: int) -> None:
        rng = random.Random(self.seed * 100 + n)
        mine: list[Op] = []
        try:
            with httpx.Client(base_url=self.server.base_url, timeout=10) as http:
                while not self.stop.is_set() and len(mine) < MAX_OPS_PER_CLIENT:
                    team = self.tight if rng.random() < 0.25 else self.rich
                    api_key = self.teams[team][n % 2]
                    key = f"c{n}-{len(mine)}-{rng.getrandbits(48):x}"

                    def op(kind: str, path: str, body: dict[str, Any] | None) -> Op:
                        made = Op(kind, team, f"{key}-{kind}", api_key, path, body)  # noqa: B023
                        send(http, made)
                        mine.append(made)
                        return made

                    if rng.random() < 0.4:
                        op("charge", "/v1/charges", {"feature": "email_finder",
                                                     "outcome": "deliverable"})  # fmt: skip
                        continue
                    held = op("hold", "/v1/holds", {"feature": "phone_finder",
                                                    "ttl_seconds": 3600})  # fmt: skip
                    if not held.acknowledged:
                        continue
                    hold_id = held.answer["hold_id"]
                    if rng.random() < 0.5:
                        op("capture", f"/v1/holds/{hold_id}/capture", {"outcome": "found"})
                    else:
                        op("release", f"/v1/holds/{hold_id}/release", None)
        except Exception as exc:
            self.failures.append(f"client {n}: {exc!r}")
        finally:
            with self.lock:
                self.ops.extend(mine)


@dataclass
class Job:
    """An enrichment job resumed whenever it is found paused, until it completes."""

    server: CrashableServer
    api_key: str
    id: str | None = None
    last: dict[str, Any] = field(default_factory=dict)
    resumes: int = 0
    refusals: int = 0
    paused_for: Counter[str] = field(default_factory=Counter)
    done: threading.Event = field(default_factory=threading.Event)
    give_up: threading.Event = field(default_factory=threading.Event)
    failures: list[str] = field(default_factory=list)

    def steer(self) -> None:
        try:
            with httpx.Client(
                base_url=self.server.base_url,
                headers={"Authorization": f"Bearer {self.api_key}"},
                timeout=10,
            ) as http:
                self._steer(http)
        except Exception as exc:
            self.failures.append(f"job: {exc!r}")

    def _steer(self, http: httpx.Client) -> None:
        body = {"leads": job_leads(JOB_LEADS), "features": ["email_finder"]}
        while self.id is None and not self.give_up.is_set():
            try:
                made = http.post(
                    "/v1/enrichment-jobs", json=body, headers={"Idempotency-Key": "crash-job"}
                )
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if made.status_code == 201:
                self.id = made.json()["job"]["id"]
        while not self.give_up.is_set():
            try:
                seen = http.get(f"/v1/enrichment-jobs/{self.id}")
                if seen.status_code != 200:
                    raise httpx.TransportError(f"status {seen.status_code}")
                self.last = seen.json()["job"]
                if self.last["status"] == "completed":
                    self.done.set()
                    return
                if self.last["status"] == "paused":
                    self.paused_for[self.last["pause_reason"]] += 1
                    resumed = http.post(f"/v1/enrichment-jobs/{self.id}/resume")
                    if resumed.status_code == 200:
                        self.resumes += 1
                    elif resumed.status_code == 409:
                        self.refusals += 1
            except httpx.TransportError:
                pass
            time.sleep(0.2)


def spend_through_crashes(crash_url: str, workdir: Path) -> dict[str, Any]:
    seed = int(os.environ.get("CREDITBOOK_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    server = CrashableServer(crash_url, workdir, {"CREDITBOOK_JOB_ORPHAN_SECONDS": str(JOB_LEASE)})
    server.start()
    try:
        teams: dict[str, list[str]] = {}
        granted: dict[str, int] = {}
        for name, credits in (("rich", RICH), ("tight", TIGHT)):
            team_id, admin_key = new_team(server, name, credits)
            with server.client(admin_key) as admin:
                added = admin.post("/v1/members", json={"email": f"m@{name}.example"})
                assert added.status_code == 201, added.text
            teams[team_id] = [admin_key, added.json()["api_key"]]
            granted[team_id] = credits
        rich, tight = (next(t for t in teams if granted[t] == c) for c in (RICH, TIGHT))
        job_team, job_key = new_team(server, "jobs", 100_000)
        load = Load(server, teams, rich, tight, seed)
        job = Job(server, job_key)
        threads = [threading.Thread(target=load.client, args=(n,)) for n in range(CLIENTS)]
        threads.append(threading.Thread(target=job.steer))
        for t in threads:
            t.start()
        try:
            for _ in range(CRASHES):
                time.sleep(rng.uniform(0.3, 1.0))  # spending on a live server
                server.crash()
                server.start()
            time.sleep(0.5)
        finally:
            load.stop.set()
            for t in threads[:-1]:
                t.join(ANSWER_WITHIN + 30)
        job.done.wait(JOB_DONE_WITHIN)
        job.give_up.set()
        threads[-1].join(30)
        assert load.failures == [] and job.failures == [], (seed, load.failures, job.failures)
        assert job.done.is_set(), f"seed {seed}: the job never completed: {job.last}"

        replayed = replay_a_sample(server, load.ops, rng)
        balances = {}
        for team_id, keys in teams.items():
            with server.client(keys[0]) as admin:
                balances[team_id] = admin.get("/v1/credits").json()
    finally:
        server.stop()
    return {
        "seed": seed,
        "ops": load.ops,
        "granted": granted,
        "balances": balances,
        "job": job,
        "job_team": job_team,
        "replayed": replayed,
        "crashes": server.crashes,
    }


def replay_a_sample(server: CrashableServer, ops: list[Op], rng: random.Random) -> int:
    """Send acknowledged requests once more: each answers exactly what it answered."""
    acknowledged = [o for o in ops if o.acknowledged]
    sample = rng.sample(acknowledged, min(40, len(acknowledged)))
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for op in sample:
            again = Op(op.kind, op.team, op.key, op.api_key, op.path, op.body)
            send(http, again)
            assert (again.status, again.answer) == (op.status, op.answer), op.key
    return len(sample)


def test_kill_9_under_load_loses_nothing_acknowledged_and_doubles_nothing(
    crash_url: str, tmp_path: Path
) -> None:
    run = spend_through_crashes(crash_url, tmp_path)
    ops: list[Op] = run["ops"]
    seed = run["seed"]
    engine = create_engine(crash_url)
    try:
        with engine.connect() as conn:
            team_ids = list(run["granted"])
            entries = list(
                conn.execute(
                    select(ledger_entries).where(
                        ledger_entries.c.team_id.in_(team_ids),
                        ledger_entries.c.idempotency_key.is_not(None),
                    )
                )
            )
            negative_grants = conn.execute(
                select(func.count()).where(
                    grants.c.team_id.in_(team_ids),
                    (grants.c.remaining < 0) | (grants.c.reserved < 0),
                )
            ).scalar_one()
            job_id = run["job"].id
            job_entries = list(
                conn.execute(select(ledger_entries).where(ledger_entries.c.job_id == job_id))
            )
            active_job_holds = conn.execute(
                select(func.count()).where(
                    holds.c.team_id == run["job_team"], holds.c.status == "active"
                )
            ).scalar_one()
    finally:
        engine.dispose()

    by_key = Counter((e.team_id, e.idempotency_key) for e in entries)
    doubled = sorted(k for k, n in by_key.items() if n > 1)
    entry_of = {(e.team_id, e.idempotency_key): e for e in entries}
    acknowledged = [o for o in ops if o.acknowledged]
    lost = []
    for op in acknowledged:
        entry = entry_of.get((op.team, op.key))
        credits = op.answer.get("released", op.answer.get("credits"))
        if entry is None or entry.kind != KIND_OF_ENTRY[op.kind] or entry.credits != credits:
            lost.append(op.key)
    answered_keys = {(o.team, o.key) for o in acknowledged}
    phantoms = sorted(k for k in by_key if k not in answered_keys)
    # Caught by a crash after its transaction committed: answered by the stored receipt.
    answered_by_replay = 0
    for o in acknowledged:
        entry = entry_of.get((o.team, o.key))
        if o.first_unanswered_at and entry and entry.created_at.timestamp() < o.first_unanswered_at:
            answered_by_replay += 1
    refused = [o for o in ops if not o.acknowledged]
    refusal_codes = Counter(o.answer.get("code") for o in refused)
    internal_errors = sum(o.server_errors.count(500) for o in ops)

    assert (lost, doubled, phantoms) == ([], [], []), f"seed {seed}"
    assert set(refusal_codes) <= {"insufficient_credits"}, (seed, refusal_codes)
    assert internal_errors == 0, f"seed {seed}"
    assert negative_grants == 0
    for team_id, credits in run["granted"].items():
        mine = [o for o in acknowledged if o.team == team_id]
        spent = sum(o.answer["credits"] for o in mine if o.kind in ("charge", "capture"))
        settled = {o.path.split("/")[3] for o in mine if o.kind in ("capture", "release")}
        reserved = sum(
            o.answer["credits"]
            for o in mine
            if o.kind == "hold" and o.answer["hold_id"] not in settled
        )
        balance = run["balances"][team_id]
        assert balance["available"] >= 0
        assert (balance["available"], balance["reserved"]) == (credits - spent - reserved, reserved)
    assert run["crashes"] == CRASHES
    assert sum(1 for o in ops if o.unanswered) > 0, "no request was caught by a crash"
    audit = run_audit(crash_url)
    assert audit.returncode == 0 and "audit clean" in audit.stdout, audit.stdout + audit.stderr

    job = run["job"]
    captures = Counter(
        ":".join(e.idempotency_key.split(":")[2:4]) for e in job_entries if e.kind == "capture"
    )
    assert job.last["status"] == "completed" and job.last["processed"] == JOB_LEADS
    assert captures and max(captures.values()) == 1
    assert sum(e.credits for e in job_entries if e.kind == "capture") == job.last["credits_spent"]
    assert active_job_holds == 0

    figures = {
        "database": crash_url.split(":")[0].split("+")[0],
        "seed": seed,
        "crashes": run["crashes"],
        "acknowledged": len(acknowledged),
        "acknowledged_by_kind": dict(Counter(o.kind for o in acknowledged)),
        "refused_insufficient_credits": len(refused),
        "caught_by_a_crash": sum(1 for o in ops if o.unanswered),
        "committed_before_the_crash_then_replayed": answered_by_replay,
        "replayed_identical": run["replayed"],
        "lost": len(lost),
        "doubled": len(doubled),
        "phantoms": len(phantoms),
        "audit_clean": True,
        "job": {"leads": JOB_LEADS, "found": job.last["found"], "resumes": job.resumes,
                "paused_for": dict(job.paused_for), "refused_still_owned": job.refusals},
    }  # fmt: skip
    report = os.environ.get("CREDITBOOK_CRASH_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as out:
            out.write(json.dumps(figures) + "\n")
    print(json.dumps(figures))
