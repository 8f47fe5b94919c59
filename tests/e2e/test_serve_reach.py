"""End to end: inside a team, a member reaches only its own holds and jobs (``creditbook serve``).

The security review's reproductions, against a real server process with its
default group commit: a member capped at 0 capturing an admin's 100-credit
hold, and a member reading an admin's enrichment job and its leads. Both are
404 now, exactly as for another team; a service key settles a member's hold
and the capture is booked to the member.
"""

from __future__ import annotations

import httpx
from e2e_helpers import OPERATOR_KEY, Server

LEAD = {"first_name": "Grace", "last_name": "Hopper", "company_domain": "navy.example",
        "email": "grace@navy.example", "phone": "+1 202 555 0100"}  # fmt: skip


def _not_found(answer: httpx.Response) -> None:
    assert answer.status_code == 404, answer.text
    assert answer.json()["code"] == "not_found"
    assert "Grace" not in answer.text


def test_a_member_reaches_no_other_members_hold_or_job_and_a_service_key_settles(
    server: Server,
) -> None:
    with server.client(OPERATOR_KEY) as op:
        made = op.post("/v1/teams", json={"name": "Reach", "admin_email": "ada@reach.example"})
        assert made.status_code == 201, made.text
        team_id, admin_key = made.json()["team"]["id"], made.json()["admin_api_key"]
        op.post(
            f"/v1/teams/{team_id}/grants",
            json={"credits": 1000, "category": "purchased", "reason": "bought"},
        ).raise_for_status()
    with server.client(admin_key) as admin:
        added = admin.post("/v1/members", json={"email": "max@reach.example", "monthly_cap": 0})
        member_id, member_key = added.json()["member"]["id"], added.json()["api_key"]
        held = admin.post("/v1/holds", json={"feature": "phone_finder", "quantity": 5}).json()
        assert held["credits"] == 100
        job = admin.post(
            "/v1/enrichment-jobs",
            json={"leads": [LEAD], "features": ["email_finder"], "estimate_only": True},
        ).json()["job"]
    with server.client(member_key) as member:
        _not_found(member.post(f"/v1/holds/{held['hold_id']}/capture", json={"outcome": "found"}))
        _not_found(member.post(f"/v1/holds/{held['hold_id']}/release"))
        _not_found(member.get(f"/v1/holds/{held['hold_id']}"))
        assert member.get("/v1/enrichment-jobs").json()["jobs"] == []
        for path in ("", "/results.csv"):
            _not_found(member.get(f"/v1/enrichment-jobs/{job['id']}{path}"))
        for path in ("/resume", "/cancel"):
            _not_found(member.post(f"/v1/enrichment-jobs/{job['id']}{path}"))
        _not_found(member.get(f"/api/enrich/{job['id']}"))
    with server.client(admin_key) as admin:
        assert admin.get(f"/v1/holds/{held['hold_id']}").json()["status"] == "active"
        assert admin.get(f"/v1/members/{member_id}").json()["spent_this_month"] == 0
        assert admin.get(f"/v1/enrichment-jobs/{job['id']}").json()["job"]["status"] == "paused"
        bobs = admin.post("/v1/members", json={"email": "bob@reach.example"}).json()
        workers = admin.post("/v1/members", json={"email": "workers@reach.example"}).json()
        service_key = admin.post(
            f"/v1/members/{workers['member']['id']}/api-keys", json={"kind": "service"}
        ).json()["api_key"]
    with server.client(bobs["api_key"]) as bob:
        his = bob.post("/v1/holds", json={"feature": "phone_finder"}).json()["hold_id"]
    with server.client(service_key) as service:
        assert len(service.get("/v1/enrichment-jobs").json()["jobs"]) == 1
        captured = service.post(f"/v1/holds/{his}/capture", json={"outcome": "found"})
        assert captured.status_code == 201 and captured.json()["credits"] == 20
    with server.client(admin_key) as admin:
        entries = admin.get("/v1/ledger", params={"kind": "capture"}).json()["entries"]
        assert [(e["hold_id"], e["member_id"]) for e in entries] == [(his, bobs["member"]["id"])]
