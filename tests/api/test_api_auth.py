"""Keys, roles and team isolation: who may call what, and nothing leaks across teams."""

from __future__ import annotations

import hashlib

import pytest
from api_helpers import Api, TestClient, assert_problem, bearer, make_settings
from sqlalchemy import select

from creditbook.adapters.db.tables_access import api_keys
from creditbook.entrypoints.api import create_app


def test_a_request_without_a_key_is_unauthorized_with_a_bearer_challenge(api: Api) -> None:
    r = api.client.get("/v1/credits")
    assert_problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_an_unknown_or_malformed_key_is_unauthorized(api: Api) -> None:
    team = api.new_team()
    forged = team.admin["Authorization"][:-4] + "AAAA"
    for header in (
        {"Authorization": forged},
        bearer("cbk.team_x.key_y.secret"),
        bearer("not-a-key"),
        {"Authorization": "Basic abc"},
    ):
        assert_problem(api.client.get("/v1/credits", headers=header), 401, "unauthorized")


def test_keys_are_random_team_first_and_stored_only_as_sha256(api: Api) -> None:
    team = api.new_team()
    key = team.admin["Authorization"].removeprefix("Bearer ")
    prefix, team_id, key_id, secret = key.split(".")
    assert (prefix, team_id) == ("cbk", team.id)
    assert len(secret) >= 43  # 32 random bytes in URL-safe base64
    engine = api.book.engine
    assert engine is not None
    with engine.connect() as conn:
        rows = conn.execute(select(api_keys).where(api_keys.c.team_id == team.id)).all()
    assert len(rows) == 1
    assert rows[0].id == key_id
    assert rows[0].key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert secret not in repr(tuple(rows[0]))


def test_a_member_cannot_reach_admin_or_operator_endpoints(api: Api) -> None:
    team = api.new_team(credits=100)
    other_id, _ = api.add_member(team, "other@acme.example")
    _, member = api.add_member(team, "max@acme.example")
    calls = [
        ("post", "/v1/members", {"email": "new@acme.example"}),
        ("patch", f"/v1/members/{other_id}", {"monthly_cap": 5}),
        ("delete", f"/v1/members/{other_id}", None),
        ("get", f"/v1/members/{other_id}/api-keys", None),
        ("post", f"/v1/members/{other_id}/api-keys", None),
        ("delete", "/v1/api-keys/key_whatever", None),
        ("post", "/v1/teams", {"name": "x", "admin_email": "a@b.example"}),
        ("get", f"/v1/teams/{team.id}", None),
        ("patch", f"/v1/teams/{team.id}", {"status": "suspended"}),
        ("post", f"/v1/teams/{team.id}/grants", {"credits": 5, "category": "free", "reason": "x"}),
    ]
    for method, path, body in calls:
        kwargs = {"json": body} if body is not None else {}
        r = api.client.request(method.upper(), path, headers=member, **kwargs)
        assert_problem(r, 403, "forbidden")
    assert api.available(team) == 100


def test_an_admin_key_cannot_reach_operator_endpoints_and_the_operator_has_no_team(
    api: Api,
) -> None:
    team = api.new_team()
    r = api.client.post(
        f"/v1/teams/{team.id}/grants",
        json={"credits": 5, "category": "free", "reason": "self-service"},
        headers=team.admin,
    )
    assert_problem(r, 403, "forbidden")
    assert_problem(api.client.get("/v1/credits", headers=api.op), 403, "forbidden")


def test_no_team_key_reaches_another_teams_ids(api: Api) -> None:
    mine = api.new_team("Mine", credits=100)
    theirs = api.new_team("Theirs", credits=100)
    their_member, _ = api.add_member(theirs, "them@theirs.example")
    hold = api.client.post("/v1/holds", json={"feature": "phone_finder"}, headers=theirs.admin)
    hold_id = hold.json()["hold_id"]
    their_key = api.client.get(f"/v1/members/{their_member}/api-keys", headers=theirs.admin).json()[
        0
    ]["key_id"]
    calls = [
        ("get", f"/v1/members/{their_member}", None),
        ("patch", f"/v1/members/{their_member}", {"monthly_cap": 1}),
        ("delete", f"/v1/members/{their_member}", None),
        ("get", f"/v1/members/{their_member}/api-keys", None),
        ("post", f"/v1/members/{their_member}/api-keys", None),
        ("delete", f"/v1/api-keys/{their_key}", None),
        ("get", f"/v1/holds/{hold_id}", None),
        ("post", f"/v1/holds/{hold_id}/capture", {"outcome": "found"}),
        ("post", f"/v1/holds/{hold_id}/release", None),
    ]
    for method, path, body in calls:
        kwargs = {"json": body} if body is not None else {}
        r = api.client.request(method.upper(), path, headers=mine.admin, **kwargs)
        problem = assert_problem(r, 404, "not_found")
        assert "them@theirs.example" not in r.text
        assert problem["detail"]
    # Their hold and member are untouched; their key still works.
    state = api.client.get(f"/v1/holds/{hold_id}", headers=theirs.admin).json()
    assert state["status"] == "active"
    assert api.available(theirs) == 80
    member = api.client.get(f"/v1/members/{their_member}", headers=theirs.admin).json()
    assert member["active"] is True and member["monthly_cap"] is None
    # History filtered by another team's member shows nothing of theirs.
    page = api.client.get(f"/v1/ledger?member={their_member}", headers=mine.admin).json()
    assert page["entries"] == []


def test_a_revoked_key_stops_at_once_and_a_rotated_key_works(api: Api) -> None:
    team = api.new_team()
    member_id, member = api.add_member(team, "max@acme.example")
    assert api.client.get("/v1/credits", headers=member).status_code == 200
    new = api.client.post(
        f"/v1/members/{member_id}/api-keys", json={"label": "worker"}, headers=team.admin
    )
    assert new.status_code == 201
    new_key = bearer(new.json()["api_key"])
    keys = api.client.get(f"/v1/members/{member_id}/api-keys", headers=team.admin).json()
    old_id = next(k["key_id"] for k in keys if k["label"] is None)
    revoked = api.client.delete(f"/v1/api-keys/{old_id}", headers=team.admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert_problem(api.client.get("/v1/credits", headers=member), 401, "unauthorized")
    assert api.client.get("/v1/credits", headers=new_key).status_code == 200
    assert "api_key" not in keys[0]


def test_removing_a_member_revokes_their_keys_and_keeps_the_last_admin(api: Api) -> None:
    team = api.new_team()
    member_id, member = api.add_member(team, "max@acme.example")
    removed = api.client.delete(f"/v1/members/{member_id}", headers=team.admin)
    assert removed.status_code == 200 and removed.json()["active"] is False
    assert_problem(api.client.get("/v1/credits", headers=member), 401, "unauthorized")
    assert_problem(
        api.client.delete(f"/v1/members/{team.admin_id}", headers=team.admin), 409, "last_admin"
    )
    assert_problem(
        api.client.patch(
            f"/v1/members/{team.admin_id}", json={"role": "member"}, headers=team.admin
        ),
        409,
        "last_admin",
    )


def test_a_suspended_team_is_refused_until_reactivated(api: Api) -> None:
    team = api.new_team(credits=10)
    r = api.client.patch(f"/v1/teams/{team.id}", json={"status": "suspended"}, headers=api.op)
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    assert_problem(api.client.get("/v1/credits", headers=team.admin), 403, "team_suspended")
    api.client.patch(f"/v1/teams/{team.id}", json={"status": "active"}, headers=api.op)
    assert api.available(team) == 10


@pytest.mark.parametrize("path", ["/v1/teams/team_nope", "/v1/teams/team_nope/grants"])
def test_operator_calls_on_an_unknown_team_are_not_found(api: Api, path: str) -> None:
    if path.endswith("grants"):
        r = api.client.post(
            path, json={"credits": 1, "category": "free", "reason": "x"}, headers=api.op
        )
    else:
        r = api.client.get(path, headers=api.op)
    assert_problem(r, 404, "not_found")


SPEND_ROUTES = [
    ("/v1/charges", {"feature": "email_finder", "outcome": "deliverable"}),
    ("/v1/holds", {"feature": "email_finder"}),
    ("/v1/holds/hold_x/capture", {"outcome": "found"}),
    ("/v1/holds/hold_x/release", None),
]


@pytest.mark.parametrize(("path", "body"), SPEND_ROUTES)
def test_the_spend_routes_check_the_caller_as_every_other_team_route(
    api: Api, path: str, body: dict[str, str] | None
) -> None:
    # The spend routes resolve the caller inside the route (deps.spender) instead of
    # the services -> caller -> team_caller dependencies: the same refusals, in the
    # same order, and the same documented security scheme.
    team = api.new_team(credits=100)
    r = api.client.post(path, json=body)
    assert_problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")
    for header in (bearer("cbk.team_x.key_y.secret"), {"Authorization": "Basic abc"}):
        assert_problem(api.client.post(path, json=body, headers=header), 401, "unauthorized")
    assert_problem(api.client.post(path, json=body, headers=api.op), 403, "forbidden")
    api.client.patch(f"/v1/teams/{team.id}", json={"status": "suspended"}, headers=api.op)
    r = api.client.post(path, json=body, headers=team.admin)
    assert_problem(r, 403, "team_suspended")
    api.client.patch(f"/v1/teams/{team.id}", json={"status": "active"}, headers=api.op)
    assert api.available(team) == 100
    schema = api.client.get("/openapi.json").json()
    operation = schema["paths"][path.replace("hold_x", "{hold_id}")]["post"]
    assert operation["security"] == [{"ApiKey": []}]


def test_the_spend_routes_count_against_the_keys_rate_limit(api: Api) -> None:
    team = api.new_team(credits=100)
    app = create_app(api.book, make_settings(rate_limit_requests=2, rate_limit_window_seconds=60))
    charge = {"feature": "email_finder", "outcome": "deliverable"}
    with TestClient(app) as limited:
        statuses = [
            limited.post("/v1/charges", json=charge, headers=team.admin).status_code
            for _ in range(3)
        ]
        held = limited.post("/v1/holds", json={"feature": "email_finder"}, headers=team.admin)
    assert statuses == [201, 201, 429]
    assert_problem(held, 429, "rate_limited")
    assert api.available(team) == 90


@pytest.mark.parametrize(("path", "body"), SPEND_ROUTES)
def test_the_spend_routes_check_and_document_the_idempotency_key_as_a_header_parameter(
    api: Api, path: str, body: dict[str, str] | None
) -> None:
    # deps.spender reads Idempotency-Key itself (FastAPI's dependencies and header
    # parameter were a fifth of a charge's CPU): the same checks, 422 and schema.
    team = api.new_team(credits=100)
    hold = api.client.post("/v1/holds", json={"feature": "phone_finder"}, headers=team.admin)
    real_path = path.replace("hold_x", hold.json()["hold_id"])
    before = api.available(team)
    for bad in ("", "k" * 256):
        r = api.client.post(real_path, json=body, headers={**team.admin, "Idempotency-Key": bad})
        problem = assert_problem(r, 422, "validation_error")
        assert problem["errors"][0]["loc"] == ["header", "Idempotency-Key"]
        assert "Idempotency-Key" in problem["detail"]
    assert api.available(team) == before  # nothing was charged, held or released
    keyed = {**team.admin, "Idempotency-Key": "k" * 255}
    first = api.client.post(real_path, json=body, headers=keyed)
    again = api.client.post(real_path, json=body, headers=keyed)
    assert first.status_code in (200, 201), first.text
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    operations = api.client.get("/openapi.json").json()["paths"]
    declared = operations["/v1/purchases"]["post"]["parameters"]  # a plain Header parameter
    spend = operations[path.replace("hold_x", "{hold_id}")]["post"]["parameters"]
    assert [p for p in spend if p["name"] == "Idempotency-Key"] == declared


@pytest.mark.parametrize(("path", "body"), SPEND_ROUTES[:2])
def test_a_spend_route_checks_the_key_before_the_body(
    api: Api, path: str, body: dict[str, str] | None
) -> None:
    # Decided (docs/api.md): the spend routes are KeyFirst, so an anonymous caller is
    # refused before FastAPI reads or parses the body (issue 22); with a key, a
    # malformed body is the usual 422.
    team = api.new_team(credits=100)
    malformed = {"feature": 5, "quantity": "many"}
    assert_problem(api.client.post(path, json=malformed), 401, "unauthorized")
    problem = assert_problem(
        api.client.post(path, json=malformed, headers=team.admin), 422, "validation_error"
    )
    assert {tuple(e["loc"][:1]) for e in problem["errors"]} == {("body",)}
    assert_problem(api.client.post(path, json=body), 401, "unauthorized")
