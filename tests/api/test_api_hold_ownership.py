"""Who may read, capture and release a hold, over HTTP, on every path a spend takes.

A member reads and settles only the holds it placed: any other hold of its
team answers 404, exactly as a hold of another team or one that does not
exist. Admins and service keys settle any hold of their team. Whoever settles
it, a capture is booked to the hold's owner (the member and the key that
placed it) and counts against the owner's caps, never the settler's.

Each test runs on SQLite and PostgreSQL, with one transaction per request
(``alone``), through group commit's committer thread (``thread``) and, on
PostgreSQL, through the event-loop batch (``loop``, as ``creditbook serve``
runs by default).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import Api, Team, TestClient, assert_problem, bearer, make_settings

import creditbook
from creditbook.domain.clock import FrozenClock
from creditbook.entrypoints.api import create_app

PHONE = {"feature": "phone_finder"}  # 20 credits a lead
FOUND = {"outcome": "found"}
PG = pytest.mark.postgres
SPEND_PATHS = [
    pytest.param(("sqlite", "alone"), id="sqlite-alone"),
    pytest.param(("sqlite", "thread"), id="sqlite-thread"),
    pytest.param(("postgres", "alone"), id="postgres-alone", marks=PG),
    pytest.param(("postgres", "thread"), id="postgres-thread", marks=PG),
    pytest.param(("postgres", "loop"), id="postgres-loop", marks=PG),
]


@dataclass
class Key:
    """A team key's headers and ids."""

    headers: dict[str, str]
    member_id: str
    key_id: str


@dataclass
class World:
    api: Api
    team: Team
    admin: Key
    ann: Key  # a member capped at 0
    bob: Key  # a member without a cap
    service: Key  # a service key, on a member account of its own
    stranger: Team  # another team
    path: str

    @property
    def client(self) -> TestClient:
        return self.api.client

    def hold(self, who: Key, quantity: int = 1) -> str:
        r = self.client.post("/v1/holds", json=PHONE | {"quantity": quantity}, headers=who.headers)
        assert r.status_code == 201, r.text
        hold_id: str = r.json()["hold_id"]
        return hold_id

    def spent(self, who: Key) -> tuple[int, int]:
        """What the member, and its key, spent this cap month (as the admin reads it)."""
        admin = self.admin.headers
        member = self.client.get(f"/v1/members/{who.member_id}", headers=admin).json()
        key = self.client.get(f"/v1/api-keys/{who.key_id}", headers=admin).json()
        return member["spent_this_month"], key["spent_this_month"]

    def hold_state(self, hold_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/holds/{hold_id}", headers=self.admin.headers)
        assert r.status_code == 200, r.text
        state: dict[str, Any] = r.json()
        return state

    def captures(self) -> list[dict[str, Any]]:
        r = self.client.get("/v1/ledger?kind=capture", headers=self.admin.headers)
        assert r.status_code == 200, r.text
        entries: list[dict[str, Any]] = r.json()["entries"]
        return entries


def _key_id(api_key: str) -> str:
    return api_key.split(".")[2]


def _member(api: Api, team: Team, email: str, cap: int | None = None) -> Key:
    member_id, headers = api.add_member(team, email, cap=cap)
    return Key(headers, member_id, _key_id(headers["Authorization"].removeprefix("Bearer ")))


def _service_key(api: Api, team: Team) -> Key:
    member_id, _ = api.add_member(team, "workers@acme.example")
    r = api.client.post(
        f"/v1/members/{member_id}/api-keys",
        json={"label": "enrichment workers", "kind": "service"},
        headers=team.admin,
    )
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "service"
    return Key(bearer(r.json()["api_key"]), member_id, r.json()["key_id"])


@pytest.fixture(params=SPEND_PATHS)
def world(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Iterator[World]:
    backend, path = request.param
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'holds.db'}"
    else:
        url = request.getfixturevalue("pg_session_url")
    book = creditbook.open(url, clock=clock)
    app = create_app(book, make_settings())
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Api(client, book, clock)
        team = api.new_team(credits=1_000)
        admin_key = team.admin["Authorization"].removeprefix("Bearer ")
        admin = Key(team.admin, team.admin_id, _key_id(admin_key))
        ann = _member(api, team, "ann@acme.example", cap=0)
        bob = _member(api, team, "bob@acme.example")
        service = _service_key(api, team)
        stranger = api.new_team("Globex", credits=1_000)
        if path != "alone":
            book.enable_group_commit(on_loop=path == "loop")
        try:
            yield World(api, team, admin, ann, bob, service, stranger, path)
            if path == "loop":
                group = book.group_commit
                assert group is not None and group.on_loop and group._loops  # the loop batched
        finally:
            book.disable_group_commit()
    assert book.engine is not None
    book.engine.dispose()


def _settle(world: World, hold_id: str, who: dict[str, str]) -> dict[str, httpx.Response]:
    """GET, capture and release of ``hold_id`` as ``who``."""
    c = world.client
    return {
        "read": c.get(f"/v1/holds/{hold_id}", headers=who),
        "capture": c.post(f"/v1/holds/{hold_id}/capture", json=FOUND, headers=who),
        "release": c.post(f"/v1/holds/{hold_id}/release", headers=who),
    }


def _not_found(answer: httpx.Response, hold_id: str) -> dict[str, Any]:
    """A 404 problem for ``hold_id``, without the members that name the request."""
    body = assert_problem(answer, 404, "not_found")
    assert (body["resource"], body["id"]) == ("hold", hold_id)
    return {k: v for k, v in body.items() if k not in ("instance", "request_id")}


def test_a_member_capped_at_zero_cannot_capture_or_release_an_admins_hold(world: World) -> None:
    held = world.hold(world.admin, quantity=5)  # 100 credits, the admin's
    mine = _settle(world, held, world.ann.headers)
    for answer in mine.values():
        _not_found(answer, held)
    # Exactly what a hold of another team answers to that team's admin.
    theirs = _settle(world, held, world.stranger.admin)
    for action, answer in mine.items():
        assert _not_found(answer, held) == _not_found(theirs[action], held), action
    state = world.hold_state(held)
    assert (state["status"], state["credits"], state["captured"]) == ("active", 100, 0)
    assert world.spent(world.ann) == (0, 0)  # nothing was booked to the member
    assert world.captures() == []
    captured = world.client.post(
        f"/v1/holds/{held}/capture", json=FOUND, headers=world.admin.headers
    )
    assert captured.status_code == 201 and captured.json()["credits"] == 100
    assert world.api.book.audit().clean


def test_a_member_reads_and_settles_only_the_holds_it_placed(world: World) -> None:
    bobs = world.hold(world.bob)
    for answer in _settle(world, bobs, world.ann.headers).values():
        _not_found(answer, bobs)
    unknown = "hld_never_placed"
    for answer in _settle(world, unknown, world.bob.headers).values():
        _not_found(answer, unknown)
    read = world.client.get(f"/v1/holds/{bobs}", headers=world.bob.headers)
    assert read.status_code == 200 and read.json()["member_id"] == world.bob.member_id
    captured = world.client.post(f"/v1/holds/{bobs}/capture", json=FOUND, headers=world.bob.headers)
    assert captured.status_code == 201 and captured.json()["credits"] == 20
    again = world.hold(world.bob)
    released = world.client.post(f"/v1/holds/{again}/release", headers=world.bob.headers)
    assert released.status_code == 200 and released.json()["status"] == "released"
    assert world.spent(world.bob) == (20, 20)


def test_admins_and_service_keys_settle_any_hold_and_the_owner_is_booked(world: World) -> None:
    by_admin, by_service, released = (
        world.hold(world.bob),
        world.hold(world.bob),
        world.hold(world.bob),
    )
    for hold_id, settler in ((by_admin, world.admin), (by_service, world.service)):
        read = world.client.get(f"/v1/holds/{hold_id}", headers=settler.headers)
        assert read.status_code == 200 and read.json()["member_id"] == world.bob.member_id
        captured = world.client.post(
            f"/v1/holds/{hold_id}/capture", json=FOUND, headers=settler.headers
        )
        assert captured.status_code == 201 and captured.json()["credits"] == 20
    gone = world.client.post(f"/v1/holds/{released}/release", headers=world.service.headers)
    assert gone.status_code == 200 and gone.json()["released"] == 20
    booked = {(e["hold_id"], e["member_id"], e["api_key_id"]) for e in world.captures()}
    assert booked == {
        (by_admin, world.bob.member_id, world.bob.key_id),
        (by_service, world.bob.member_id, world.bob.key_id),
    }
    assert world.spent(world.bob) == (40, 40)
    assert world.spent(world.admin) == (0, 0)
    assert world.spent(world.service) == (0, 0)
    assert world.api.available(world.team) == 1_000 - 40
    assert world.api.book.audit().clean


def test_a_capture_counts_against_the_owners_caps_whoever_settles_it(world: World) -> None:
    cara = _member(world.api, world.team, "cara@acme.example", cap=30)
    held = world.hold(cara)
    captured = world.client.post(
        f"/v1/holds/{held}/capture", json=FOUND, headers=world.admin.headers
    )
    assert captured.status_code == 201
    assert world.spent(cara) == (20, 20)
    email = {"feature": "email_finder", "outcome": "deliverable"}  # 5 credits
    for _ in range(2):
        ok = world.client.post("/v1/charges", json=email, headers=cara.headers)
        assert ok.status_code == 201, ok.text
    over = assert_problem(
        world.client.post("/v1/charges", json=email, headers=cara.headers),
        402,
        "member_cap_exceeded",
    )
    assert (over["cap"], over["spent"], over["needed"]) == (30, 30, 5)


def test_another_team_never_reaches_a_hold_and_the_operator_has_none(world: World) -> None:
    held = world.hold(world.bob)
    for answer in _settle(world, held, world.stranger.admin).values():
        _not_found(answer, held)
    for answer in _settle(world, held, world.api.op).values():
        assert_problem(answer, 403, "forbidden")
    assert world.hold_state(held)["status"] == "active"


async def _at_once(world: World, calls: list[tuple[str, dict[str, str]]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=world.client.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await asyncio.gather(
            *(http.post(path, json=FOUND, headers=who) for path, who in calls)
        )


def test_settlements_sent_together_each_get_their_own_answer(world: World) -> None:
    admins, bobs, bobs_next, bobs_last = (
        world.hold(world.admin),
        world.hold(world.bob),
        world.hold(world.bob),
        world.hold(world.bob),
    )
    answers = asyncio.run(
        _at_once(
            world,
            [
                (f"/v1/holds/{admins}/capture", world.ann.headers),
                (f"/v1/holds/{bobs}/capture", world.bob.headers),
                (f"/v1/holds/{bobs_next}/release", world.service.headers),
                (f"/v1/holds/{bobs_last}/release", world.ann.headers),
                (f"/v1/holds/{bobs_last}/capture", world.stranger.admin),
            ],
        )
    )
    assert [a.status_code for a in answers] == [404, 201, 200, 404, 404]
    states = {h: world.hold_state(h)["status"] for h in (admins, bobs, bobs_next, bobs_last)}
    assert states == {
        admins: "active",
        bobs: "captured",
        bobs_next: "released",
        bobs_last: "active",
    }
    assert world.spent(world.ann) == (0, 0)
    assert world.api.book.audit().clean
