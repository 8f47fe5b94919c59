"""The dashboard through FastAPI's TestClient: sessions, CSRF, roles, pages, CSV, charts."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import creditbook
from creditbook.config import Settings
from creditbook.domain.clock import FrozenClock
from creditbook.domain.ledger import Actor
from creditbook.entrypoints.api import create_app
from creditbook.entrypoints.web import charts
from creditbook.service.access import AccessService

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SECRET = "dashboard-tests-secret-key-0123456789abcdef"


@dataclass
class World:
    book: creditbook.Creditbook
    access: AccessService
    app: object
    team_id: str
    admin_id: str
    member_id: str
    admin_key: str
    member_key: str
    member_key_id: str

    def client(self, base_url: str = "http://testserver") -> TestClient:
        return TestClient(self.app, base_url=base_url)  # type: ignore[arg-type]


@pytest.fixture
def world(tmp_path: Path, clock: FrozenClock) -> Iterator[World]:
    book = creditbook.open(f"sqlite:///{tmp_path / 'web.db'}", clock=clock)
    access = AccessService(book.kernel).install()
    team, admin, admin_key = access.create_team("Acme", time_zone="UTC", admin_email="a@x.io")
    member, member_key = access.add_member(team.id, "m@x.io", "member")
    book.grant(team.id, 1_000, reason="welcome")
    book.charge(team.id, "phone_finder", outcome="found", actor=Actor(member_id=member.id))
    book.charge(team.id, "email_finder", outcome="deliverable", actor=Actor(member_id=admin.id))
    app = create_app(book, Settings(env="test", secret_key=SECRET, operator_key=SECRET))
    yield World(
        book,
        access,
        app,
        team.id,
        admin.id,
        member.id,
        admin_key.api_key,
        member_key.api_key,
        member_key.key_id,
    )
    assert book.engine is not None
    book.engine.dispose()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def sign_in(client: TestClient, key: str) -> str:
    page = client.get("/dashboard/signin")
    done = client.post(
        "/dashboard/signin",
        data={"csrf": csrf_of(page.text), "api_key": key, "next": "/dashboard/usage"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/dashboard/usage"
    return csrf_of(client.get("/dashboard/").text)


def test_pages_need_a_signed_in_user_and_redirect_to_sign_in(world: World) -> None:
    answer = world.client().get("/dashboard/members", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/signin?next=/dashboard/members"


def test_the_session_cookie_is_httponly_lax_and_holds_no_api_key(world: World) -> None:
    client = world.client()
    page = client.get("/dashboard/signin")
    done = client.post(
        "/dashboard/signin",
        data={"csrf": csrf_of(page.text), "api_key": world.admin_key},
        follow_redirects=False,
    )
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain HTTP in development
    secret_part = world.admin_key.rsplit(".", 1)[-1]
    assert secret_part not in cookie


def test_the_session_cookie_is_secure_over_https(world: World) -> None:
    client = world.client("https://testserver")
    page = client.get("/dashboard/signin")
    assert "Secure" in page.headers["set-cookie"]


def test_a_post_without_the_sessions_csrf_token_is_refused(world: World) -> None:
    client = world.client()
    sign_in(client, world.admin_key)
    before = world.book.balance(world.team_id).available
    forged = client.post("/dashboard/buy", data={"package": "1k", "csrf": "forged"})
    assert forged.status_code == 403
    assert "out of date" in forged.text
    missing = client.post("/dashboard/buy", data={"package": "1k"})
    assert missing.status_code == 403
    assert world.book.balance(world.team_id).available == before


def test_sign_in_refuses_a_wrong_key_and_a_missing_csrf_token(world: World) -> None:
    client = world.client()
    page = client.get("/dashboard/signin")
    wrong = client.post("/dashboard/signin", data={"csrf": csrf_of(page.text), "api_key": "x"})
    assert wrong.status_code == 401
    assert "unknown or revoked" in wrong.text
    no_csrf = client.post("/dashboard/signin", data={"api_key": world.admin_key})
    assert no_csrf.status_code == 403


def test_sign_in_never_redirects_outside_the_dashboard(world: World) -> None:
    client = world.client()
    page = client.get("/dashboard/signin")
    done = client.post(
        "/dashboard/signin",
        data={
            "csrf": csrf_of(page.text),
            "api_key": world.admin_key,
            "next": "https://evil.example/dashboard/",
        },
        follow_redirects=False,
    )
    assert done.headers["location"] == "/dashboard/"


def test_the_admin_buys_and_the_balance_grows_by_what_was_bought(world: World) -> None:
    client = world.client()
    csrf = sign_in(client, world.admin_key)
    before = world.book.balance(world.team_id).available
    done = client.post(
        "/dashboard/buy",
        data={"csrf": csrf, "package": "custom", "credits": "250", "idempotency_key": "t1"},
    )
    assert done.status_code == 200
    assert "Bought 250 credits for 25.00 USD" in done.text
    again = client.post(
        "/dashboard/buy",
        data={"csrf": csrf, "package": "custom", "credits": "250", "idempotency_key": "t1"},
    )
    assert again.status_code == 200
    # The same form token twice is one purchase (a double click buys once).
    assert world.book.balance(world.team_id).available == before + 250


def test_a_member_is_refused_every_admin_action_by_the_server(world: World) -> None:
    client = world.client()
    csrf = sign_in(client, world.member_key)
    before = world.book.balance(world.team_id).available
    for path, data in [
        ("/dashboard/buy", {"package": "1k"}),
        ("/dashboard/settings", {"low_balance_threshold": "5"}),
        (f"/dashboard/members/{world.member_id}", {"role": "admin", "monthly_cap": ""}),
        ("/dashboard/purchases/pur_x/refund", {}),
    ]:
        answer = client.post(path, data={"csrf": csrf, **data}, headers={"referer": ""})
        assert answer.status_code == 403, path
        assert "only team admins" in answer.text
    assert world.book.balance(world.team_id).available == before
    assert world.access.get_member(world.team_id, world.member_id).role.value == "member"
    page = client.get("/dashboard/buy")
    assert "Only team admins can buy credits" in page.text
    assert "a@x.io" in page.text
    assert 'action="/dashboard/buy"' not in page.text


def test_a_member_sees_only_their_own_history(world: World) -> None:
    client = world.client()
    sign_in(client, world.member_key)
    page = client.get("/dashboard/usage")
    assert "phone_finder" in page.text
    assert "email_finder</td>" not in page.text
    other = client.get(f"/dashboard/usage?member={world.admin_id}")
    assert other.status_code == 403
    exported = client.get("/dashboard/usage.csv")
    assert "phone_finder" in exported.text and "email_finder" not in exported.text


def test_a_revoked_key_ends_its_dashboard_session(world: World) -> None:
    client = world.client()
    sign_in(client, world.member_key)
    world.access.revoke_key(world.team_id, world.member_key_id)
    answer = client.get("/dashboard/", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/dashboard/signin")


def test_the_admin_changes_a_members_cap(world: World) -> None:
    client = world.client()
    csrf = sign_in(client, world.admin_key)
    done = client.post(
        f"/dashboard/members/{world.member_id}",
        data={"csrf": csrf, "role": "member", "monthly_cap": "300"},
    )
    assert "300 credits a month" in done.text
    assert world.access.get_member(world.team_id, world.member_id).monthly_cap == 300


def test_a_bad_form_value_comes_back_as_a_message_not_a_crash(world: World) -> None:
    client = world.client()
    csrf = sign_in(client, world.admin_key)
    done = client.post(
        "/dashboard/buy",
        data={"csrf": csrf, "package": "custom", "credits": "3"},
        headers={"referer": "http://testserver/dashboard/buy"},
    )
    assert done.status_code == 200
    assert "between 100 and 1000000 credits" in done.text


def test_the_ledger_csv_has_one_row_per_entry_with_the_filter(world: World) -> None:
    client = world.client()
    sign_in(client, world.admin_key)
    answer = client.get("/dashboard/usage.csv?feature=email_finder")
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    lines = answer.text.strip().splitlines()
    assert lines[0].startswith("id,created_at,kind,feature")
    assert len(lines) == 2 and ",email_finder,deliverable,1,5,a@x.io," in lines[1]


def test_pages_send_security_headers_and_load_nothing_from_elsewhere(world: World) -> None:
    client = world.client()
    sign_in(client, world.admin_key)
    page = client.get("/dashboard/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    # Nothing is fetched from another origin: no absolute src/href, one script (ours).
    assert not re.search(r'(src|href)="(https?:)?//', page.text)
    assert re.findall(r"<script[^>]*>", page.text) == [
        '<script src="/dashboard/static/dashboard.js" defer>'
    ]
    assert page.text.count("<svg") == 3


def test_the_charts_count_usage_by_feature_and_day_and_the_balance_by_day(
    world: World, clock: FrozenClock
) -> None:
    usage = charts.daily_usage(world.book, world.team_id, 30)
    assert usage.days[-1] == clock.now().date()
    assert usage.values == {
        "email_finder": (0,) * 29 + (5,),
        "phone_finder": (0,) * 29 + (20,),
    }
    mine = charts.daily_usage(world.book, world.team_id, 30, member_id=world.member_id)
    assert set(mine.values) == {"phone_finder"}
    balance = charts.balance_history(world.book, world.team_id, 5)
    assert balance.values["credits"] == (0, 0, 0, 0, 975)
    svg = charts.usage_svg(usage, "Usage")
    assert svg.startswith("<svg") and "<script" not in svg


def test_a_member_cannot_open_a_job_another_member_started(world: World) -> None:
    from creditbook.service.enrichment import enrichment_for

    job = enrichment_for(world.book).create_job(
        world.team_id,
        [{"first_name": "A", "last_name": "B", "company_domain": "b.example"}],
        ["email_finder"],
        member_id=world.admin_id,
        estimate_only=True,
    )
    client = world.client()
    sign_in(client, world.member_key)
    assert client.get(f"/dashboard/enrichment/{job.id}").status_code == 404
    assert client.get(f"/dashboard/enrichment/{job.id}/results.csv").status_code == 404
    assert job.id not in client.get("/dashboard/enrichment").text
    admin = world.client()
    sign_in(admin, world.admin_key)
    page = admin.get(f"/dashboard/enrichment/{job.id}")
    assert page.status_code == 200 and "Start the job" in page.text


def test_the_admin_sees_the_teams_keys_and_caps_one_and_a_member_sees_none(world: World) -> None:
    robot = world.access.issue_key(world.team_id, world.member_id, label="crm sync")
    client = world.client()
    csrf = sign_in(client, world.admin_key)
    page = client.get("/dashboard/members")
    assert 'id="keys"' in page.text and "crm sync" in page.text
    done = client.post(
        f"/dashboard/members/keys/{robot.key_id}", data={"csrf": csrf, "monthly_cap": "0"}
    )
    assert "API key crm sync: 0 credits a month" in done.text
    assert world.access.get_key(world.team_id, robot.key_id).monthly_cap == 0
    actor = Actor(member_id=world.member_id, api_key_id=robot.key_id)
    with pytest.raises(creditbook.KeyCapExceeded):
        world.book.charge(world.team_id, "email_finder", outcome="deliverable", actor=actor)
    cleared = client.post(
        f"/dashboard/members/keys/{robot.key_id}", data={"csrf": csrf, "monthly_cap": ""}
    )
    assert "API key crm sync: no cap" in cleared.text
    bad = client.post(
        f"/dashboard/members/keys/{robot.key_id}",
        data={"csrf": csrf, "monthly_cap": "lots"},
        headers={"referer": "http://testserver/dashboard/members"},
    )
    assert "the monthly cap must be a whole number" in bad.text
    member = world.client()
    member_csrf = sign_in(member, world.member_key)
    assert 'id="keys"' not in member.get("/dashboard/members").text
    refused = member.post(
        f"/dashboard/members/keys/{robot.key_id}", data={"csrf": member_csrf, "monthly_cap": "9"}
    )
    assert refused.status_code == 403
    assert world.access.get_key(world.team_id, robot.key_id).monthly_cap is None


def test_the_admin_sees_usage_by_api_key_and_a_member_does_not(world: World) -> None:
    robot = world.access.issue_key(world.team_id, world.member_id, label="crm sync")
    actor = Actor(member_id=world.member_id, api_key_id=robot.key_id)
    world.book.charge(world.team_id, "phone_finder", outcome="found", actor=actor)
    admin = world.client()
    sign_in(admin, world.admin_key)
    page = admin.get("/dashboard/usage").text
    table = page[page.index('id="usage-by-key"') :]
    assert re.search(r"crm sync</th><td class=\"num\">20</td>", table)
    assert "(no key)" in table  # the fixture's charges name no key
    member = world.client()
    sign_in(member, world.member_key)
    assert 'id="usage-by-key"' not in member.get("/dashboard/usage").text
