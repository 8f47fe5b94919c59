"""Enrichment job leases on SQLite and PostgreSQL: an orphaned job is found within a bounded
time, a resume says how long a live-looking runner keeps its job, a live runner keeps it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

import creditbook
from creditbook.adapters.db.tables_purchases import notifications
from creditbook.adapters.providers import Lead, ProviderRegistry, Result
from creditbook.domain.clock import FrozenClock
from creditbook.service.enrichment import (
    EnrichmentOptions,
    EnrichmentService,
    JobStateConflict,
    JobStillOwned,
)
from creditbook.service.job_worker import JobWorker

LEASE = timedelta(seconds=60)


class Answering:
    """Finds every email, after ``delay`` seconds per lead."""

    name = "answering"
    feature = "email_finder"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    async def lookup(self, lead: Lead, *, prompt: str | None = None) -> Result:
        if self.delay:
            await asyncio.sleep(self.delay)
        return Result("email_finder", "deliverable", f"{lead.first_name}@x.example", {}, self.name)


def service(
    book: creditbook.Creditbook, *, delay: float = 0.0, **options: Any
) -> EnrichmentService:
    def registry() -> ProviderRegistry:
        found = ProviderRegistry.from_catalog(book.catalog)
        found.add(Answering(delay))
        return found

    options.setdefault("stale_after", LEASE)
    return EnrichmentService(
        book.kernel, providers={"default": registry}, options=EnrichmentOptions(**options)
    )


def leads(n: int) -> list[dict[str, str]]:
    return [
        {"first_name": f"L{i}", "last_name": "Doe", "company_domain": "acme.example"}
        for i in range(n)
    ]


def orphan(book: creditbook.Creditbook, svc: EnrichmentService, n: int = 3) -> tuple[str, str]:
    """A job whose runner held its first items, then died (its lease starts now)."""
    team = book.create_team("Orphans").id
    book.grant(team, 1000, category="purchased", source="purchase")
    job = svc.create_job(team, leads(n), ["email_finder"])
    svc._claim(team, job.id, "run_dead")
    svc._reserve(team, job.id, "run_dead", 2)
    return team, job.id


@pytest.fixture
def live_book(db_url: str) -> Iterator[creditbook.Creditbook]:
    """The book on the system clock: leases measured in real seconds."""
    book = creditbook.open(db_url)
    yield book
    if book.engine is not None:
        book.engine.dispose()


def test_the_server_worker_pauses_a_job_orphaned_after_it_started_within_a_lease_and_a_poll(
    book: creditbook.Creditbook, clock: FrozenClock
) -> None:
    svc = service(book)
    worker = JobWorker(svc, poll_seconds=0.05).start()
    try:
        team, job_id = orphan(book, svc)  # its process dies while this server runs
        clock.advance(LEASE + timedelta(seconds=1))
        deadline = time.monotonic() + 10
        while svc.get_job(team, job_id).status == "running" and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()

    job = svc.get_job(team, job_id)
    assert (job.status, job.pause_reason) == ("paused", "interrupted")
    assert book.engine is not None
    with book.engine.connect() as conn:
        alerts = [
            r.payload
            for r in conn.execute(select(notifications).where(notifications.c.team_id == team))
            if r.kind == "job_paused"
        ]
    assert [(a["job_id"], a["reason"]) for a in alerts] == [(job_id, "interrupted")]


def test_recovery_leaves_a_job_whose_lease_has_not_run_out(
    book: creditbook.Creditbook, clock: FrozenClock
) -> None:
    svc = service(book)
    team, job_id = orphan(book, svc)
    clock.advance(LEASE - timedelta(seconds=1))

    assert job_id not in svc.recover_interrupted()
    assert svc.get_job(team, job_id).status == "running"
    clock.advance(timedelta(seconds=1))
    assert job_id in svc.recover_interrupted()
    assert job_id not in svc.recover_interrupted()  # once


def test_resuming_a_job_whose_runner_may_be_alive_says_how_long_until_it_can_be_taken_over(
    book: creditbook.Creditbook, clock: FrozenClock
) -> None:
    svc = service(book)
    team, job_id = orphan(book, svc)
    clock.advance(timedelta(seconds=20))

    with pytest.raises(JobStillOwned) as refused:
        svc.resume(team, job_id, credit_limit=500)

    assert refused.value.code == "job_still_owned"
    assert refused.value.details["retry_after"] == 40
    assert "taken over in 40 s" in refused.value.message
    job = svc.get_job(team, job_id)
    assert (job.status, job.credit_limit) == ("running", None)  # nothing half-written


def test_resuming_takes_over_a_job_once_its_lease_ran_out_and_charges_each_lead_once(
    book: creditbook.Creditbook, clock: FrozenClock
) -> None:
    svc = service(book)
    team, job_id = orphan(book, svc)
    clock.advance(LEASE)

    assert svc.resume(team, job_id).status == "queued"
    done = svc.run_sync(team, job_id)

    assert (done.status, done.credits_spent) == ("completed", 15)
    assert book.balance(team).available == 985
    assert book.audit(team).clean


def test_two_resumers_of_an_orphaned_job_never_both_run_it(
    book: creditbook.Creditbook, clock: FrozenClock
) -> None:
    svc = service(book, delay=0.3)  # the first run is still going when the second asks
    team, job_id = orphan(book, svc, n=20)
    clock.advance(LEASE)
    gate = threading.Barrier(2)
    outcomes: list[str] = []

    def resume_and_run() -> None:
        gate.wait()
        try:
            svc.resume(team, job_id)
            outcomes.append(svc.run_sync(team, job_id).status)
        except JobStateConflict as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=resume_and_run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert sorted(outcomes) == ["completed", "job_still_owned"]
    assert svc.get_job(team, job_id).credits_spent == 100
    assert book.audit(team).clean


def test_a_live_runner_keeps_its_lease_while_its_lookups_outlast_it(
    live_book: creditbook.Creditbook,
) -> None:
    svc = service(live_book, delay=1.5, stale_after=timedelta(seconds=0.6))
    team = live_book.create_team("Slow").id
    live_book.grant(team, 100, category="purchased", source="purchase")
    job = svc.create_job(team, leads(2), ["email_finder"])
    finished: list[str] = []
    runner = threading.Thread(target=lambda: finished.append(svc.run_sync(team, job.id).status))
    runner.start()
    time.sleep(1.0)  # the lookups are in flight; the claim is older than the lease

    recovered = svc.recover_interrupted()
    with pytest.raises(JobStillOwned):
        svc.resume(team, job.id)
    runner.join(30)

    assert job.id not in recovered  # (other tests' orphans share the PostgreSQL database)
    assert finished == ["completed"]
    assert svc.get_job(team, job.id).credits_spent == 10
