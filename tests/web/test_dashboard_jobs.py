"""Enrichment jobs in the dashboard: a member sees and steers only the jobs it started.

Another member's job is "not found" (404) on every job page and form, exactly
as a job that does not exist; the jobs list shows a member its own jobs however
many others the team started since; admins see every job. A service key is for
the platform's code, not for people: it does not open a dashboard session.
Run on SQLite and PostgreSQL, with group commit on as ``creditbook serve`` runs.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import creditbook
from creditbook.config import Settings
from creditbook.domain.clock import FrozenClock
from creditbook.entrypoints.api import create_app
from creditbook.entrypoints.api.routes_enrichment import stop_worker
from creditbook.service.access import AccessService
from creditbook.service.enrichment import EnrichmentService, enrichment_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SECRET = "dashboard-tests-secret-key-0123456789abcdef"
SECRET_LEAD = {"first_name": "Grace", "last_name": "Hopper", "company_domain": "navy.example"}


@dataclass
class World:
    book: creditbook.Creditbook
    jobs: EnrichmentService
    app: object
    team_id: str
    admin_id: str
    member_id: str
    admin_key: str
    member_key: str
    service_key: str

    def client(self) -> TestClient:
        return TestClient(self.app, raise_server_exceptions=False)  # type: ignore[arg-type]

    def estimate(self, member_id: str | None, lead: dict[str, str] = SECRET_LEAD) -> str:
        job = self.jobs.create_job(
            self.team_id, [lead], ["email_finder"], member_id=member_id, estimate_only=True
        )
        return job.id


@pytest.fixture
def world(book: creditbook.Creditbook, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("CREDITBOOK_NOTIFY_WORKER", "0")
    assert book.engine is not None
    book.enable_group_commit(on_loop=book.engine.dialect.name == "postgresql")
    access = AccessService(book.kernel).install()
    team, admin, admin_key = access.create_team("Acme", time_zone="UTC", admin_email="a@x.io")
    member, member_key = access.add_member(team.id, "m@x.io", "member")
    service = access.issue_key(team.id, admin.id, label="workers", kind="service")
    book.grant(team.id, 1_000, reason="welcome")
    app = create_app(book, Settings(env="test", secret_key=SECRET, operator_key=SECRET))
    try:
        yield World(
            book, enrichment_for(book), app, team.id, admin.id, member.id, admin_key.api_key,
            member_key.api_key, service.api_key,
        )  # fmt: skip
    finally:
        stop_worker(book)
        book.disable_group_commit()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def _sign_in(client: TestClient, key: str) -> str:
    page = client.get("/dashboard/signin")
    done = client.post(
        "/dashboard/signin",
        data={"csrf": _csrf(page.text), "api_key": key, "next": "/dashboard/enrichment"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    return _csrf(client.get("/dashboard/").text)


def test_another_members_job_is_not_found_on_every_page_and_form(
    world: World, clock: FrozenClock
) -> None:
    admins, nobodys = world.estimate(world.admin_id), world.estimate(None)
    member = world.client()
    csrf = _sign_in(member, world.member_key)
    for job_id in (admins, nobodys, "job_never_made"):
        base = f"/dashboard/enrichment/{job_id}"
        answers = [
            member.get(base),
            member.get(f"{base}/status.json"),
            member.get(f"{base}/results.csv"),
            member.post(f"{base}/resume", data={"csrf": csrf}, follow_redirects=False),
            member.post(f"{base}/cancel", data={"csrf": csrf}, follow_redirects=False),
        ]
        for answer in answers:
            assert answer.status_code == 404, (job_id, answer.request.url, answer.text[:200])
            assert "Grace" not in answer.text
    for job_id in (admins, nobodys):
        job = world.jobs.get_job(world.team_id, job_id)
        assert (job.status, job.pause_reason) == ("paused", "estimate_only")  # untouched
    admin = world.client()
    _sign_in(admin, world.admin_key)
    for job_id in (admins, nobodys):
        page = admin.get(f"/dashboard/enrichment/{job_id}")
        assert page.status_code == 200 and "Start the job" in page.text


def test_the_jobs_list_shows_a_member_its_own_jobs_however_many_others_came_since(
    world: World,
) -> None:
    own = world.estimate(world.member_id, {"first_name": "Ann", "last_name": "Lee",
                                           "company_domain": "lee.example"})  # fmt: skip
    others = [world.estimate(world.admin_id) for _ in range(50)]  # the page shows 50 jobs
    member = world.client()
    _sign_in(member, world.member_key)
    page = member.get("/dashboard/enrichment").text
    assert own in page
    assert not any(job_id in page for job_id in others)
    admin = world.client()
    _sign_in(admin, world.admin_key)
    assert others[-1] in admin.get("/dashboard/enrichment").text
    mine = member.get(f"/dashboard/enrichment/{own}")
    assert (
        mine.status_code == 200
        and "Ann" in member.get(f"/dashboard/enrichment/{own}/results.csv").text
    )


def test_a_service_key_does_not_open_a_dashboard_session(world: World) -> None:
    client = world.client()
    page = client.get("/dashboard/signin")
    refused = client.post(
        "/dashboard/signin",
        data={"csrf": _csrf(page.text), "api_key": world.service_key},
        follow_redirects=False,
    )
    assert refused.status_code == 401
    assert "service key" in refused.text
    answer = client.get("/dashboard/enrichment", follow_redirects=False)
    assert answer.status_code == 303 and "/dashboard/signin" in answer.headers["location"]
