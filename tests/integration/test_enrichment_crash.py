"""kill -9 in the middle of an enrichment job, then resume: every (lead, feature) is charged
at most once, no hold is left active, and ``creditbook audit`` is clean (SQLite file and
PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

import creditbook
from creditbook.adapters.db.tables import holds, ledger_entries
from creditbook.adapters.db.tables_enrichment import enrichment_items
from creditbook.adapters.providers import Lead, SandboxProvider
from creditbook.service.enrichment import EnrichmentOptions, EnrichmentService
from creditbook.service.leads import sample_leads

HERE = Path(__file__).parent
SRC = HERE.parents[1] / "src"
FEATURES = ["email_finder", "phone_finder"]
LEADS = 240


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def crash_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'crash.db'}"
    else:
        yield request.getfixturevalue("fresh_pg_url")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    return env


def _counts(book: creditbook.Creditbook, team_id: str, job_id: str) -> Counter[str]:
    assert book.engine is not None
    it = enrichment_items
    with book.engine.connect() as conn:
        rows = conn.execute(
            select(it.c.state, func.count())
            .where(it.c.team_id == team_id, it.c.job_id == job_id)
            .group_by(it.c.state)
        )
        return Counter({str(state): int(n) for state, n in rows})


def _kill_mid_job(crash_db: str) -> tuple[creditbook.Creditbook, str, str, list[dict[str, str]]]:
    """A job run by a subprocess, SIGKILLed while items are held: (book, team, job, leads)."""
    book = creditbook.open(crash_db)
    team = book.create_team("Crashers")
    book.grant(team.id, 1_000_000, category="purchased", source="purchase")
    leads = sample_leads(LEADS)
    job = EnrichmentService(book.kernel).create_job(team.id, leads, FEATURES)

    runner = subprocess.Popen(
        [sys.executable, str(HERE / "enrich_crash_runner.py"), crash_db, team.id, job.id],
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counts = _counts(book, team.id, job.id)
            if counts["done"] >= 40 and counts["held"] > 0:
                break
            assert runner.poll() is None, "the runner finished before it could be killed"
            time.sleep(0.005)
        else:
            pytest.fail("the runner never reached the middle of the job")
        os.kill(runner.pid, signal.SIGKILL)
    finally:
        runner.wait(10)
    assert runner.returncode == -signal.SIGKILL
    assert _counts(book, team.id, job.id)["pending"] > 0
    return book, team.id, job.id, leads


def _assert_each_item_charged_once(
    book: creditbook.Creditbook, team_id: str, job_id: str, leads: list[dict[str, str]]
) -> None:
    done = EnrichmentService(book.kernel).get_job(team_id, job_id)
    assert done.status == "completed"
    assert _counts(book, team_id, job_id) == Counter({"done": LEADS * len(FEATURES)})
    assert book.engine is not None
    with book.engine.connect() as conn:
        entries = list(
            conn.execute(
                select(ledger_entries).where(
                    ledger_entries.c.team_id == team_id, ledger_entries.c.job_id == job_id
                )
            )
        )
        still_active = conn.execute(
            select(func.count()).where(holds.c.team_id == team_id, holds.c.status == "active")
        ).scalar_one()
    assert still_active == 0
    captures = Counter(
        ":".join(e.idempotency_key.split(":")[2:4]) for e in entries if e.kind == "capture"
    )
    assert captures and max(captures.values()) == 1
    # The sandbox is deterministic: the totals are those of a run that never crashed.
    expected = 0
    for row in leads:
        for feature in FEATURES:
            outcome, _ = SandboxProvider(feature).outcome_for(Lead.from_mapping(row))
            if book.catalog.feature(feature).is_billable(outcome):
                expected += book.catalog.feature(feature).cost
    assert done.credits_spent == expected == sum(e.credits for e in entries if e.kind == "capture")
    assert len(captures) == done.found
    assert book.balance(team_id).available == 1_000_000 - expected
    audit = _cli(book_url(book), "audit")
    assert audit.returncode == 0, audit.stderr
    assert "audit clean" in audit.stdout
    if book.engine is not None:
        book.engine.dispose()


def book_url(book: creditbook.Creditbook) -> str:
    assert book.engine is not None
    return book.engine.url.render_as_string(hide_password=False)


def _cli(
    url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "creditbook.entrypoints.cli", "--database-url", url, *args],
        env={**_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_kill_9_mid_job_then_resume_charges_each_item_once_and_audits_clean(
    crash_db: str,
) -> None:
    book, team_id, job_id, leads = _kill_mid_job(crash_db)
    svc = EnrichmentService(book.kernel, options=EnrichmentOptions(stale_after=timedelta(0)))
    assert svc.get_job(team_id, job_id).status == "running"  # it died, nobody said so

    svc.resume(team_id, job_id)
    svc.run_sync(team_id, job_id)

    _assert_each_item_charged_once(book, team_id, job_id, leads)


def test_jobs_resume_right_after_a_kill_says_how_long_to_wait_then_takes_the_job_over(
    tmp_path: Path,
) -> None:
    # The CLI's side of the lease; the lease itself is proven on both databases in
    # test_job_leases.py and, through a killed server, in tests/e2e/test_job_recovery.py.
    book, team_id, job_id, leads = _kill_mid_job(f"sqlite:///{tmp_path / 'cli.db'}")
    url = book_url(book)

    early = _cli(url, "jobs", "resume", job_id, env={"CREDITBOOK_JOB_ORPHAN_SECONDS": "600"})

    assert early.returncode == 5, early.stdout + early.stderr
    message = " ".join(early.stderr.split())
    assert "job_still_owned" in message and "can be taken over in" in message, message
    assert EnrichmentService(book.kernel).get_job(team_id, job_id).status == "running"
    time.sleep(1.1)  # a lease of 1 s has run out since the runner's last heartbeat
    late = _cli(url, "jobs", "resume", job_id, env={"CREDITBOOK_JOB_ORPHAN_SECONDS": "1"})
    assert late.returncode == 0, late.stdout + late.stderr
    assert "completed" in late.stdout
    _assert_each_item_charged_once(book, team_id, job_id, leads)
