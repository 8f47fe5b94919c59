"""The API with group commit on, as ``creditbook serve`` runs it (SQLite and PostgreSQL).

``POST /v1/charges`` is ``async``: the request's task awaits its batch
(``Creditbook.charge_async``) instead of holding a worker thread. These tests
drive that path: answers, idempotent retries, refusals (insufficient credits,
a member's cap read from the batch's prefetch) and many charges at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from api_helpers import Api, TestClient, assert_problem, bearer, make_settings
from fastapi import FastAPI

import creditbook
from creditbook.domain.clock import FrozenClock
from creditbook.entrypoints.api import create_app

CHARGE = {"feature": "email_finder", "outcome": "deliverable"}  # 5 credits


async def _charge_at_once(
    app: FastAPI, headers: dict[str, str], count: int
) -> list[httpx.Response]:
    """``count`` charges sent together, each with its own idempotency key."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await asyncio.gather(
            *(
                http.post(
                    "/v1/charges", json=CHARGE, headers=headers | {"Idempotency-Key": f"k{i}"}
                )
                for i in range(count)
            )
        )


@pytest.fixture
def grouped(api: Api) -> Iterator[Api]:
    """The ``api`` fixture with group commit on, as ``creditbook serve`` runs."""
    api.book.enable_group_commit()
    yield api
    api.book.disable_group_commit()


def test_a_charge_is_answered_by_its_batch_and_a_retry_by_its_receipt(grouped: Api) -> None:
    team = grouped.new_team(credits=100)
    headers = team.admin | {"Idempotency-Key": "charge-1"}
    first = grouped.client.post("/v1/charges", json=CHARGE, headers=headers)
    again = grouped.client.post("/v1/charges", json=CHARGE, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and first.json()["credits"] == 5
    other = grouped.client.post("/v1/charges", json=CHARGE | {"quantity": 2}, headers=headers)
    assert_problem(other, 409, "idempotency_conflict")
    assert grouped.available(team) == 95
    assert grouped.book.group_commit is not None
    assert grouped.book.group_commit.stats.commands >= 2  # the batches answered them


def test_refusals_come_back_from_the_batch_as_problems(grouped: Api) -> None:
    team = grouped.new_team(credits=27)
    _, member = grouped.add_member(team, "max@acme.example", cap=20)
    for _ in range(4):
        ok = grouped.client.post("/v1/charges", json=CHARGE, headers=member)
        assert ok.status_code == 201, ok.text
    over = assert_problem(
        grouped.client.post("/v1/charges", json=CHARGE, headers=member), 402, "member_cap_exceeded"
    )
    assert (over["cap"], over["spent"], over["needed"]) == (20, 20, 5)
    admin = grouped.client.post("/v1/charges", json=CHARGE, headers=team.admin)
    assert admin.status_code == 201  # the cap is the member's, the team still has 7
    short = assert_problem(
        grouped.client.post("/v1/charges", json=CHARGE, headers=team.admin),
        402,
        "insufficient_credits",
    )
    assert (short["needed"], short["available"]) == (5, 2)
    assert grouped.available(team) == 2
    assert grouped.book.audit().clean


def test_many_charges_at_once_share_batches_and_every_credit_adds_up(
    book: creditbook.Creditbook, clock: FrozenClock
) -> None:
    app = create_app(book, make_settings())
    with TestClient(app) as client:
        api = Api(client, book, clock)
        team = api.new_team(credits=10_000)
    group = book.enable_group_commit()
    try:
        answers = asyncio.run(_charge_at_once(app, team.admin, 60))
    finally:
        book.disable_group_commit()
    assert [a.status_code for a in answers] == [201] * 60
    assert len({a.json()["charge_id"] for a in answers}) == 60
    assert group.stats.commands == 60 and group.stats.largest > 1  # shared transactions
    assert book.balance(team.id).available == 10_000 - 60 * 5
    assert book.audit().clean


def test_holds_captures_and_releases_go_through_the_batches(grouped: Api) -> None:
    team = grouped.new_team(credits=100)
    held = grouped.client.post("/v1/holds", json={"feature": "phone_finder"}, headers=team.admin)
    assert held.status_code == 201 and held.json()["credits"] == 20
    hold_id = held.json()["hold_id"]
    captured = grouped.client.post(
        f"/v1/holds/{hold_id}/capture", json={"outcome": "not_found"}, headers=team.admin
    )
    assert captured.status_code == 201 and captured.json()["credits"] == 0
    assert captured.json()["returned"] == 20  # a non-billable outcome gives it all back
    twice = grouped.client.post(f"/v1/holds/{hold_id}/release", headers=team.admin)
    assert_problem(twice, 409, "hold_not_active")
    other = grouped.client.post("/v1/holds", json={"feature": "email_finder"}, headers=team.admin)
    released = grouped.client.post(
        f"/v1/holds/{other.json()['hold_id']}/release", headers=team.admin
    )
    assert released.status_code == 200 and released.json()["status"] == "released"
    assert grouped.available(team) == 100
    assert grouped.book.group_commit is not None
    assert grouped.book.group_commit.stats.commands >= 4
    assert grouped.book.audit().clean


def test_concurrent_charges_through_a_capped_key_stop_exactly_at_its_cap(
    book: creditbook.Creditbook, clock: FrozenClock
) -> None:
    app = create_app(book, make_settings())
    with TestClient(app) as client:
        api = Api(client, book, clock)
        team = api.new_team(credits=10_000)
        member_id, _ = api.add_member(team, "robot@acme.example")
        made = client.post(
            f"/v1/members/{member_id}/api-keys", json={"monthly_cap": 42}, headers=team.admin
        )
        key = bearer(made.json()["api_key"])
    group = book.enable_group_commit()
    try:
        answers = asyncio.run(_charge_at_once(app, key, 20))
    finally:
        book.disable_group_commit()
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 8 + [402] * 12  # 8 x 5 = 40 fits under 42; a ninth would not
    assert {a.json()["code"] for a in answers if a.status_code == 402} == {"key_cap_exceeded"}
    assert group.stats.commands >= 20
    assert book.balance(team.id).available == 10_000 - 40
    assert book.audit().clean
