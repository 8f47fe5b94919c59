"""Rate limits over HTTP: per key, member and team; failed sign-ins per address; links; exports.

Each test builds its own application with small limits (``make_settings``) on a
SQLite book: the limits do not depend on the database. The shared storage is a
real Redis (127.0.0.1:6379) under a prefix of the test's own.
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import OPERATOR_KEY, TestClient, assert_problem, bearer, make_settings

import creditbook
from creditbook.domain.clock import FrozenClock
from creditbook.entrypoints.api import create_app
from creditbook.service.access import AccessService

REDIS_URL = "redis://127.0.0.1:6379/0"
WRONG_KEY = bearer("cbk.team_nope.key_nope.not-a-secret")


@pytest.fixture
def book(tmp_path: Path, clock: FrozenClock) -> Iterator[creditbook.Creditbook]:
    found = creditbook.open(f"sqlite:///{tmp_path / 'limits.db'}", clock=clock)
    yield found
    assert found.engine is not None
    found.engine.dispose()


@pytest.fixture
def access(book: creditbook.Creditbook) -> AccessService:
    return AccessService(book.kernel).install()


def _team(access: AccessService, email: str = "ada@acme.example") -> tuple[str, str, str]:
    team, admin, key = access.create_team("Acme", time_zone="UTC", admin_email=email)
    return team.id, admin.id, key.api_key


def _redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _retry_after(response: Any) -> int:
    assert_problem(response, 429, "rate_limited")
    seconds = int(response.headers["retry-after"])
    assert seconds >= 1
    assert response.json()["retry_after"] > 0
    return seconds


def test_a_members_api_keys_share_one_member_budget(
    book: creditbook.Creditbook, access: AccessService
) -> None:
    team_id, admin_id, first = _team(access)
    second = access.issue_key(team_id, admin_id).api_key
    app = create_app(book, make_settings(rate_limit_requests=3, rate_limit_window_seconds=60))
    with TestClient(app) as client:
        assert [client.get("/v1/credits", headers=bearer(first)).status_code for _ in range(3)] == [
            200
        ] * 3
        # A second key of the same member is no way around the member's limit.
        refused = client.get("/v1/credits", headers=bearer(second))
        assert "member" in refused.json()["detail"]
        assert _retry_after(refused) <= 60


def test_a_key_keeps_its_own_limit_under_a_larger_member_limit(
    book: creditbook.Creditbook, access: AccessService
) -> None:
    team_id, admin_id, first = _team(access)
    second = access.issue_key(team_id, admin_id).api_key
    settings = make_settings(
        rate_limit_requests=2, rate_limit_window_seconds=60, rate_limit_member_requests=3
    )
    with TestClient(create_app(book, settings)) as client:
        answers = [client.get("/v1/credits", headers=bearer(first)) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert "this API key" in answers[-1].json()["detail"]
        assert client.get("/v1/credits", headers=bearer(second)).status_code == 200
        refused = client.get("/v1/credits", headers=bearer(second))
        assert "member" in refused.json()["detail"]
        _retry_after(refused)


def test_a_team_has_a_larger_budget_of_its_own_that_all_its_members_share(
    book: creditbook.Creditbook, access: AccessService
) -> None:
    team_id, _, admin_key = _team(access)
    _, member_key = access.add_member(team_id, "max@acme.example", "member")
    _, other_key = access.add_member(team_id, "eve@acme.example", "member")
    other_team_key = _team(access, "sam@other.example")[2]
    settings = make_settings(
        rate_limit_requests=2, rate_limit_window_seconds=60, rate_limit_team_requests=5
    )
    with TestClient(create_app(book, settings)) as client:
        statuses = [
            client.get("/v1/credits", headers=bearer(key)).status_code
            for key in (admin_key, admin_key, member_key.api_key, member_key.api_key)
        ]
        assert statuses == [200, 200, 200, 200]
        assert client.get("/v1/credits", headers=bearer(other_key.api_key)).status_code == 200
        refused = client.get("/v1/credits", headers=bearer(other_key.api_key))
        assert "this team" in refused.json()["detail"]
        _retry_after(refused)
        # Another team's budget is its own.
        assert client.get("/v1/credits", headers=bearer(other_team_key)).status_code == 200


def test_the_team_limit_is_ten_keys_by_default_and_exempt_service_keys_count_nowhere(
    book: creditbook.Creditbook, access: AccessService
) -> None:
    team_id, admin_id, admin_key = _team(access)
    service = access.issue_key(team_id, admin_id)
    settings = make_settings(
        rate_limit_requests=1,
        rate_limit_window_seconds=60,
        rate_limit_exempt_keys=service.key_id,
    )
    with TestClient(create_app(book, settings)) as client:
        assert all(
            client.get("/v1/credits", headers=bearer(service.api_key)).status_code == 200
            for _ in range(12)
        )
        # The service key's twelve requests took nothing from its member or its team.
        assert client.get("/v1/credits", headers=bearer(admin_key)).status_code == 200
        _retry_after(client.get("/v1/credits", headers=bearer(admin_key)))
        members = [access.add_member(team_id, f"m{i}@acme.example", "member")[1] for i in range(10)]
        answers = [client.get("/v1/credits", headers=bearer(k.api_key)) for k in members]
        # 1 (admin) + 9 members fill the team's 10; the tenth member is refused by the team.
        assert [a.status_code for a in answers] == [200] * 9 + [429]
        assert "this team" in answers[-1].json()["detail"]


def test_an_address_that_failed_too_often_is_refused_before_its_keys_are_read(
    book: creditbook.Creditbook, access: AccessService
) -> None:
    team_id, _, good_key = _team(access)
    app = create_app(book, make_settings(rate_limit_failed_auth="10/minute"))
    services = app.state.services
    reads: list[str] = []
    verify = services.access.verify

    def counted_verify(token: str) -> Any:
        reads.append(token)
        return verify(token)

    services.access.verify = counted_verify
    with TestClient(app, client=("203.0.113.7", 40000)) as attacker:
        for _ in range(10):
            assert_problem(attacker.get("/v1/credits", headers=WRONG_KEY), 401, "unauthorized")
        assert len(reads) == 10
        refused = attacker.post("/v1/charges", json={"feature": "email_finder"}, headers=WRONG_KEY)
        assert "failed authentications" in refused.json()["detail"]
        assert _retry_after(refused) <= 60
        # Even a good key is not looked up from that address for now.
        _retry_after(attacker.get("/v1/credits", headers=bearer(good_key)))
        assert len(reads) == 10
    with TestClient(app, client=("198.51.100.9", 40000)) as other:
        assert other.get("/v1/credits", headers=bearer(good_key)).status_code == 200
        assert_problem(other.get("/v1/credits", headers=WRONG_KEY), 401, "unauthorized")
    # The operator key costs no database read and is never refused for it.
    with TestClient(app, client=("203.0.113.7", 40000)) as attacker:
        assert attacker.get(f"/v1/teams/{team_id}", headers=bearer(OPERATOR_KEY)).status_code == 200


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def test_dashboard_sign_ins_with_wrong_keys_count_against_the_address_with_the_api(
    book: creditbook.Creditbook, access: AccessService
) -> None:
    _, _, good_key = _team(access)
    settings = make_settings(env="test", secret_key="s" * 40, rate_limit_failed_auth="4/minute")
    app = create_app(book, settings)
    with TestClient(app, client=("203.0.113.8", 40000)) as client:
        for _ in range(2):
            assert client.get("/v1/credits", headers=WRONG_KEY).status_code == 401
        csrf = _csrf(client.get("/dashboard/signin").text)
        for _ in range(2):
            wrong = client.post(
                "/dashboard/signin", data={"csrf": csrf, "api_key": "cbk.team_x.key_y.z"}
            )
            assert wrong.status_code == 401
        refused = client.post("/dashboard/signin", data={"csrf": csrf, "api_key": good_key})
        _retry_after(refused)
        _retry_after(client.get("/v1/credits", headers=WRONG_KEY))
        forged = client.post(
            "/dashboard/signin/link/redeem", data={"csrf": csrf, "token": "team_x.lnk_y.z"}
        )
        _retry_after(forged)


def test_sign_in_link_requests_are_limited_per_address_and_per_email(
    book: creditbook.Creditbook, access: AccessService
) -> None:
    _team(access, "sam@acme.example")
    settings = make_settings(
        env="test", secret_key="s" * 40, rate_limit_signin_links="3/15 minutes"
    )
    app = create_app(book, settings)

    def ask(client: TestClient, email: str) -> Any:
        csrf = _csrf(client.get("/dashboard/signin").text)
        return client.post(
            "/dashboard/signin/link",
            data={"csrf": csrf, "email": email},
            follow_redirects=False,
        )

    with TestClient(app, client=("203.0.113.9", 40000)) as one:
        answers = [ask(one, f"nobody{i}@acme.example") for i in range(3)]
        assert [a.status_code for a in answers] == [303] * 3
        refused = ask(one, "sam@acme.example")
        assert "this client address" in refused.json()["detail"]
        assert 1 <= _retry_after(refused) <= 15 * 60
    # One mailbox cannot be flooded from many addresses either.
    statuses = []
    for i in range(4):
        with TestClient(app, client=(f"198.51.100.{i + 1}", 40000)) as client:
            statuses.append(ask(client, "Sam@Acme.example").status_code)
    assert statuses == [303, 303, 303, 429]


def _sign_in(client: TestClient, key: str) -> None:
    csrf = _csrf(client.get("/dashboard/signin").text)
    done = client.post(
        "/dashboard/signin", data={"csrf": csrf, "api_key": key}, follow_redirects=False
    )
    assert done.status_code == 303, done.text


def test_dashboard_csv_exports_are_limited_per_member(
    book: creditbook.Creditbook, access: AccessService
) -> None:
    team_id, _, admin_key = _team(access)
    _, member_key = access.add_member(team_id, "max@acme.example", "member")
    settings = make_settings(env="test", secret_key="s" * 40, rate_limit_exports="3/minute")
    app = create_app(book, settings)
    with TestClient(app) as admin, TestClient(app) as member:
        _sign_in(admin, admin_key)
        _sign_in(member, member_key.api_key)
        assert [admin.get("/dashboard/usage.csv").status_code for _ in range(3)] == [200] * 3
        refused = admin.get("/dashboard/usage.csv")
        assert "CSV exports" in refused.json()["detail"]
        _retry_after(refused)
        _retry_after(admin.get("/dashboard/enrichment/job_x/results.csv"))
        assert member.get("/dashboard/usage.csv").status_code == 200  # a budget per member


@pytest.mark.redis
def test_two_servers_on_one_redis_share_every_budget(
    book: creditbook.Creditbook, access: AccessService
) -> None:
    if not _redis_available():
        pytest.skip("Redis not reachable at 127.0.0.1:6379")
    _, _, key = _team(access)
    shared = {
        "rate_limit_storage": REDIS_URL,
        "rate_limit_prefix": f"cb-test-{uuid.uuid4().hex[:12]}",
        "rate_limit_requests": 3,
        "rate_limit_window_seconds": 60,
        "rate_limit_failed_auth": "3/minute",
    }
    one = create_app(book, make_settings(**shared))
    two = create_app(book, make_settings(**shared))
    alone = create_app(
        book, make_settings(**{**shared, "rate_limit_prefix": f"cb-test-{uuid.uuid4().hex[:12]}"})
    )
    with TestClient(one) as a, TestClient(two) as b, TestClient(alone) as c:
        assert a.get("/v1/credits", headers=bearer(key)).status_code == 200
        assert b.get("/v1/credits", headers=bearer(key)).status_code == 200
        assert a.get("/v1/credits", headers=bearer(key)).status_code == 200
        _retry_after(b.get("/v1/credits", headers=bearer(key)))
        _retry_after(a.get("/v1/credits", headers=bearer(key)))
        for client in (a, b, a):
            assert client.get("/v1/credits", headers=WRONG_KEY).status_code == 401
        _retry_after(b.get("/v1/credits", headers=WRONG_KEY))
        # Under another prefix (another deployment on the same Redis), nothing is shared.
        assert c.get("/v1/credits", headers=bearer(key)).status_code == 200


def test_a_shared_storage_that_is_down_falls_back_to_counting_in_the_process(
    book: creditbook.Creditbook, access: AccessService, caplog: pytest.LogCaptureFixture
) -> None:
    _, _, key = _team(access)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens there once closed
    settings = make_settings(
        rate_limit_storage=f"redis://127.0.0.1:{closed_port}/0",
        rate_limit_requests=2,
        rate_limit_window_seconds=60,
    )
    with TestClient(create_app(book, settings)) as client:
        assert [client.get("/v1/credits", headers=bearer(key)).status_code for _ in range(2)] == [
            200,
            200,
        ]
        _retry_after(client.get("/v1/credits", headers=bearer(key)))
    assert any("rate-limit storage" in r.getMessage() for r in caplog.records)
