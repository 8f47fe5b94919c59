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


def test_kill_9_mid_job_then_resume_charges_each_item_once_and_audits_clean(
    crash_db: str,
) -> None:
    book = creditbook.open(crash_db)
    team = book.create_team("Crashers")
    book.grant(team.id, 1_000_000, category="purchased", source="purchase")
    leads = sample_leads(LEADS)
    svc = EnrichmentService(book, options=EnrichmentOptions(stale_after=timedelta(0)))
    job = svc.create_job(team.id, leads, FEATURES)

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
    at_kill = _counts(book, team.id, job.id)
    assert at_kill["pending"] > 0
    assert svc.get_job(team.id, job.id).status == "running"  # it died, nobody said so

    svc.resume(team.id, job.id)
    done = svc.run_sync(team.id, job.id)

    assert done.status == "completed"
    assert _counts(book, team.id, job.id) == Counter({"done": LEADS * len(FEATURES)})
    assert book.engine is not None
    with book.engine.connect() as conn:
        entries = list(
            conn.execute(
                select(ledger_entries).where(
                    ledger_entries.c.team_id == team.id, ledger_entries.c.job_id == job.id
                )
            )
        )
        still_active = conn.execute(
            select(func.count()).where(holds.c.team_id == team.id, holds.c.status == "active")
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
    assert book.balance(team.id).available == 1_000_000 - expected
    audit = subprocess.run(
        [sys.executable, "-m", "creditbook.entrypoints.cli", "--database-url", crash_db, "audit"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert audit.returncode == 0, audit.stderr
    assert "audit clean" in audit.stdout
    if book.engine is not None:
        book.engine.dispose()
