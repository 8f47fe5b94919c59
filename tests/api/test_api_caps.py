"""Per-member monthly caps set by admins, enforced on charges and holds."""

from __future__ import annotations

from datetime import UTC, datetime

from api_helpers import Api, assert_problem


def test_a_member_over_their_cap_is_refused_on_charges_and_holds(api: Api) -> None:
    team = api.new_team(credits=1000)
    member_id, member = api.add_member(team, "max@acme.example", cap=25)
    ok = api.client.post(
        "/v1/charges", json={"feature": "phone_finder", "outcome": "found"}, headers=member
    )
    assert ok.status_code == 201
    charge = api.client.post(
        "/v1/charges", json={"feature": "email_finder", "outcome": "deliverable"}, headers=member
    )
    assert charge.status_code == 201  # 25 of 25: exactly at the cap
    over = api.client.post(
        "/v1/charges", json={"feature": "linkedin_enrichment", "outcome": "found"}, headers=member
    )
    problem = assert_problem(over, 402, "member_cap_exceeded")
    assert (problem["cap"], problem["spent"], problem["needed"]) == (25, 25, 1)
    hold = api.client.post("/v1/holds", json={"feature": "linkedin_enrichment"}, headers=member)
    assert_problem(hold, 402, "member_cap_exceeded")
    # A non-billable use costs nothing, so the cap does not stop it.
    free = api.client.post(
        "/v1/charges", json={"feature": "email_finder", "outcome": "not_found"}, headers=member
    )
    assert free.status_code == 201
    # The admin is not capped; the member's spending shows on their page.
    assert (
        api.client.post(
            "/v1/charges",
            json={"feature": "email_finder", "outcome": "deliverable"},
            headers=team.admin,
        ).status_code
        == 201
    )
    detail = api.client.get(f"/v1/members/{member_id}", headers=team.admin).json()
    assert detail["spent_this_month"] == 25 and detail["monthly_cap"] == 25
    assert api.available(team) == 970


def test_active_holds_count_against_the_cap_and_a_release_frees_it(api: Api) -> None:
    team = api.new_team(credits=1000)
    _, member = api.add_member(team, "max@acme.example", cap=30)
    h = api.client.post("/v1/holds", json={"feature": "phone_finder"}, headers=member).json()
    second = api.client.post("/v1/holds", json={"feature": "phone_finder"}, headers=member)
    assert_problem(second, 402, "member_cap_exceeded")
    api.client.post(f"/v1/holds/{h['hold_id']}/release", headers=member)
    again = api.client.post("/v1/holds", json={"feature": "phone_finder"}, headers=member)
    assert again.status_code == 201
    captured = api.client.post(
        f"/v1/holds/{again.json()['hold_id']}/capture", json={"outcome": "found"}, headers=member
    )
    assert captured.status_code == 201  # the capture replaces the hold: no double count


def test_an_admin_raises_or_removes_a_cap_and_it_applies_at_once(api: Api) -> None:
    team = api.new_team(credits=1000)
    member_id, member = api.add_member(team, "max@acme.example", cap=0)
    body = {"feature": "email_finder", "outcome": "deliverable"}
    assert_problem(
        api.client.post("/v1/charges", json=body, headers=member), 402, "member_cap_exceeded"
    )
    r = api.client.patch(f"/v1/members/{member_id}", json={"monthly_cap": 5}, headers=team.admin)
    assert r.status_code == 200 and r.json()["monthly_cap"] == 5
    assert api.client.post("/v1/charges", json=body, headers=member).status_code == 201
    r = api.client.patch(f"/v1/members/{member_id}", json={"role": "member"}, headers=team.admin)
    assert r.json()["monthly_cap"] == 5  # a patch without the cap keeps it
    r = api.client.patch(f"/v1/members/{member_id}", json={"monthly_cap": None}, headers=team.admin)
    assert r.json()["monthly_cap"] is None
    assert api.client.post("/v1/charges", json=body, headers=member).status_code == 201


def test_the_cap_month_is_the_calendar_month_in_the_teams_time_zone(api: Api) -> None:
    # 23:30 UTC on 31 Jan is already 1 Feb in Paris: a new cap month there.
    api.clock.set(datetime(2026, 1, 31, 22, 0, tzinfo=UTC))
    team = api.new_team(time_zone="Europe/Paris", credits=1000)
    _, member = api.add_member(team, "max@acme.example", cap=5)
    body = {"feature": "email_finder", "outcome": "deliverable"}
    assert api.client.post("/v1/charges", json=body, headers=member).status_code == 201
    assert_problem(
        api.client.post("/v1/charges", json=body, headers=member), 402, "member_cap_exceeded"
    )
    api.clock.set(datetime(2026, 1, 31, 23, 30, tzinfo=UTC))
    assert api.client.post("/v1/charges", json=body, headers=member).status_code == 201
