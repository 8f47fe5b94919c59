"""Service keys: the platform's own code spends and settles, and is never an admin.

An admin issues a key with ``kind: "service"`` for a member account (an
integration's, or its own). The key spends, settles any hold and sees every
job of its team (tests/api/test_api_hold_ownership.py,
tests/api/test_api_job_ownership.py), and reaches no admin endpoint even when
its member is an admin.
"""

from __future__ import annotations

from api_helpers import Api, assert_problem, bearer


def test_an_admin_issues_a_service_key_and_every_key_says_its_kind(api: Api) -> None:
    team = api.new_team()
    member_id, member = api.add_member(team, "workers@acme.example")
    made = api.client.post(
        f"/v1/members/{member_id}/api-keys",
        json={"label": "workers", "kind": "service"},
        headers=team.admin,
    )
    assert made.status_code == 201, made.text
    assert made.json()["kind"] == "service" and made.json()["api_key"].startswith("cbk.")
    personal = api.client.post(f"/v1/members/{member_id}/api-keys", headers=team.admin)
    assert personal.status_code == 201 and personal.json()["kind"] == "personal"
    kinds = {
        k["key_id"]: k["kind"] for k in api.client.get("/v1/api-keys", headers=team.admin).json()
    }
    assert kinds[made.json()["key_id"]] == "service"
    assert kinds[personal.json()["key_id"]] == "personal"
    assert set(kinds.values()) == {"personal", "service"}  # the admin's own key is personal
    one = api.client.get(f"/v1/api-keys/{made.json()['key_id']}", headers=team.admin)
    assert one.json()["kind"] == "service"
    bad = api.client.post(
        f"/v1/members/{member_id}/api-keys", json={"kind": "root"}, headers=team.admin
    )
    assert_problem(bad, 422, "validation_error")
    refused = api.client.post(
        f"/v1/members/{member_id}/api-keys", json={"kind": "service"}, headers=member
    )
    assert_problem(refused, 403, "forbidden")


def test_a_service_key_spends_but_reaches_no_admin_endpoint_even_on_an_admins_account(
    api: Api,
) -> None:
    team = api.new_team(credits=100)
    made = api.client.post(
        f"/v1/members/{team.admin_id}/api-keys", json={"kind": "service"}, headers=team.admin
    )
    service = bearer(made.json()["api_key"])
    other_id, _ = api.add_member(team, "other@acme.example")
    calls = [
        ("post", "/v1/members", {"email": "new@acme.example"}),
        ("patch", f"/v1/members/{other_id}", {"monthly_cap": 5}),
        ("delete", f"/v1/members/{other_id}", None),
        ("post", f"/v1/members/{other_id}/api-keys", {"kind": "personal"}),
        ("get", "/v1/api-keys", None),
        ("patch", f"/v1/api-keys/{made.json()['key_id']}", {"monthly_cap": None}),
        ("delete", f"/v1/api-keys/{made.json()['key_id']}", None),
        ("post", "/v1/purchases", {"credits": 1000}),
        ("get", "/v1/settings", None),
        ("put", "/v1/enrichment-settings", {"auto_resume": True}),
        ("get", f"/v1/teams/{team.id}", None),
    ]
    for method, path, body in calls:
        kwargs = {"json": body} if body is not None else {}
        r = api.client.request(method.upper(), path, headers=service, **kwargs)
        assert_problem(r, 403, "forbidden")
    charged = api.client.post(
        "/v1/charges", json={"feature": "email_finder", "outcome": "deliverable"}, headers=service
    )
    assert charged.status_code == 201, charged.text
    assert api.available(team) == 95  # nothing bought, one charge spent
    assert api.client.get(f"/v1/members/{other_id}", headers=team.admin).json()["active"] is True
