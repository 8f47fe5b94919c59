"""Operator plan, seats and status changes, and caps counted over the billing period."""

from __future__ import annotations

from datetime import UTC, datetime

from api_helpers import Api, assert_problem, bearer


def test_a_team_created_on_a_plan_gets_its_seats_allowance(api: Api) -> None:
    r = api.client.post(
        "/v1/teams",
        json={"name": "Pro", "plan": "email_pro", "seats": 2, "admin_email": "a@pro.example"},
        headers=api.op,
    )
    assert r.status_code == 201, r.text
    team = r.json()["team"]
    assert (team["plan"], team["seats"], team["subscription_status"]) == ("email_pro", 2, "active")
    admin = bearer(r.json()["admin_api_key"])
    credits = api.client.get("/v1/credits", headers=admin).json()
    assert credits["buckets"]["subscription"] == 2000


def test_the_operator_changes_plan_seats_and_cancels_and_reactivates(api: Api) -> None:
    team = api.new_team()
    seats_first = api.client.patch(f"/v1/teams/{team.id}", json={"seats": 3}, headers=api.op)
    assert_problem(seats_first, 409, "not_subscribed")
    subscribed = api.client.patch(
        f"/v1/teams/{team.id}", json={"plan": "email_pro", "seats": 2}, headers=api.op
    )
    assert subscribed.status_code == 200, subscribed.text
    assert (subscribed.json()["plan"], subscribed.json()["seats"]) == ("email_pro", 2)
    more = api.client.patch(f"/v1/teams/{team.id}", json={"seats": 3}, headers=api.op)
    assert more.json()["seats"] == 3
    cancelled = api.client.patch(
        f"/v1/teams/{team.id}", json={"status": "cancelled"}, headers=api.op
    )
    assert cancelled.json()["subscription_status"] == "cancelled"
    assert cancelled.json()["status"] == "active"
    back = api.client.patch(f"/v1/teams/{team.id}", json={"status": "active"}, headers=api.op)
    assert back.json()["subscription_status"] == "active"
    unknown = api.client.patch(f"/v1/teams/{team.id}", json={"plan": "gold"}, headers=api.op)
    assert_problem(unknown, 422, "unknown_plan")


def test_a_cap_month_is_the_billing_period_when_the_team_has_a_subscription(api: Api) -> None:
    api.clock.set(datetime(2026, 1, 15, 9, 30, tzinfo=UTC))
    r = api.client.post(
        "/v1/teams",
        json={"name": "Pro", "plan": "email_pro", "admin_email": "a@pro.example"},
        headers=api.op,
    )
    team_id = r.json()["team"]["id"]
    admin = bearer(r.json()["admin_api_key"])
    api.grant(team_id, 100)
    made = api.client.post(
        "/v1/members", json={"email": "m@pro.example", "monthly_cap": 5}, headers=admin
    )
    member = bearer(made.json()["api_key"])
    body = {"feature": "email_finder", "outcome": "deliverable"}
    assert api.client.post("/v1/charges", json=body, headers=member).status_code == 201
    # 1 February starts a calendar month but not a billing period (15th to 15th).
    api.clock.set(datetime(2026, 2, 1, 12, 0, tzinfo=UTC))
    assert_problem(
        api.client.post("/v1/charges", json=body, headers=member), 402, "member_cap_exceeded"
    )
    api.clock.set(datetime(2026, 2, 15, 9, 31, tzinfo=UTC))
    assert api.client.post("/v1/charges", json=body, headers=member).status_code == 201
