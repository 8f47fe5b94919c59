"""Per-member monthly caps set by admins, enforced on charges and holds."""

from __future__ import annotations

from datetime import UTC, datetime

from api_helpers import Api, Team, assert_problem, bearer


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


# ---- per-API-key caps ------------------------------------------------------------------


def _key(api: Api, team: Team, member_id: str, **body: object) -> tuple[str, dict[str, str]]:
    r = api.client.post(f"/v1/members/{member_id}/api-keys", json=body, headers=team.admin)
    assert r.status_code == 201, r.text
    return r.json()["key_id"], bearer(r.json()["api_key"])


def test_a_key_over_its_cap_is_refused_while_its_members_other_key_still_spends(
    api: Api,
) -> None:
    team = api.new_team(credits=1000)
    member_id, personal = api.add_member(team, "max@acme.example")
    key_id, crm = _key(api, team, member_id, label="crm sync", monthly_cap=10)
    body = {"feature": "email_finder", "outcome": "deliverable"}  # 5 credits
    for _ in range(2):
        assert api.client.post("/v1/charges", json=body, headers=crm).status_code == 201
    over = assert_problem(
        api.client.post("/v1/charges", json=body, headers=crm), 402, "key_cap_exceeded"
    )
    assert (over["cap"], over["spent"], over["needed"]) == (10, 10, 5)
    assert over["api_key_id"] == key_id and "crm sync" in over["detail"]
    assert_problem(
        api.client.post("/v1/holds", json={"feature": "linkedin_enrichment"}, headers=crm),
        402,
        "key_cap_exceeded",
    )
    # The cap is the key's: the member's own key is not stopped by it.
    assert api.client.post("/v1/charges", json=body, headers=personal).status_code == 201
    detail = api.client.get(f"/v1/api-keys/{key_id}", headers=team.admin).json()
    assert (detail["monthly_cap"], detail["spent_this_month"]) == (10, 10)
    member = api.client.get(f"/v1/members/{member_id}", headers=team.admin).json()
    assert member["spent_this_month"] == 15  # both keys spend the member's month
    assert api.available(team) == 985
    assert api.book.audit().clean


def test_the_tighter_of_the_members_cap_and_the_keys_cap_refuses(api: Api) -> None:
    team = api.new_team(credits=1000)
    member_id, _ = api.add_member(team, "max@acme.example", cap=12)
    _, key = _key(api, team, member_id, monthly_cap=100)
    body = {"feature": "email_finder", "outcome": "deliverable"}
    for _ in range(2):
        assert api.client.post("/v1/charges", json=body, headers=key).status_code == 201
    assert_problem(
        api.client.post("/v1/charges", json=body, headers=key), 402, "member_cap_exceeded"
    )


def test_an_admin_sets_changes_and_removes_a_keys_cap_and_it_applies_at_once(api: Api) -> None:
    team = api.new_team(credits=1000)
    member_id, _ = api.add_member(team, "max@acme.example")
    key_id, key = _key(api, team, member_id)
    body = {"feature": "phone_finder", "outcome": "found"}  # 20 credits
    assert api.client.post("/v1/charges", json=body, headers=key).status_code == 201
    r = api.client.patch(f"/v1/api-keys/{key_id}", json={"monthly_cap": 30}, headers=team.admin)
    assert r.status_code == 200, r.text
    assert (r.json()["monthly_cap"], r.json()["spent_this_month"]) == (30, 20)
    assert_problem(api.client.post("/v1/charges", json=body, headers=key), 402, "key_cap_exceeded")
    listed = api.client.get("/v1/api-keys", headers=team.admin).json()
    assert {k["key_id"]: k["monthly_cap"] for k in listed}[key_id] == 30
    r = api.client.patch(f"/v1/api-keys/{key_id}", json={"monthly_cap": None}, headers=team.admin)
    assert r.status_code == 200 and r.json()["monthly_cap"] is None
    assert api.client.post("/v1/charges", json=body, headers=key).status_code == 201
    assert api.available(team) == 960


def test_key_caps_are_for_admins_of_the_team_and_only_on_live_keys(api: Api) -> None:
    team = api.new_team(credits=100)
    other = api.new_team(name="Other")
    member_id, member = api.add_member(team, "max@acme.example")
    key_id, _ = _key(api, team, member_id)
    cap = {"monthly_cap": 5}
    assert_problem(
        api.client.patch(f"/v1/api-keys/{key_id}", json=cap, headers=member), 403, "forbidden"
    )
    assert_problem(api.client.get(f"/v1/api-keys/{key_id}", headers=member), 403, "forbidden")
    assert_problem(
        api.client.patch(f"/v1/api-keys/{key_id}", json=cap, headers=other.admin), 404, "not_found"
    )
    bad = api.client.patch(f"/v1/api-keys/{key_id}", json={"monthly_cap": -1}, headers=team.admin)
    assert_problem(bad, 422, "validation_error")
    assert_problem(
        api.client.patch(f"/v1/api-keys/{key_id}", json={}, headers=team.admin),
        422,
        "validation_error",
    )
    api.client.delete(f"/v1/api-keys/{key_id}", headers=team.admin)
    revoked = assert_problem(
        api.client.patch(f"/v1/api-keys/{key_id}", json=cap, headers=team.admin), 409, "key_revoked"
    )
    assert revoked["key_id"] == key_id
    assert (
        api.client.get(f"/v1/api-keys/{key_id}", headers=team.admin).json()["monthly_cap"] is None
    )
