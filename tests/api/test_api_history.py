"""The ledger's cursor pages and usage reports (JSON and CSV)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from api_helpers import Api, Team, assert_problem

from creditbook import Actor


def _spend(api: Api, team: Team, headers: dict[str, str], feature: str, outcome: str) -> None:
    r = api.client.post(
        "/v1/charges", json={"feature": feature, "outcome": outcome}, headers=headers
    )
    assert r.status_code == 201, r.text


def test_the_ledger_pages_newest_first_and_filters(api: Api) -> None:
    team = api.new_team(credits=1000)
    for _ in range(3):
        _spend(api, team, team.admin, "email_finder", "deliverable")
        api.clock.advance(timedelta(seconds=1))
    _spend(api, team, team.admin, "phone_finder", "found")
    seen: list[str] = []
    cursor = None
    while True:
        url = "/v1/ledger?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.client.get(url, headers=team.admin).json()
        seen += [e["id"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)  # 1 grant + 4 charges
    emails = api.client.get("/v1/ledger?feature=email_finder", headers=team.admin).json()
    assert [e["credits"] for e in emails["entries"]] == [5, 5, 5]
    grants = api.client.get("/v1/ledger?kind=grant", headers=team.admin).json()["entries"]
    assert len(grants) == 1 and grants[0]["postings"][0]["account"] in ("issued", "available")
    start = api.clock.now() - timedelta(seconds=1)
    late = api.client.get(
        "/v1/ledger", params={"from": start.isoformat()}, headers=team.admin
    ).json()["entries"]
    assert [e["feature"] for e in late] == ["phone_finder", "email_finder"]


def test_usage_groups_by_feature_member_and_local_day(api: Api) -> None:
    api.clock.set(datetime(2026, 3, 10, 22, 30, tzinfo=UTC))  # 23:30 in Paris, 10 March
    team = api.new_team(time_zone="Europe/Paris", credits=1000)
    member_id, member = api.add_member(team, "max@acme.example")
    _spend(api, team, member, "email_finder", "deliverable")
    _spend(api, team, member, "email_finder", "not_found")
    api.clock.advance(timedelta(hours=1))  # 00:30 on 11 March in Paris, still 10th in UTC
    _spend(api, team, team.admin, "phone_finder", "found")
    window = {"from": "2026-03-01T00:00:00+01:00", "to": "2026-04-01T00:00:00+02:00"}
    by_feature = api.client.get(
        "/v1/usage", params={"group_by": "feature", **window}, headers=team.admin
    ).json()
    assert by_feature["total_credits"] == 25
    assert by_feature["rows"] == [
        {"key": "email_finder", "credits": 5, "uses": 1, "attempts": 1},
        {"key": "phone_finder", "credits": 20, "uses": 1, "attempts": 0},
    ]
    by_member = api.client.get(
        "/v1/usage", params={"group_by": "member", **window}, headers=team.admin
    ).json()
    assert {r["key"]: r["credits"] for r in by_member["rows"]} == {
        member_id: 5,
        team.admin_id: 20,
    }
    by_day = api.client.get(
        "/v1/usage", params={"group_by": "day", **window}, headers=team.admin
    ).json()
    assert [(r["key"], r["credits"]) for r in by_day["rows"]] == [
        ("2026-03-10", 5),
        ("2026-03-11", 20),
    ]
    csv_text = api.client.get(
        "/v1/usage.csv", params={"group_by": "day", **window}, headers=team.admin
    )
    assert csv_text.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(csv_text.text)))
    assert rows == [
        ["day", "credits", "uses", "attempts"],
        ["2026-03-10", "5", "1", "1"],
        ["2026-03-11", "20", "1", "0"],
    ]


def test_a_member_sees_only_their_own_history(api: Api) -> None:
    team = api.new_team(credits=1000)
    member_id, member = api.add_member(team, "max@acme.example")
    _spend(api, team, member, "email_finder", "deliverable")
    _spend(api, team, team.admin, "phone_finder", "found")
    mine = api.client.get("/v1/usage?group_by=member", headers=member).json()
    assert [(r["key"], r["credits"]) for r in mine["rows"]] == [(member_id, 5)]
    entries = api.client.get("/v1/ledger", headers=member).json()["entries"]
    assert {e["member_id"] for e in entries} == {member_id}
    other = api.client.get(f"/v1/ledger?member={team.admin_id}", headers=member)
    assert_problem(other, 403, "forbidden")


def test_usage_refuses_a_backwards_window(api: Api) -> None:
    team = api.new_team()
    r = api.client.get(
        "/v1/usage",
        params={"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        headers=team.admin,
    )
    assert_problem(r, 422, "validation_error")


def test_usage_groups_by_api_key_and_by_enrichment_job(api: Api) -> None:
    team = api.new_team(credits=1000)
    member_id, personal = api.add_member(team, "max@acme.example")
    made = api.client.post(
        f"/v1/members/{member_id}/api-keys", json={"label": "crm"}, headers=team.admin
    ).json()
    crm = {"Authorization": f"Bearer {made['api_key']}"}
    _spend(api, team, personal, "email_finder", "deliverable")
    _spend(api, team, crm, "phone_finder", "found")
    _spend(api, team, crm, "phone_finder", "not_found")
    by_key = api.client.get("/v1/usage?group_by=api_key", headers=team.admin).json()
    rows = {r["key"]: (r["credits"], r["uses"], r["attempts"]) for r in by_key["rows"]}
    assert rows[made["key_id"]] == (20, 1, 1)
    assert sum(credits for credits, _, _ in rows.values()) == 25
    assert len(rows) == 2  # the member's own key and the crm key
    # Charges made by a job carry its id; others have none (key null).
    api.book.charge(team.id, "linkedin_enrichment", outcome="found", actor=Actor(job_id="job_x"))
    by_job = api.client.get("/v1/usage?group_by=job", headers=team.admin).json()
    assert [(r["key"], r["credits"]) for r in by_job["rows"]] == [("job_x", 1), (None, 25)]
    exported = api.client.get("/v1/usage.csv?group_by=api_key", headers=team.admin).text
    assert exported.splitlines()[0] == "api_key,credits,uses,attempts"
    assert f"{made['key_id']},20,1,1" in exported.splitlines()
    bad = api.client.get("/v1/usage?group_by=planet", headers=team.admin)
    assert_problem(bad, 422, "validation_error")
