"""Balance, charges, holds and idempotency through the HTTP API."""

from __future__ import annotations

from datetime import timedelta

from api_helpers import Api, assert_problem


def test_a_team_is_created_with_its_admin_and_a_one_time_key(api: Api) -> None:
    r = api.client.post(
        "/v1/teams",
        json={
            "name": "Acme",
            "time_zone": "Europe/Paris",
            "admin_email": "ada@acme.example",
            "seats": 3,
        },
        headers=api.op,
    )
    assert r.status_code == 201
    body = r.json()
    assert body["team"]["id"].startswith("team_")
    assert body["team"]["time_zone"] == "Europe/Paris"
    assert body["admin"]["role"] == "admin"
    assert body["admin_api_key"].startswith(f"cbk.{body['team']['id']}.")
    again = api.client.get(f"/v1/teams/{body['team']['id']}", headers=api.op).json()
    assert "admin_api_key" not in again and again["name"] == "Acme"


def test_a_team_with_an_unknown_plan_or_time_zone_is_refused_whole(api: Api) -> None:
    bad_plan = api.client.post(
        "/v1/teams",
        json={"name": "A", "plan": "platinum", "admin_email": "a@a.example"},
        headers=api.op,
    )
    assert "email_pro" in assert_problem(bad_plan, 422, "unknown_plan")["detail"]
    bad_zone = api.client.post(
        "/v1/teams",
        json={"name": "A", "time_zone": "Mars/Olympus", "admin_email": "a@a.example"},
        headers=api.op,
    )
    assert assert_problem(bad_zone, 422, "validation_error")["field"] == "time_zone"


def test_credits_show_buckets_reserved_and_expiring_and_lemlist_shape(api: Api) -> None:
    team = api.new_team()
    api.grant(team.id, 300, "purchased")
    expires = (api.clock.now() + timedelta(days=10)).isoformat()
    r = api.client.post(
        f"/v1/teams/{team.id}/grants",
        json={"credits": 200, "category": "free", "reason": "welcome gift", "expires_at": expires},
        headers=api.op,
    )
    assert r.status_code == 201 and r.json()["bucket"] == "gifted"
    api.client.post("/v1/holds", json={"feature": "phone_finder"}, headers=team.admin)
    credits = api.client.get("/v1/credits", headers=team.admin).json()
    assert credits["available"] == 480
    assert credits["reserved"] == 20
    assert credits["buckets"] == {
        "trial": 0,
        "subscription": 0,
        "calling": 0,
        "gifted": 180,
        "purchased": 300,
    }
    assert credits["expiring"] == [
        {"credits": 180, "expires_at": expires.replace("+00:00", "Z"), "bucket": "gifted"}
    ]
    lemlist = api.client.get("/api/team/credits", headers=team.admin).json()
    assert lemlist == {
        "credits": 480,
        "details": {
            "remaining": {
                "total": 480,
                "freemium": 0,
                "subscription": 0,
                "gifted": 180,
                "paid": 300,
            }
        },
    }


def test_a_charge_costs_the_catalog_price_and_a_non_billable_outcome_costs_nothing(
    api: Api,
) -> None:
    team = api.new_team(credits=100)
    r = api.client.post(
        "/v1/charges",
        json={"feature": "email_finder", "quantity": 2, "outcome": "deliverable"},
        headers=team.admin,
    )
    assert r.status_code == 201
    assert r.json()["credits"] == 10 and r.json()["grants"][0]["credits"] == 10
    free = api.client.post(
        "/v1/charges", json={"feature": "email_finder", "outcome": "not_found"}, headers=team.admin
    )
    assert free.status_code == 201 and free.json()["credits"] == 0
    call = api.client.post(
        "/v1/charges",
        json={
            "feature": "calling",
            "call": {"duration_seconds": 61, "answered": True, "destination": "basic"},
        },
        headers=team.admin,
    )
    assert call.status_code == 201 and call.json()["credits"] == 8
    assert api.available(team) == 82


def test_running_out_is_a_402_with_needed_and_available_and_charges_nothing(api: Api) -> None:
    team = api.new_team(credits=12)
    r = api.client.post(
        "/v1/charges", json={"feature": "phone_finder", "outcome": "found"}, headers=team.admin
    )
    problem = assert_problem(r, 402, "insufficient_credits")
    assert (problem["needed"], problem["available"]) == (20, 12)
    assert api.available(team) == 12


def test_unknown_features_and_outcomes_are_refused_with_the_valid_ones(api: Api) -> None:
    team = api.new_team(credits=10)
    r = api.client.post("/v1/charges", json={"feature": "teleport"}, headers=team.admin)
    assert "email_finder" in assert_problem(r, 422, "unknown_feature")["valid"]
    r = api.client.post(
        "/v1/charges", json={"feature": "email_finder", "outcome": "maybe"}, headers=team.admin
    )
    assert "deliverable" in assert_problem(r, 422, "unknown_outcome")["valid"]


def test_a_hold_reserves_then_capture_charges_what_was_used_and_returns_the_rest(
    api: Api,
) -> None:
    team = api.new_team(credits=100)
    hold = api.client.post(
        "/v1/holds", json={"feature": "email_finder", "quantity": 4}, headers=team.admin
    )
    assert hold.status_code == 201
    h = hold.json()
    assert h["credits"] == 20 and h["expires_at"]
    assert api.available(team) == 80
    cap = api.client.post(
        f"/v1/holds/{h['hold_id']}/capture",
        json={"outcome": "deliverable", "quantity": 1},
        headers=team.admin,
    )
    assert cap.status_code == 201
    assert cap.json()["credits"] == 5 and cap.json()["returned"] == 15
    assert api.available(team) == 95
    again = api.client.post(f"/v1/holds/{h['hold_id']}/release", headers=team.admin)
    assert assert_problem(again, 409, "hold_not_active")["hold_status"] == "captured"


def test_a_released_hold_gives_everything_back_and_a_capture_above_it_is_refused(
    api: Api,
) -> None:
    team = api.new_team(credits=100)
    h = api.client.post("/v1/holds", json={"feature": "email_finder"}, headers=team.admin).json()
    over = api.client.post(
        f"/v1/holds/{h['hold_id']}/capture",
        json={"outcome": "deliverable", "quantity": 3},
        headers=team.admin,
    )
    assert_problem(over, 409, "capture_exceeds_hold")
    released = api.client.post(f"/v1/holds/{h['hold_id']}/release", headers=team.admin)
    assert released.status_code == 200
    assert released.json() == {"hold_id": h["hold_id"], "released": 5, "status": "released"}
    assert api.available(team) == 100


def test_a_retried_charge_answers_the_first_status_and_body_with_one_effect(api: Api) -> None:
    team = api.new_team(credits=100)
    body = {"feature": "email_finder", "outcome": "deliverable"}
    headers = {**team.admin, "Idempotency-Key": "order-42"}
    first = api.client.post("/v1/charges", json=body, headers=headers)
    second = api.client.post("/v1/charges", json=body, headers=headers)
    # Omitting a default (quantity 1) is the same request.
    third = api.client.post("/v1/charges", json={**body, "quantity": 1}, headers=headers)
    assert first.status_code == second.status_code == third.status_code == 201
    assert first.json() == second.json() == third.json()
    assert api.available(team) == 95
    other = api.client.post("/v1/charges", json={**body, "outcome": "risky"}, headers=headers)
    assert assert_problem(other, 409, "idempotency_conflict")["idempotency_key"] == "order-42"
    held = api.client.post("/v1/holds", json={"feature": "email_finder"}, headers=headers)
    assert_problem(held, 409, "idempotency_conflict")
    assert api.available(team) == 95


def test_a_refused_request_records_nothing_so_its_key_works_after_a_top_up(api: Api) -> None:
    team = api.new_team(credits=3)
    headers = {**team.admin, "Idempotency-Key": "retry-me"}
    body = {"feature": "email_finder", "outcome": "deliverable"}
    assert_problem(
        api.client.post("/v1/charges", json=body, headers=headers), 402, "insufficient_credits"
    )
    api.grant(team.id, 10)
    ok = api.client.post("/v1/charges", json=body, headers=headers)
    assert ok.status_code == 201 and ok.json()["credits"] == 5


def test_holds_captures_releases_and_grants_honour_idempotency_keys(api: Api) -> None:
    team = api.new_team(credits=100)
    k = {**team.admin, "Idempotency-Key": "h-1"}
    h1 = api.client.post("/v1/holds", json={"feature": "phone_finder"}, headers=k)
    h2 = api.client.post("/v1/holds", json={"feature": "phone_finder"}, headers=k)
    assert h1.json() == h2.json() and api.available(team) == 80
    hold_id = h1.json()["hold_id"]
    c = {**team.admin, "Idempotency-Key": "c-1"}
    c1 = api.client.post(f"/v1/holds/{hold_id}/capture", json={"outcome": "found"}, headers=c)
    c2 = api.client.post(f"/v1/holds/{hold_id}/capture", json={"outcome": "found"}, headers=c)
    assert c1.status_code == c2.status_code == 201 and c1.json() == c2.json()
    g = {**api.op, "Idempotency-Key": "gift-1"}
    grant = {"credits": 50, "category": "free", "reason": "sorry"}
    g1 = api.client.post(f"/v1/teams/{team.id}/grants", json=grant, headers=g)
    g2 = api.client.post(f"/v1/teams/{team.id}/grants", json=grant, headers=g)
    assert g1.status_code == g2.status_code == 201 and g1.json() == g2.json()
    assert api.available(team) == 130


def test_an_expired_hold_cannot_be_captured(api: Api) -> None:
    team = api.new_team(credits=100)
    h = api.client.post(
        "/v1/holds", json={"feature": "phone_finder", "ttl_seconds": 60}, headers=team.admin
    ).json()
    api.clock.advance(timedelta(seconds=61))
    assert api.available(team) == 100
    r = api.client.post(
        f"/v1/holds/{h['hold_id']}/capture", json={"outcome": "found"}, headers=team.admin
    )
    assert assert_problem(r, 409, "hold_not_active")["hold_status"] == "expired"
