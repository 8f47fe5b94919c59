"""The enrichment endpoints: jobs run by the background worker, lemlist's /api/enrich, AI
variables."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import creditbook
from creditbook.config import Settings
from creditbook.entrypoints.api import create_app
from creditbook.entrypoints.api.routes_enrichment import stop_worker
from creditbook.service.access import AccessService

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@dataclass
class Api:
    client: TestClient
    book: creditbook.Creditbook
    team_id: str
    member: dict[str, str]
    other: dict[str, str]
    admin: dict[str, str]


@pytest.fixture
def api(book: creditbook.Creditbook, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("CREDITBOOK_NOTIFY_WORKER", "0")
    team = book.create_team("Acme").id
    keys = AccessService(book.kernel)
    admin = book.add_member(team, "alice@acme.com", "admin")
    member = book.add_member(team, "bob@acme.com", "member")
    other = book.add_member(team, "carol@acme.com", "member")

    def bearer(member_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys.issue_key(team, member_id).api_key}"}

    settings = Settings(rate_limit_requests=10_000, rate_limit_window_seconds=1)
    with TestClient(create_app(book, settings), raise_server_exceptions=False) as client:
        yield Api(client, book, team, bearer(member.id), bearer(other.id), bearer(admin.id))
    stop_worker(book)


def lead(first: str) -> dict[str, str]:
    return {"first_name": first, "last_name": "Doe", "company_name": "Acme",
            "company_domain": "acme.example"}  # fmt: skip


def wait_for(api: Api, job_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job: dict[str, Any] = api.client.get(
            f"/v1/enrichment-jobs/{job_id}", headers=api.member
        ).json()["job"]
        if job["status"] in statuses:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {statuses}")


def test_a_job_runs_in_the_background_pauses_without_credits_and_resumes_after_a_purchase(
    api: Api,
) -> None:
    api.book.grant(api.team_id, 7)
    body = {"leads": [lead(f"L{i}") for i in range(10)], "features": ["email_finder"],
            "provider": "sandbox"}  # fmt: skip

    created = api.client.post("/v1/enrichment-jobs", json=body, headers=api.member)

    assert created.status_code == 201
    job = created.json()["job"]
    assert job["status"] in ("queued", "running", "paused")
    assert job["estimate"] == {"max_credits": 50, "expected_credits": None, "sample_size": None,
                               "billable_rates": {}}  # fmt: skip
    paused = wait_for(api, job["id"], "paused")
    assert paused["pause_reason"] == "insufficient_credits"
    assert paused["credits_needed"] > 0
    assert api.client.post(
        f"/v1/enrichment-jobs/{job['id']}/resume", headers=api.other
    ).status_code == 404  # fmt: skip
    api.book.grant(api.team_id, 1000, category="purchased", source="purchase")

    resumed = api.client.post(f"/v1/enrichment-jobs/{job['id']}/resume", headers=api.member)

    assert resumed.status_code == 200
    done = wait_for(api, job["id"], "completed")
    assert done["processed"] == done["total"] == 10
    csv_answer = api.client.get(f"/v1/enrichment-jobs/{job['id']}/results.csv", headers=api.member)
    assert csv_answer.headers["content-type"].startswith("text/csv")
    rows = csv_answer.text.splitlines()
    assert len(rows) == 11
    assert sum(int(r.split(",")[-2]) for r in rows[1:]) == done["credits_spent"]
    assert api.book.balance(api.team_id).available == 1007 - done["credits_spent"]
    again = api.client.post(f"/v1/enrichment-jobs/{job['id']}/resume", headers=api.member)
    assert again.status_code == 409
    assert again.json()["code"] == "job_state_conflict"


def test_an_unknown_job_is_a_404_problem(api: Api) -> None:
    answer = api.client.get("/v1/enrichment-jobs/job_nope", headers=api.member)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_bad_features_are_refused_with_what_is_valid(api: Api) -> None:
    answer = api.client.post(
        "/v1/enrichment-jobs", json={"leads": [lead("A")], "features": ["calling"]},
        headers=api.member,
    )  # fmt: skip
    assert answer.status_code == 422
    assert "email_finder" in answer.json()["detail"]


def test_lemlist_enrich_answers_202_while_running_and_200_with_the_data(api: Api) -> None:
    api.book.grant(api.team_id, 100)
    created = api.client.post(
        "/api/enrich",
        json={"firstName": "Ada", "lastName": "Lovelace", "companyDomain": "acme.example",
              "companyName": "Acme", "findEmail": True, "linkedinEnrichment": True},
        headers=api.member,
    )  # fmt: skip
    assert created.status_code == 201
    enrich_id = created.json()["id"]
    deadline = time.monotonic() + 20
    answer = api.client.get(f"/api/enrich/{enrich_id}", headers=api.member)
    while answer.status_code == 202 and time.monotonic() < deadline:
        assert answer.json()["status"] in ("queued", "running")
        time.sleep(0.02)
        answer = api.client.get(f"/api/enrich/{enrich_id}", headers=api.member)

    assert answer.status_code == 200
    data = answer.json()["data"]
    assert set(data) == {"email", "linkedin"}
    spent = data["email"]["credits"] + data["linkedin"]["credits"]
    assert answer.json()["credits"] == spent
    assert api.book.balance(api.team_id).available == 100 - spent


def test_an_ai_variable_costs_one_credit_and_a_retry_with_the_same_key_costs_nothing(
    api: Api,
) -> None:
    api.book.grant(api.team_id, 5)
    body = {"prompt": "Write a one-line opener", "lead": lead("Ada")}
    headers = {**api.member, "Idempotency-Key": "ai-1"}

    first = api.client.post("/v1/ai-variables", json=body, headers=headers)
    again = api.client.post("/v1/ai-variables", json=body, headers=headers)

    assert first.status_code == 201
    assert first.json()["credits"] == 1 and "Ada" in first.json()["text"]
    assert again.json()["hold_id"] == first.json()["hold_id"]
    assert api.book.balance(api.team_id).available == 4


def test_an_ai_variable_without_credits_is_a_402(api: Api) -> None:
    answer = api.client.post(
        "/v1/ai-variables", json={"prompt": "Hi", "lead": {}}, headers=api.member
    )
    assert answer.status_code == 402
    assert answer.json()["code"] == "insufficient_credits"


def test_only_admins_change_the_enrichment_settings(api: Api) -> None:
    assert api.client.get("/v1/enrichment-settings", headers=api.member).json() == {
        "auto_resume": False,
        "dedupe_window_days": 30,
    }
    body = {"auto_resume": True}
    assert (
        api.client.put("/v1/enrichment-settings", json=body, headers=api.member).status_code == 403
    )
    changed = api.client.put("/v1/enrichment-settings", json=body, headers=api.admin)
    assert changed.json()["auto_resume"] is True
