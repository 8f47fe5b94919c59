"""kill -9 ``creditbook serve`` while an enrichment job runs: after the restart a resume
within the runner's lease says how long to wait (409 ``job_still_owned``, ``Retry-After``),
the server pauses the orphan with a reason within the lease and one poll, and the job then
finishes, charging each lead once (SQLite file and PostgreSQL)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from crash_helpers import CrashableServer, job_leads, new_team, run_audit
from e2e_helpers import create_pg_database, drop_pg_database, pg_available
from sqlalchemy import create_engine, select

from creditbook.adapters.db.tables import holds, ledger_entries

POLL_SECONDS = 5  # the server's job worker polls this often (EnrichmentOptions)
LEADS = 120


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def crash_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    if not pg_available():
        pytest.skip("PostgreSQL not reachable")
    url = create_pg_database("cb_jobs")
    yield url
    drop_pg_database(url)


def job_of(client: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/enrichment-jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    job: dict[str, Any] = answer.json()["job"]
    return job


def wait_until(client: httpx.Client, job_id: str, done: Any, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        job = job_of(client, job_id)
        if done(job) or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def start_job_and_crash_mid_way(server: CrashableServer) -> tuple[str, str]:
    """A running job of LEADS leads, the server killed after its first chunks; restarted."""
    _, key = new_team(server, "orphans", 10_000)
    with server.client(key) as admin:
        created = admin.post(
            "/v1/enrichment-jobs", json={"leads": job_leads(LEADS), "features": ["email_finder"]}
        )
        assert created.status_code == 201, created.text
        job_id = created.json()["job"]["id"]
        running = wait_until(
            admin, job_id, lambda j: j["status"] == "running" and j["processed"] >= 20, 30
        )
        assert running["status"] == "running" and running["processed"] < LEADS, running
    server.crash()
    server.start()
    return job_id, key


def assert_charged_once(url: str, job: dict[str, Any]) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            entries = list(
                conn.execute(select(ledger_entries).where(ledger_entries.c.job_id == job["id"]))
            )
            active = conn.execute(select(holds.c.id).where(holds.c.status == "active")).all()
    finally:
        engine.dispose()
    captures = Counter(e.idempotency_key.split(":")[2] for e in entries if e.kind == "capture")
    assert captures and set(captures.values()) == {1}  # each lead charged once
    assert sum(e.credits for e in entries if e.kind == "capture") == job["credits_spent"]
    assert len(captures) == job["found"]
    assert active == []
    audit = run_audit(url)
    assert audit.returncode == 0 and "audit clean" in audit.stdout, audit.stdout + audit.stderr


def test_after_a_server_crash_a_resume_is_told_when_and_the_orphan_is_paused_in_bounded_time(
    crash_url: str, tmp_path: Path
) -> None:
    lease = 10  # longer than a restart takes, so the first resume comes within the lease
    server = CrashableServer(crash_url, tmp_path, {"CREDITBOOK_JOB_ORPHAN_SECONDS": str(lease)})
    server.start()
    try:
        job_id, key = start_job_and_crash_mid_way(server)
        with server.client(key) as admin:
            refused = admin.post(f"/v1/enrichment-jobs/{job_id}/resume")

            assert refused.status_code == 409, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.json()["code"] == "job_still_owned"
            wait = int(refused.headers["retry-after"])
            assert 1 <= wait <= lease
            assert f"taken over in {wait} s" in refused.json()["detail"]
            # Nobody resumes it: the server's periodic check pauses it, with its reason.
            found = wait_until(
                admin, job_id, lambda j: j["status"] != "running", wait + POLL_SECONDS + 20
            )
            assert (found["status"], found["pause_reason"]) == ("paused", "interrupted")
            resumed = admin.post(f"/v1/enrichment-jobs/{job_id}/resume")
            assert resumed.status_code == 200, resumed.text
            done = wait_until(admin, job_id, lambda j: j["status"] == "completed", 60)
        assert done["status"] == "completed" and done["processed"] == LEADS, done
    finally:
        server.stop()
    assert_charged_once(crash_url, done)
