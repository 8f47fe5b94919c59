"""Safe to expose, over a real ``creditbook serve``: the Host header, sessions, the operator key.

A sign-in link never takes its host from the request, and a request naming a
host the server is not configured for is refused; a dashboard session ends on
the server (a cookie saved before sign-out, demotion, removal or revocation
signs nobody in); a role change made in the dashboard reaches the API key at
once; only development serves with a short operator key.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from contextlib import closing
from pathlib import Path

import httpx
from e2e_helpers import (
    OPERATOR_KEY,
    Server,
    free_port,
    serve_command,
    serve_env,
    start_server,
    stop_server,
)

LINK = re.compile(r"(\S+)/dashboard/signin/link\?token=(\S+)")


def _team(server: Server) -> tuple[str, str, str]:
    """A new team: its id, its admin's email and API key."""
    email = f"ada-{uuid.uuid4().hex[:8]}@acme.example"
    with server.client(OPERATOR_KEY) as op:
        made = op.post("/v1/teams", json={"name": "Acme", "time_zone": "UTC", "admin_email": email})
    assert made.status_code == 201, made.text
    return made.json()["team"]["id"], email, made.json()["admin_api_key"]


def _member(server: Server, admin_key: str, role: str) -> tuple[str, str]:
    """A new member of the admin's team: its id and API key."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@acme.example"
    with server.client(admin_key) as admin:
        added = admin.post("/v1/members", json={"email": email, "role": role})
    assert added.status_code == 201, added.text
    return added.json()["member"]["id"], added.json()["api_key"]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


def _browser(server: Server, cookie: str | None = None) -> httpx.Client:
    cookies = {"cb_session": cookie} if cookie else None
    return httpx.Client(base_url=server.base_url, cookies=cookies, timeout=30)


def _sign_in(server: Server, api_key: str) -> httpx.Client:
    browser = _browser(server)
    page = browser.get("/dashboard/signin")
    done = browser.post("/dashboard/signin", data={"csrf": _csrf(page.text), "api_key": api_key})
    assert done.status_code == 303, done.text
    assert _signed_in(browser)
    return browser


def _signed_in(browser: httpx.Client) -> bool:
    page = browser.get("/dashboard/")
    assert page.status_code in (200, 303), page.text
    return page.status_code == 200


def _assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


def _links_in_log(server: Server, token_count: int) -> list[tuple[str, str]]:
    """The sign-in links printed on the server's console, once ``token_count`` are there."""
    found: list[tuple[str, str]] = []
    for _ in range(100):
        found = LINK.findall(server.log_path.read_text(errors="replace"))
        if len(found) >= token_count:
            break
        time.sleep(0.1)
    return found


def test_a_request_for_another_host_is_refused_and_links_start_with_the_public_url(
    server: Server,
) -> None:
    _, email, _ = _team(server)
    before = len(LINK.findall(server.log_path.read_text(errors="replace")))
    with httpx.Client(base_url=server.base_url, headers={"Host": "attacker.example"}) as evil:
        page = evil.get("/dashboard/signin")
        csrf = _csrf(page.text) if page.status_code == 200 else "no-form"
        sent = evil.post("/dashboard/signin/link", data={"csrf": csrf, "email": email})
        api = evil.get("/v1/credits", headers={"Authorization": "Bearer x"})
        probe = evil.get("/healthz")
    _assert_problem(page, 400, "host_not_allowed")
    _assert_problem(sent, 400, "host_not_allowed")
    _assert_problem(api, 400, "host_not_allowed")
    assert probe.status_code == 200  # orchestrators probe by the container's address

    with _browser(server) as honest:
        page = honest.get("/dashboard/signin")
        form = {"csrf": _csrf(page.text), "email": email}
        sent = honest.post("/dashboard/signin/link", data=form)
        assert sent.status_code == 303
    links = _links_in_log(server, before + 1)
    assert len(links) == before + 1, "the link asked for on the real host was never sent"
    assert {origin for origin, _ in links} == {server.base_url}


def test_a_cookie_saved_before_sign_out_signs_nobody_in(server: Server) -> None:
    _, _, admin_key = _team(server)
    with closing(_sign_in(server, admin_key)) as browser:
        saved = browser.cookies["cb_session"]
        page = browser.get("/dashboard/")
        out = browser.post("/dashboard/signout", data={"csrf": _csrf(page.text)})
        assert out.status_code == 303
        assert not _signed_in(browser)
    with _browser(server, saved) as replay:
        answer = replay.get("/dashboard/members")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/dashboard/signin")


def test_demoting_removing_or_revoking_the_key_ends_the_dashboard_session(
    server: Server,
) -> None:
    _, _, admin_key = _team(server)
    demoted_id, demoted_key = _member(server, admin_key, "admin")
    removed_id, removed_key = _member(server, admin_key, "member")
    _, revoked_key = _member(server, admin_key, "member")
    revoked_key_id = revoked_key.split(".")[2]
    demoted = _sign_in(server, demoted_key)
    removed = _sign_in(server, removed_key)
    revoked = _sign_in(server, revoked_key)
    bystander = _sign_in(server, admin_key)
    with server.client(admin_key) as admin:
        assert admin.patch(f"/v1/members/{demoted_id}", json={"role": "member"}).status_code == 200
        assert admin.delete(f"/v1/members/{removed_id}").status_code == 200
        assert admin.delete(f"/v1/api-keys/{revoked_key_id}").status_code == 200
    assert not _signed_in(demoted)
    assert not _signed_in(removed)
    assert not _signed_in(revoked)
    assert _signed_in(bystander)  # only the sessions of whom it concerns end
    # The demoted member signs in again, now as a member.
    again = _sign_in(server, demoted_key)
    assert "Only admins change roles and caps" in again.get("/dashboard/members").text
    for browser in (demoted, removed, revoked, bystander, again):
        browser.close()


def test_a_role_change_in_the_dashboard_reaches_the_api_key_at_once(server: Server) -> None:
    _, _, admin_key = _team(server)
    other_id, other_key = _member(server, admin_key, "admin")
    with server.client(other_key) as other:
        assert other.get("/v1/api-keys").status_code == 200  # cached as an admin's key
        with closing(_sign_in(server, admin_key)) as browser:
            page = browser.get("/dashboard/members")
            changed = browser.post(
                f"/dashboard/members/{other_id}",
                data={"csrf": _csrf(page.text), "role": "member", "monthly_cap": ""},
            )
            assert changed.status_code == 303, changed.text
        _assert_problem(other.get("/v1/api-keys"), 403, "forbidden")


def test_serving_outside_development_refuses_a_weak_operator_key(tmp_path: Path) -> None:
    # A missing key is refused the same way (tests/unit/test_config.py).
    env = serve_env(CREDITBOOK_ENV="test", CREDITBOOK_OPERATOR_KEY="short-operator-key")
    url = f"sqlite:///{tmp_path / 'refused.db'}"
    done = subprocess.run(
        serve_command(url, free_port()), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "CREDITBOOK_OPERATOR_KEY must be set (32+ characters)" in done.stderr
    assert not (tmp_path / "refused.db").exists()  # refused before the database is opened


def test_development_serves_a_short_operator_key_but_warns(tmp_path: Path) -> None:
    served = start_server(
        f"sqlite:///{tmp_path / 'dev.db'}",
        tmp_path / "dev.log",
        CREDITBOOK_ENV="development",
        CREDITBOOK_OPERATOR_KEY="dev-key",
    )
    try:
        with served.client("dev-key") as op:
            made = op.post(
                "/v1/teams", json={"name": "Dev", "time_zone": "UTC", "admin_email": "a@dev.io"}
            )
            assert made.status_code == 201, made.text
        assert "shorter than 32 characters" in served.log_path.read_text()
    finally:
        stop_server(served)
