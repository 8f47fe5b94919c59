"""End to end: a real ``creditbook serve`` process walked through a team's life over HTTP."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
from e2e_helpers import OPERATOR_KEY, Server


def _team(server: Server, credits: int) -> tuple[str, str]:
    with server.client(OPERATOR_KEY) as op:
        made = op.post(
            "/v1/teams",
            json={"name": "Walk", "time_zone": "Europe/Paris", "admin_email": "ada@walk.example"},
        )
        assert made.status_code == 201, made.text
        team_id = made.json()["team"]["id"]
        granted = op.post(
            f"/v1/teams/{team_id}/grants",
            json={"credits": credits, "category": "purchased", "reason": "bought"},
        )
        assert granted.status_code == 201, granted.text
    return team_id, made.json()["admin_api_key"]


def test_a_team_walks_from_creation_through_charges_holds_and_usage(server: Server) -> None:
    team_id, admin_key = _team(server, 1000)
    with server.client(admin_key) as admin:
        added = admin.post("/v1/members", json={"email": "max@walk.example", "monthly_cap": 30})
        assert added.status_code == 201
        member_id = added.json()["member"]["id"]
        member_key = added.json()["api_key"]
    with server.client(member_key) as member:
        charge = member.post("/v1/charges", json={"feature": "email_finder", "outcome": "risky"})
        assert charge.status_code == 201 and charge.json()["credits"] == 5
        miss = member.post("/v1/charges", json={"feature": "email_finder", "outcome": "unknown"})
        assert miss.json()["credits"] == 0
        hold = member.post("/v1/holds", json={"feature": "phone_finder", "ttl_seconds": 600})
        assert hold.status_code == 201 and hold.json()["credits"] == 20
        hold_id = hold.json()["hold_id"]
        reserved = member.get("/v1/credits").json()
        assert (reserved["available"], reserved["reserved"]) == (975, 20)
        over = member.post("/v1/holds", json={"feature": "email_finder", "quantity": 2})
        assert over.status_code == 402
        assert over.headers["content-type"].startswith("application/problem+json")
        assert over.json()["code"] == "member_cap_exceeded"
        captured = member.post(f"/v1/holds/{hold_id}/capture", json={"outcome": "found"})
        assert captured.status_code == 201 and captured.json()["credits"] == 20
        second = member.post("/v1/holds", json={"feature": "linkedin_enrichment"})
        released = member.post(f"/v1/holds/{second.json()['hold_id']}/release")
        assert released.json()["released"] == 1
        assert member.post("/v1/members", json={"email": "x@walk.example"}).status_code == 403
    with server.client(admin_key) as admin:
        lemlist = admin.get("/api/team/credits").json()
        assert lemlist["credits"] == 975 and lemlist["details"]["remaining"]["paid"] == 975
        usage = admin.get("/v1/usage", params={"group_by": "feature"}).json()
        assert {r["key"]: r["credits"] for r in usage["rows"]} == {
            "email_finder": 5,
            "phone_finder": 20,
        }
        by_member = admin.get("/v1/usage", params={"group_by": "member"}).json()
        assert by_member["rows"] == [{"key": member_id, "credits": 25, "uses": 2, "attempts": 1}]
        csv_text = admin.get("/v1/usage.csv", params={"group_by": "day"}).text
        assert csv_text.splitlines()[0] == "day,credits,uses,attempts"
        kinds = [
            e["kind"] for e in admin.get("/v1/ledger", params={"limit": 100}).json()["entries"]
        ]
        assert sorted(kinds) == sorted(
            ["grant", "charge", "attempt", "hold", "capture", "hold", "release"]
        )
    with server.client(OPERATOR_KEY) as op:
        assert op.get(f"/v1/teams/{team_id}").json()["status"] == "active"


def test_concurrent_requests_with_one_idempotency_key_have_one_effect(server: Server) -> None:
    _, admin_key = _team(server, 500)
    key = f"concurrent-{uuid.uuid4().hex}"
    results: list[httpx.Response] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def send() -> None:
        with server.client(admin_key) as client:
            start.wait()
            r = client.post(
                "/v1/charges",
                json={"feature": "phone_finder", "outcome": "found"},
                headers={"Idempotency-Key": key},
            )
        with lock:
            results.append(r)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [201] * 8
    assert len({r.text for r in results}) == 1
    with server.client(admin_key) as client:
        assert client.get("/v1/credits").json()["available"] == 480
        charges = client.get("/v1/ledger", params={"kind": "charge"}).json()["entries"]
        assert len(charges) == 1


def test_the_served_process_logs_json_lines_with_the_request_id(server: Server) -> None:
    request_id = f"e2e-{uuid.uuid4().hex}"
    with server.client() as client:
        r = client.get("/healthz", headers={"X-Request-ID": request_id})
        assert r.headers["x-request-id"] == request_id
        assert client.get("/openapi.json").json()["info"]["title"] == "creditbook"
        assert client.get("/docs").status_code == 200
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.strip()]
    ours = [line for line in lines if line.get("request_id") == request_id]
    assert ours and ours[0]["path"] == "/healthz" and ours[0]["status"] == 200
    assert all("time" in line and "level" in line for line in lines)
