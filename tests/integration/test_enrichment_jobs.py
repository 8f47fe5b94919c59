"""Enrichment jobs on SQLite and PostgreSQL: charge only for results, pause, resume, once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

import creditbook
from creditbook.adapters.db.tables import holds, ledger_entries
from creditbook.adapters.db.tables_purchases import notifications
from creditbook.adapters.providers import Lead, ProviderError, ProviderRegistry, Result
from creditbook.domain.clock import FrozenClock
from creditbook.service.enrichment import (
    EnrichmentOptions,
    EnrichmentService,
    JobStateConflict,
)


class Scripted:
    """Answers by the lead's first name; counts its calls; may be down."""

    def __init__(
        self,
        feature: str,
        outcomes: dict[str, str],
        *,
        default: str = "not_found",
        name: str = "scripted",
        down: bool = False,
    ) -> None:
        self._feature = feature
        self._name = name
        self.outcomes = outcomes
        self.default = default
        self.down = down
        self.calls = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def feature(self) -> str:
        return self._feature

    async def lookup(self, lead: Lead, *, prompt: str | None = None) -> Result:
        self.calls += 1
        if self.down:
            raise ProviderError(f"{self._name} is down")
        outcome = self.outcomes.get(lead.first_name or "", self.default)
        value = None if outcome == "not_found" else f"{lead.first_name}@{self._name}.example"
        return Result(self._feature, outcome, value, {}, self._name)


def lead(first: str, last: str = "Doe", domain: str = "acme.example") -> dict[str, str]:
    return {
        "first_name": first,
        "last_name": last,
        "company_name": "Acme",
        "company_domain": domain,
    }


def service(book: creditbook.Creditbook, *providers: Scripted, **options: Any) -> EnrichmentService:
    def factory() -> ProviderRegistry:
        registry = ProviderRegistry.from_catalog(book.catalog)
        for p in providers:
            registry.add(p)
        return registry

    return EnrichmentService(
        book.kernel, providers={"default": factory}, options=EnrichmentOptions(**options)
    )


def team_with(book: creditbook.Creditbook, credits: int) -> str:
    team = book.create_team("Enrichers")
    if credits:
        book.grant(team.id, credits, category="free", source="gift")
    return team.id


def job_entries(book: creditbook.Creditbook, team_id: str, job_id: str) -> list[Any]:
    assert book.engine is not None
    with book.engine.connect() as conn:
        return list(
            conn.execute(
                select(ledger_entries).where(
                    ledger_entries.c.team_id == team_id, ledger_entries.c.job_id == job_id
                )
            )
        )


def active_holds(book: creditbook.Creditbook, team_id: str) -> int:
    assert book.engine is not None
    with book.engine.connect() as conn:
        return len(
            list(
                conn.execute(
                    select(holds.c.id).where(holds.c.team_id == team_id, holds.c.status == "active")
                )
            )
        )


def captures_by_item(entries: list[Any]) -> Counter[str]:
    """(lead, feature) -> number of captures, from the entries' idempotency keys."""
    counts: Counter[str] = Counter()
    for e in entries:
        if e.kind == "capture":
            _, _, lead_index, feature, _ = e.idempotency_key.split(":")[:5]
            counts[f"{lead_index}:{feature}"] += 1
    return counts


def test_an_undeliverable_email_costs_nothing_and_a_risky_one_costs_five(
    book: creditbook.Creditbook,
) -> None:
    team_id = team_with(book, 100)
    outcomes = {"Ann": "deliverable", "Bob": "risky", "Cid": "undeliverable", "Dee": "unknown"}
    svc = service(book, Scripted("email_finder", outcomes))
    job = svc.create_job(team_id, [lead(n) for n in outcomes], ["email_finder"])

    done = svc.run_sync(team_id, job.id)

    assert done.status == "completed"
    assert (done.processed, done.found, done.credits_spent) == (4, 2, 10)
    credits = {
        r.lead["first_name"]: r.items["email_finder"].credits for r in svc.results(team_id, job.id)
    }
    assert credits == {"Ann": 5, "Bob": 5, "Cid": 0, "Dee": 0}
    assert book.balance(team_id).available == 90
    assert active_holds(book, team_id) == 0
    assert book.audit(team_id).clean


def test_a_job_pauses_at_an_empty_balance_with_nothing_partial_then_a_purchase_and_resume_finish_it(
    book: creditbook.Creditbook,
) -> None:
    team_id = team_with(book, 12)  # two finds at 5, then 2 left: not enough for a third
    svc = service(book, Scripted("email_finder", {}, default="deliverable"), chunk_size=2)
    member = book.add_member(team_id, "runner@acme.example")
    job = svc.create_job(
        team_id, [lead(f"L{i}") for i in range(6)], ["email_finder"], member_id=member.id
    )

    paused = svc.run_sync(team_id, job.id)

    assert paused.status == "paused"
    assert paused.pause_reason == "insufficient_credits"
    assert (paused.processed, paused.credits_spent) == (2, 10)
    assert paused.credits_needed == 4 * 5 - 2
    states = [r.items["email_finder"].state for r in svc.results(team_id, job.id)]
    assert states == ["done", "done", "pending", "pending", "pending", "pending"]
    assert active_holds(book, team_id) == 0
    assert book.balance(team_id).reserved == 0
    assert book.balance(team_id).available == 2
    # It never resumes by itself, even when credits arrive.
    book.grant(team_id, 100, category="purchased", source="purchase")
    assert svc.auto_resume_ready() == []
    assert svc.get_job(team_id, job.id).status == "paused"

    svc.resume(team_id, job.id)
    done = svc.run_sync(team_id, job.id)

    assert done.status == "completed"
    assert (done.processed, done.found, done.credits_spent) == (6, 6, 30)
    assert book.balance(team_id).available == 112 - 30
    entries = job_entries(book, team_id, job.id)
    assert all(e.member_id == member.id for e in entries)
    assert set(captures_by_item(entries).values()) == {1}
    assert len(captures_by_item(entries)) == 6
    assert book.audit(team_id).clean


def test_a_pause_for_credits_raises_one_job_paused_alert(book: creditbook.Creditbook) -> None:
    team_id = team_with(book, 3)
    svc = service(book, Scripted("email_finder", {}, default="deliverable"))
    job = svc.create_job(team_id, [lead("A"), lead("B")], ["email_finder"])
    heard: list[str] = []
    svc.pause_listeners.append(lambda j: heard.append(j.pause_reason or ""))

    svc.run_sync(team_id, job.id)

    assert book.engine is not None
    with book.engine.connect() as conn:
        alerts = list(conn.execute(select(notifications).where(notifications.c.team_id == team_id)))
    paused = [a for a in alerts if a.kind == "job_paused"]
    assert len(paused) == 1
    assert paused[0].payload["job_id"] == job.id
    assert paused[0].payload["credits_needed"] == 2 * 5 - 3
    assert heard == ["insufficient_credits"]


def test_the_team_can_opt_in_to_automatic_resume(book: creditbook.Creditbook) -> None:
    team_id = team_with(book, 0)
    svc = service(book, Scripted("linkedin_enrichment", {}, default="found"))
    job = svc.create_job(team_id, [lead("A")], ["linkedin_enrichment"])
    assert svc.run_sync(team_id, job.id).pause_reason == "insufficient_credits"
    svc.set_team_settings(team_id, auto_resume=True)
    assert svc.auto_resume_ready() == []  # still no credits: stays paused

    book.grant(team_id, 1)

    assert svc.auto_resume_ready() == [(team_id, job.id)]
    assert svc.run_sync(team_id, job.id).credits_spent == 1


def test_a_lead_enriched_again_within_the_window_gets_the_cached_result_free(
    book: creditbook.Creditbook, clock: FrozenClock
) -> None:
    team_id = team_with(book, 100)
    provider = Scripted("email_finder", {}, default="deliverable")
    svc = service(book, provider)
    first = svc.create_job(team_id, [lead("Ann")], ["email_finder"])
    svc.run_sync(team_id, first.id)
    # The same person, written differently, twice in one job.
    again = [lead(" ann ", "DOE", "www.ACME.example"), lead("Ann")]
    second = svc.create_job(team_id, again, ["email_finder"])

    done = svc.run_sync(team_id, second.id)

    assert (done.credits_spent, done.found, provider.calls) == (0, 2, 1)
    items = [r.items["email_finder"] for r in svc.results(team_id, second.id)]
    assert [(i.outcome, i.provider, i.credits) for i in items] == [("deliverable", "cache", 0)] * 2
    assert job_entries(book, team_id, second.id) == []
    # After the window, the lead is looked up (and charged) again.
    clock.advance(timedelta(days=31))
    third = svc.create_job(team_id, [lead("Ann")], ["email_finder"])
    assert svc.run_sync(team_id, third.id).credits_spent == 5
    assert book.balance(team_id).available == 90


def test_duplicate_leads_in_one_job_are_charged_once(book: creditbook.Creditbook) -> None:
    team_id = team_with(book, 100)
    provider = Scripted("phone_finder", {}, default="found")
    svc = service(book, provider)
    job = svc.create_job(team_id, [lead("Ann")] * 3, ["phone_finder"])

    done = svc.run_sync(team_id, job.id)

    assert (done.credits_spent, done.found, provider.calls) == (20, 3, 1)


def test_a_waterfall_tries_the_next_provider_and_charges_the_lead_once(
    book: creditbook.Creditbook,
) -> None:
    team_id = team_with(book, 100)
    broken = Scripted("email_finder", {}, name="broken", down=True)
    empty = Scripted("email_finder", {}, name="empty", default="not_found")
    good = Scripted("email_finder", {}, name="good", default="deliverable")
    svc = service(book, broken, empty, good)
    job = svc.create_job(team_id, [lead("Ann"), lead("Bob")], ["email_finder"])

    done = svc.run_sync(team_id, job.id)

    assert done.credits_spent == 10
    assert [r.items["email_finder"].provider for r in svc.results(team_id, job.id)] == ["good"] * 2
    entries = job_entries(book, team_id, job.id)
    assert Counter(e.kind for e in entries) == {"hold": 2, "capture": 2}
    assert (broken.calls, empty.calls, good.calls) == (2, 2, 2)


def test_when_every_provider_fails_the_hold_is_released_and_the_row_reports_it(
    book: creditbook.Creditbook,
) -> None:
    team_id = team_with(book, 100)
    svc = service(book, Scripted("email_finder", {}, down=True))
    job = svc.create_job(team_id, [lead("Ann")], ["email_finder"])

    done = svc.run_sync(team_id, job.id)

    assert (done.status, done.credits_spent, done.errors_count) == ("completed", 0, 1)
    assert done.errors[0].code == "PROVIDER_ERROR"
    assert book.balance(team_id).available == 100
    assert active_holds(book, team_id) == 0


def test_a_row_missing_inputs_gets_its_own_error_and_the_job_goes_on(
    book: creditbook.Creditbook,
) -> None:
    team_id = team_with(book, 100)
    svc = service(
        book,
        Scripted("email_finder", {}, default="deliverable"),
        Scripted("linkedin_enrichment", {}, default="found"),
    )
    leads: list[Any] = [lead("Ann"), {"first_name": "NoLast"}, "not a lead", lead("Bob")]
    job = svc.create_job(team_id, leads, ["email_finder", "linkedin_enrichment"])
    assert job.estimate.max_credits == 2 * (5 + 1)

    done = svc.run_sync(team_id, job.id)

    assert done.status == "completed"
    assert (done.total, done.processed, done.credits_spent) == (8, 8, 12)
    errors = {(e.lead_index, e.feature): e for e in done.errors}
    missing = errors[(1, "email_finder")]
    assert missing.code == "MISSING_INPUTS"
    assert missing.missing == ("last_name", "company_domain|company_name")
    assert errors[(2, "linkedin_enrichment")].code == "INVALID_LEAD"
    assert len(errors) == 4
    assert done.to_dict()["errors"][0]["code"] == "MISSING_INPUTS"


def test_a_sample_batch_estimates_the_rest_then_waits_for_a_resume(
    book: creditbook.Creditbook,
) -> None:
    team_id = team_with(book, 1000)
    outcomes = {f"L{i}": "found" for i in range(0, 20, 2)}  # every other lead has a phone
    svc = service(book, Scripted("phone_finder", outcomes), chunk_size=3)
    job = svc.create_job(
        team_id, [lead(f"L{i}") for i in range(20)], ["phone_finder"], sample_size=4,
        estimate_only=True,
    )  # fmt: skip
    assert (job.status, job.estimate.max_credits) == ("queued", 20 * 20)

    sampled = svc.run_sync(team_id, job.id)

    assert (sampled.status, sampled.pause_reason) == ("paused", "estimate_only")
    assert (sampled.processed, sampled.credits_spent) == (4, 40)
    assert sampled.estimate.billable_rates == {"phone_finder": 0.5}
    assert sampled.estimate.expected_credits == 40 + 16 * 20 // 2
    svc.resume(team_id, job.id)
    done = svc.run_sync(team_id, job.id)
    assert (done.status, done.credits_spent) == ("completed", 200)


def test_estimate_only_without_a_sample_spends_nothing(book: creditbook.Creditbook) -> None:
    team_id = team_with(book, 100)
    svc = service(book, Scripted("email_finder", {}, default="deliverable"))
    job = svc.create_job(team_id, [lead("A"), lead("B")], ["email_finder"], estimate_only=True)

    assert (job.status, job.pause_reason, job.estimate.max_credits) == (
        "paused",
        "estimate_only",
        10,
    )
    with pytest.raises(JobStateConflict):
        svc.run_sync(team_id, job.id)
    assert book.balance(team_id).available == 100


def test_a_job_stops_at_its_credit_limit_until_the_limit_is_raised(
    book: creditbook.Creditbook,
) -> None:
    team_id = team_with(book, 100)
    svc = service(book, Scripted("email_finder", {}, default="deliverable"))
    job = svc.create_job(
        team_id, [lead(f"L{i}") for i in range(5)], ["email_finder"], credit_limit=12
    )

    paused = svc.run_sync(team_id, job.id)

    assert (paused.pause_reason, paused.credits_spent, paused.credits_needed) == (
        "credit_limit",
        10,
        13,
    )
    svc.resume(team_id, job.id, credit_limit=25)
    assert svc.run_sync(team_id, job.id).credits_spent == 25


def test_cancelling_a_paused_job_cancels_what_is_left(book: creditbook.Creditbook) -> None:
    team_id = team_with(book, 5)
    svc = service(book, Scripted("email_finder", {}, default="deliverable"))
    job = svc.create_job(team_id, [lead("A"), lead("B"), lead("C")], ["email_finder"])
    svc.run_sync(team_id, job.id)

    cancelled = svc.cancel(team_id, job.id)

    assert cancelled.status == "cancelled"
    states = [r.items["email_finder"].state for r in svc.results(team_id, job.id)]
    assert states == ["done", "cancelled", "cancelled"]
    with pytest.raises(JobStateConflict):
        svc.resume(team_id, job.id)


def test_a_crash_between_hold_and_capture_is_settled_once_on_resume(
    book: creditbook.Creditbook,
) -> None:
    team_id = team_with(book, 100)
    provider = Scripted("email_finder", {"B": "undeliverable"}, default="deliverable")
    svc = service(book, provider, chunk_size=10)
    job = svc.create_job(team_id, [lead("A"), lead("B"), lead("C")], ["email_finder"])
    # A run that held its items and died before looking them up.
    svc._claim(team_id, job.id, "run_dead")
    step = svc._reserve(team_id, job.id, "run_dead", 10)
    assert len(step.payload["work"]) == 3
    assert active_holds(book, team_id) == 3
    with pytest.raises(JobStateConflict):  # its heartbeat is fresh: nobody else may run it
        svc.run_sync(team_id, job.id)

    assert svc.recover_interrupted(stale_after=timedelta(0)) == [job.id]
    assert svc.get_job(team_id, job.id).pause_reason == "interrupted"
    svc.resume(team_id, job.id)
    done = svc.run_sync(team_id, job.id)

    assert (done.status, done.credits_spent) == ("completed", 10)
    assert active_holds(book, team_id) == 0
    assert set(captures_by_item(job_entries(book, team_id, job.id)).values()) == {1}
    assert book.balance(team_id).available == 90
    assert book.audit(team_id).clean


def test_an_item_whose_hold_expired_during_a_crash_is_held_again_and_charged_once(
    book: creditbook.Creditbook, clock: FrozenClock
) -> None:
    team_id = team_with(book, 100)
    svc = service(book, Scripted("email_finder", {}, default="deliverable"), hold_ttl_seconds=60)
    job = svc.create_job(team_id, [lead("A")], ["email_finder"])
    svc._claim(team_id, job.id, "run_dead")
    svc._reserve(team_id, job.id, "run_dead", 10)
    clock.advance(timedelta(hours=1))  # the hold expires: its credits are back
    assert book.balance(team_id).available == 100

    svc.resume(team_id, job.id)
    done = svc.run_sync(team_id, job.id)

    assert done.credits_spent == 5
    entries = job_entries(book, team_id, job.id)
    # The first hold expired (released by the engine, not by the job): two holds, one capture.
    assert Counter(e.kind for e in entries) == {"hold": 2, "capture": 1}
    assert active_holds(book, team_id) == 0
    assert book.balance(team_id).available == 95
    assert book.audit(team_id).clean


def test_results_csv_has_one_row_per_lead_with_each_feature(book: creditbook.Creditbook) -> None:
    team_id = team_with(book, 100)
    svc = service(
        book,
        Scripted("email_finder", {"Ann": "risky"}),
        Scripted("phone_finder", {"Ann": "found"}),
    )
    job = svc.create_job(team_id, [lead("Ann"), lead("Bob")], ["email_finder", "phone_finder"])
    svc.run_sync(team_id, job.id)

    lines = svc.results_csv(team_id, job.id).splitlines()

    assert lines[0].endswith(
        "email_finder_status,email_finder_value,email_finder_credits,email_finder_source,"
        "phone_finder_status,phone_finder_value,phone_finder_credits,phone_finder_source"
    )
    assert lines[1].endswith(
        "risky,Ann@scripted.example,5,scripted,found,Ann@scripted.example,20,scripted"
    )
    assert lines[2].endswith("not_found,,0,scripted,not_found,,0,scripted")
    assert len(lines) == 3


def test_creating_a_job_twice_with_one_idempotency_key_makes_one_job(
    book: creditbook.Creditbook,
) -> None:
    team_id = team_with(book, 100)
    svc = service(book, Scripted("email_finder", {}))
    first = svc.create_job(team_id, [lead("A")], ["email_finder"], idempotency_key="k1")
    again = svc.create_job(team_id, [lead("A")], ["email_finder"], idempotency_key="k1")
    assert again.id == first.id
    with pytest.raises(creditbook.IdempotencyConflict):
        svc.create_job(team_id, [lead("B")], ["email_finder"], idempotency_key="k1")


def test_an_ai_variable_is_charged_on_success_and_released_on_failure(
    book: creditbook.Creditbook,
) -> None:
    team_id = team_with(book, 10)
    svc = EnrichmentService(book.kernel)  # the sandbox: deterministic, 98% success

    made = asyncio.run(svc.generate_ai_variable(team_id, "Write an opener", lead("Ann")))

    assert (made.outcome, made.credits) == ("succeeded", 1)
    assert made.text and "Ann" in made.text
    failing = service(book, Scripted("ai_variable", {}, default="failed"))
    failed = asyncio.run(failing.generate_ai_variable(team_id, "Write an opener", lead("Ann")))
    assert (failed.outcome, failed.credits, failed.text) == ("failed", 0, None)
    assert book.balance(team_id).available == 9
    assert active_holds(book, team_id) == 0
