"""A database that cannot serve answers 503 ``database_unavailable`` with ``Retry-After`` on
every route, the dashboard's included, logs one line per refused request and counts it.

The database is real: a SQLite file that another connection holds with
``BEGIN EXCLUSIVE`` past the engine's (short) busy timeout.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from api_helpers import OPERATOR_KEY, TestClient, assert_problem, bearer, make_settings
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

import creditbook
from creditbook.adapters.db.engine import make_engine
from creditbook.entrypoints.api import create_app
from creditbook.entrypoints.api.request_log import RequestContext
from creditbook.service.access import AccessService

RETRY_AFTER = 3
SECRET = "outage-tests-secret-key-0123456789abcdef"


@dataclass
class Locked:
    """An app over a SQLite file that ``lock()`` makes unavailable until ``unlock()``."""

    book: creditbook.Creditbook
    app: Any
    client: TestClient
    path: Path
    team_id: str
    admin: dict[str, str]
    admin_key: str
    holder: sqlite3.Connection | None = None

    def lock(self) -> None:
        self.holder = sqlite3.connect(self.path, isolation_level=None)
        self.holder.execute("BEGIN EXCLUSIVE")

    def unlock(self) -> None:
        assert self.holder is not None
        self.holder.rollback()
        self.holder.close()
        self.holder = None

    @property
    def refused(self) -> int:
        count: int = self.app.state.services.outages.refused
        return count


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Locked]:
    path = tmp_path / "outage.db"
    url = f"sqlite:///{path}"
    book = creditbook.open(engine=make_engine(url, busy_timeout=0.05))
    team, _, key = AccessService(book.kernel).create_team(
        "Acme", time_zone="UTC", admin_email="ada@acme.example"
    )
    book.grant(team.id, 100, reason="start")
    settings = make_settings(
        database_retry_after_seconds=RETRY_AFTER, env="test", secret_key=SECRET
    )
    app = create_app(book, settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        world = Locked(book, app, client, path, team.id, bearer(key.api_key), key.api_key)
        yield world
        if world.holder is not None:
            world.unlock()
    assert book.engine is not None
    book.engine.dispose()


def _assert_unavailable(response: Any) -> dict[str, Any]:
    body = assert_problem(response, 503, "database_unavailable")
    assert response.headers["retry-after"] == str(RETRY_AFTER)
    assert body["retry_after"] == RETRY_AFTER and body["outcome"] == "not_applied"
    assert body["title"] == "Database unavailable" and "nothing was changed" in body["detail"]
    assert "locked" not in body["detail"]  # the driver's words stay in the log
    return body


def test_every_route_answers_503_with_retry_after_and_nothing_is_changed(
    locked: Locked,
) -> None:
    locked.lock()
    op = bearer(OPERATOR_KEY)
    answers = [
        locked.client.get("/v1/credits", headers=locked.admin),
        locked.client.post(
            "/v1/charges",
            json={"feature": "email_finder", "outcome": "deliverable"},
            headers={**locked.admin, "Idempotency-Key": "during"},
        ),
        locked.client.post("/v1/holds", json={"feature": "phone_finder"}, headers=locked.admin),
        locked.client.get("/v1/ledger", headers=locked.admin),
        locked.client.post(
            "/v1/charges:batch",
            json={"charges": [{"feature": "email_finder", "outcome": "deliverable"}] * 3},
            headers=locked.admin,
        ),
        locked.client.get("/api/team/credits", headers=locked.admin),
        locked.client.post("/v1/teams", json={"name": "B", "admin_email": "b@b.io"}, headers=op),
        locked.client.post(
            f"/v1/teams/{locked.team_id}/grants",
            json={"credits": 5, "category": "purchased", "reason": "r"},
            headers=op,
        ),
    ]
    for answer in answers:
        _assert_unavailable(answer)
    assert locked.client.get("/readyz").status_code == 503
    assert locked.client.get("/healthz").status_code == 200
    assert locked.refused == len(answers)
    locked.unlock()
    assert locked.client.get("/readyz").status_code == 200
    credits = locked.client.get("/v1/credits", headers=locked.admin)
    assert credits.json()["available"] == 100  # neither the charge, the hold nor the grant
    again = locked.client.post(
        "/v1/charges",
        json={"feature": "email_finder", "outcome": "deliverable"},
        headers={**locked.admin, "Idempotency-Key": "during"},
    )
    assert again.status_code == 201  # the key took no effect: it runs now
    assert locked.refused == len(answers)


def test_a_refused_request_logs_one_line_without_a_traceback(
    locked: Locked, caplog: pytest.LogCaptureFixture
) -> None:
    locked.lock()
    with caplog.at_level(logging.DEBUG, logger="creditbook"):
        bodies = [
            _assert_unavailable(
                locked.client.post(
                    "/v1/charges",
                    json={"feature": "email_finder", "outcome": "deliverable"},
                    headers=locked.admin,
                )
            )
            for _ in range(5)
        ]
    for body in bodies:
        ours = [r for r in caplog.records if getattr(r, "request_id", None) == body["request_id"]]
        assert len(ours) == 1, [r.getMessage() for r in ours]
        (line,) = ours
        assert line.levelno == logging.WARNING and line.exc_info is None
        fields = vars(line)
        assert fields["outage"] is True and fields["status"] == 503
        assert fields["code"] == "database_unavailable" and "locked" in fields["cause"]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_an_outage_met_in_a_middleware_is_a_503_too_as_request_context_is_outermost(
    tmp_path: Path,
) -> None:
    path = tmp_path / "middleware.db"
    book = creditbook.open(engine=make_engine(f"sqlite:///{path}", busy_timeout=0.05))
    team = book.create_team("Acme").id
    app = create_app(book, make_settings(database_retry_after_seconds=RETRY_AFTER))

    class ReadsTheBalanceFirst:
        def __init__(self, inner: ASGIApp) -> None:
            self.inner = inner

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"] == "/v1/noop":
                book.balance(team)
            await self.inner(scope, receive, send)

    # Where a middleware added in create_app sits: inside RequestContext, the outermost.
    app.user_middleware.append(Middleware(ReadsTheBalanceFirst))
    assert app.user_middleware[0].cls is RequestContext
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            _assert_unavailable(client.get("/v1/noop"))
            assert app.state.services.outages.refused == 1
    finally:
        holder.rollback()
        holder.close()
        assert book.engine is not None
        book.engine.dispose()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def test_the_dashboard_shows_an_outage_page_with_retry_after_and_keeps_the_session(
    locked: Locked,
) -> None:
    client = locked.client
    page = client.get("/dashboard/signin")
    signed = client.post(
        "/dashboard/signin",
        data={"csrf": _csrf(page.text), "api_key": locked.admin_key, "next": "/dashboard/"},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    csrf = _csrf(client.get("/dashboard/").text)
    locked.lock()
    shown = client.get("/dashboard/", follow_redirects=False)
    assert shown.status_code == 503 and shown.headers["retry-after"] == str(RETRY_AFTER)
    assert shown.headers["content-type"].startswith("text/html")
    assert "Database unavailable" in shown.text and 'data-code="database_unavailable"' in shown.text
    posted = client.post(
        "/dashboard/buy",
        data={"csrf": csrf, "package": "1000"},
        headers={"referer": "http://testserver/dashboard/buy"},
        follow_redirects=False,
    )
    assert posted.status_code == 503  # not a redirect to a page that would fail again
    polled = client.get(
        "/dashboard/enrichment/job_x/status.json", headers={"accept": "application/json"}
    )
    _assert_unavailable(polled)
    assert locked.refused == 3
    locked.unlock()
    back = client.get("/dashboard/", follow_redirects=False)
    assert back.status_code == 200  # still signed in: an outage is not a revoked key
    assert locked.client.get("/v1/credits", headers=locked.admin).json()["available"] == 100


def test_the_openapi_schema_says_every_database_route_may_answer_503_with_retry_after(
    locked: Locked,
) -> None:
    paths = locked.client.get("/openapi.json").json()["paths"]
    answer = paths["/v1/charges"]["post"]["responses"]["503"]
    assert "Retry-After" in answer["headers"]
    assert "503" in paths["/v1/ledger"]["get"]["responses"]
    assert "503" not in paths["/healthz"]["get"]["responses"]
