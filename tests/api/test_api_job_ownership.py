"""Who may see and steer an enrichment job, and read its leads, over HTTP.

A member lists, reads, resumes, cancels and downloads only the jobs it
started: any other job of its team answers 404, exactly as a job of another
team does, and lists leave it out. Admins and service keys reach every job of
their team; the operator key has no team. Run on SQLite and PostgreSQL, with
group commit on as ``creditbook serve`` runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from api_helpers import Api, Team, TestClient, assert_problem, bearer, make_settings

import creditbook
from creditbook.domain.clock import FrozenClock
from creditbook.entrypoints.api import create_app
from creditbook.entrypoints.api.routes_enrichment import stop_worker
from creditbook.service.enrichment import enrichment_for

SECRET_LEAD = {"first_name": "Grace", "last_name": "Hopper", "company_name": "Navy",
               "company_domain": "navy.example", "email": "grace@navy.example"}  # fmt: skip
ANNS_LEAD = {"first_name": "Ann", "last_name": "Lee", "company_domain": "lee.example"}


@dataclass
class World:
    api: Api
    team: Team
    ann: dict[str, str]  # a member
    bob: dict[str, str]  # another member
    service: dict[str, str]  # a service key
    stranger: Team  # another team
    ann_job: str
    admin_job: str
    system_job: str  # started by the platform's code, no member

    @property
    def client(self) -> TestClient:
        return self.api.client

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/enrichment-jobs/{job_id}", headers=self.team.admin)
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()["job"]
        return job

    def listed(self, who: dict[str, str], query: str = "") -> set[str]:
        r = self.client.get(f"/v1/enrichment-jobs{query}", headers=who)
        assert r.status_code == 200, r.text
        return {j["id"] for j in r.json()["jobs"]}


def _estimate(api: Api, who: dict[str, str], lead: dict[str, str]) -> str:
    body = {"leads": [lead], "features": ["email_finder"], "provider": "sandbox",
            "estimate_only": True}  # fmt: skip
    r = api.client.post("/v1/enrichment-jobs", json=body, headers=who)
    assert r.status_code == 201, r.text
    assert r.json()["job"]["status"] == "paused"
    job_id: str = r.json()["job"]["id"]
    return job_id


@pytest.fixture
def world(
    book: creditbook.Creditbook, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    monkeypatch.setenv("CREDITBOOK_NOTIFY_WORKER", "0")
    assert book.engine is not None
    book.enable_group_commit(on_loop=book.engine.dialect.name == "postgresql")
    app = create_app(book, make_settings())
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            api = Api(client, book, clock)
            team = api.new_team(credits=1_000)
            _, ann = api.add_member(team, "ann@acme.example")
            _, bob = api.add_member(team, "bob@acme.example")
            workers, _ = api.add_member(team, "workers@acme.example")
            made = client.post(
                f"/v1/members/{workers}/api-keys", json={"kind": "service"}, headers=team.admin
            )
            assert made.status_code == 201, made.text
            stranger = api.new_team("Globex", credits=1_000)
            ann_job = _estimate(api, ann, ANNS_LEAD)
            admin_job = _estimate(api, team.admin, SECRET_LEAD)
            system_job = enrichment_for(book).create_job(
                team.id, [SECRET_LEAD], ["email_finder"], estimate_only=True
            )
            yield World(
                api, team, ann, bob, bearer(made.json()["api_key"]), stranger, ann_job,
                admin_job, system_job.id,
            )  # fmt: skip
    finally:
        stop_worker(book)
        book.disable_group_commit()


def _job_routes(job_id: str) -> list[tuple[str, str]]:
    base = f"/v1/enrichment-jobs/{job_id}"
    return [
        ("GET", base),
        ("GET", f"{base}/results.csv"),
        ("POST", f"{base}/resume"),
        ("POST", f"{base}/cancel"),
    ]


def _call(world: World, method: str, path: str, who: dict[str, str]) -> httpx.Response:
    return world.client.request(method, path, headers=who)


def _not_found(answer: httpx.Response, job_id: str) -> dict[str, Any]:
    body = assert_problem(answer, 404, "not_found")
    assert (body["resource"], body["id"]) == ("job", job_id)
    assert "Grace" not in answer.text and "navy" not in answer.text
    return {k: v for k, v in body.items() if k not in ("instance", "request_id")}


def test_a_member_lists_only_its_own_jobs_and_admins_and_service_keys_the_teams(
    world: World,
) -> None:
    everyone = {world.ann_job, world.admin_job, world.system_job}
    assert world.listed(world.ann) == {world.ann_job}
    assert world.listed(world.bob) == set()
    assert world.listed(world.team.admin) == everyone
    assert world.listed(world.service) == everyone
    assert world.listed(world.stranger.admin) == set()
    assert_problem(world.client.get("/v1/enrichment-jobs", headers=world.api.op), 403, "forbidden")
    # The filter is the query's, not a cut of the team's latest jobs: newer jobs of
    # others do not push a member's own job out of its first page.
    assert world.listed(world.ann, "?limit=1") == {world.ann_job}
    assert world.listed(world.ann, "?status=paused&limit=1") == {world.ann_job}


def test_another_members_job_is_not_found_exactly_as_another_teams_job(world: World) -> None:
    for job_id in (world.admin_job, world.system_job):
        for method, path in _job_routes(job_id):
            mine = _not_found(_call(world, method, path, world.ann), job_id)
            theirs = _not_found(_call(world, method, path, world.stranger.admin), job_id)
            assert mine == theirs, path
    for method, path in _job_routes(world.ann_job):
        _not_found(_call(world, method, path, world.bob), world.ann_job)
    for job_id in (world.admin_job, world.system_job, world.ann_job):
        job = world.job(job_id)  # nothing of theirs changed
        assert (job["status"], job["pause_reason"]) == ("paused", "estimate_only")


def test_a_member_reads_downloads_and_steers_its_own_job(world: World) -> None:
    read = world.client.get(f"/v1/enrichment-jobs/{world.ann_job}", headers=world.ann)
    assert read.status_code == 200 and read.json()["job"]["id"] == world.ann_job
    rows = world.client.get(f"/v1/enrichment-jobs/{world.ann_job}/results.csv", headers=world.ann)
    assert rows.status_code == 200 and "Ann" in rows.text
    cancelled = world.client.post(f"/v1/enrichment-jobs/{world.ann_job}/cancel", headers=world.ann)
    assert cancelled.status_code == 200 and cancelled.json()["job"]["status"] == "cancelled"


def test_admins_and_service_keys_read_and_steer_every_job_of_the_team(world: World) -> None:
    for who in (world.team.admin, world.service):
        for job_id in (world.ann_job, world.admin_job, world.system_job):
            read = world.client.get(f"/v1/enrichment-jobs/{job_id}", headers=who)
            assert read.status_code == 200, read.text
            rows = world.client.get(f"/v1/enrichment-jobs/{job_id}/results.csv", headers=who)
            assert rows.status_code == 200 and rows.text.count("\n") == 2
    assert (
        "Grace"
        in world.client.get(
            f"/v1/enrichment-jobs/{world.admin_job}/results.csv", headers=world.service
        ).text
    )
    cancelled = world.client.post(
        f"/v1/enrichment-jobs/{world.ann_job}/cancel", headers=world.service
    )
    assert cancelled.status_code == 200 and cancelled.json()["job"]["status"] == "cancelled"
    started = world.client.post(
        f"/v1/enrichment-jobs/{world.system_job}/resume", headers=world.service
    )
    assert started.status_code == 200 and started.json()["job"]["status"] != "paused"
    cancelled = world.client.post(
        f"/v1/enrichment-jobs/{world.admin_job}/cancel", headers=world.team.admin
    )
    assert cancelled.status_code == 200


def _enrich(world: World, who: dict[str, str]) -> str:
    body = {"firstName": "Grace", "lastName": "Hopper", "companyDomain": "navy.example",
            "companyName": "Navy", "findEmail": True}  # fmt: skip
    r = world.client.post("/api/enrich", json=body, headers=who)
    assert r.status_code == 201, r.text
    enrich_id: str = r.json()["id"]
    return enrich_id


def _enriched(world: World, enrich_id: str, who: dict[str, str]) -> httpx.Response:
    deadline = time.monotonic() + 20
    answer = world.client.get(f"/api/enrich/{enrich_id}", headers=who)
    while answer.status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.02)
        answer = world.client.get(f"/api/enrich/{enrich_id}", headers=who)
    return answer


def test_lemlist_enrichment_results_reach_only_their_member_admins_and_service_keys(
    world: World,
) -> None:
    admins = _enrich(world, world.team.admin)
    done = _enriched(world, admins, world.team.admin)
    assert done.status_code == 200 and done.json()["data"]["email"]["value"]
    assert _enriched(world, admins, world.service).json() == done.json()
    mine = _not_found(world.client.get(f"/api/enrich/{admins}", headers=world.ann), admins)
    theirs = world.client.get(f"/api/enrich/{admins}", headers=world.stranger.admin)
    assert mine == _not_found(theirs, admins)
    anns = _enrich(world, world.ann)
    assert _enriched(world, anns, world.ann).status_code == 200
    _not_found(world.client.get(f"/api/enrich/{anns}", headers=world.bob), anns)
    assert world.listed(world.ann) == {world.ann_job, anns}
