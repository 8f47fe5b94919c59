"""Hosts, HSTS, Secure cookies and sign-in link requests that answer before the mail goes out."""

from __future__ import annotations

import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

import creditbook
from creditbook.config import Settings
from creditbook.domain.clock import FrozenClock
from creditbook.entrypoints.api import create_app
from creditbook.entrypoints.web import create_dashboard
from creditbook.service.access import AccessService

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = "transport-tests-secret-key-0123456789abcdef"


@pytest.fixture
def book(tmp_path: Path, clock: FrozenClock) -> Iterator[creditbook.Creditbook]:
    found = creditbook.open(f"sqlite:///{tmp_path / 'transport.db'}", clock=clock)
    yield found
    assert found.engine is not None
    found.engine.dispose()


def _app(book: creditbook.Creditbook, **settings: Any) -> Any:
    return create_app(book, Settings(env="test", operator_key=KEY, secret_key=KEY, **settings))


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


def test_a_request_naming_an_unconfigured_host_is_a_problem_400(
    book: creditbook.Creditbook,
) -> None:
    app = _app(book, public_url="https://credits.example.com", allowed_hosts="api.internal")
    for base in ("https://credits.example.com", "http://api.internal:8000", "http://testserver"):
        assert TestClient(app, base_url=base).get("/dashboard/signin").status_code == 200
    evil = TestClient(app, base_url="https://attacker.example")
    for path in ("/dashboard/signin", "/v1/credits", "/docs"):
        answer = evil.get(path)
        assert answer.status_code == 400, path
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["code"] == "host_not_allowed"
        assert "x-request-id" in answer.headers
    assert evil.get("/healthz").status_code == 200


def test_production_does_not_answer_for_the_local_names(book: creditbook.Creditbook) -> None:
    app = create_app(
        book,
        Settings(
            env="production",
            database_url="postgresql+psycopg://cb@db/cb",
            operator_key=KEY,
            secret_key=KEY,
            payment_provider="stripe",
            public_url="https://credits.example.com",
        ),
    )
    assert TestClient(app, base_url="http://localhost").get("/v1/credits").status_code == 400
    assert (
        TestClient(app, base_url="https://credits.example.com").get("/v1/credits").status_code
        == 401
    )


def test_hsts_is_sent_when_the_public_url_or_the_request_is_https(
    book: creditbook.Creditbook,
) -> None:
    over_https = TestClient(
        _app(book, public_url="https://credits.example.com"),
        base_url="https://credits.example.com",
    )
    for path in ("/healthz", "/dashboard/signin", "/v1/credits"):
        assert over_https.get(path).headers["strict-transport-security"] == "max-age=31536000"
    local = _app(book, public_url="http://127.0.0.1:8000")
    assert "strict-transport-security" not in TestClient(local).get("/healthz").headers
    proxied = TestClient(local, base_url="https://testserver")  # TLS ended at a proxy
    assert "strict-transport-security" in proxied.get("/healthz").headers


def test_the_session_cookie_is_secure_when_the_public_url_is_https_or_the_setting_says(
    book: creditbook.Creditbook,
) -> None:
    def cookie(**settings: Any) -> str:
        page = TestClient(_app(book, **settings)).get("/dashboard/signin")
        return str(page.headers["set-cookie"])

    assert "Secure" not in cookie(public_url="http://127.0.0.1:8000")
    assert "Secure" in cookie(public_url="https://credits.example.com")
    assert "Secure" in cookie(public_url="http://127.0.0.1:8000", secure_cookies=True)
    assert "Secure" not in cookie(public_url="https://credits.example.com", secure_cookies=False)


# ---- sign-in link requests answer before the address is looked up and mailed ----------


@dataclass
class GatedMailer:
    """A mailer that sends nothing until the test opens its gate."""

    gate: threading.Event = field(default_factory=threading.Event)
    sent: list[tuple[str, str, str]] = field(default_factory=list)

    def send_signin_link(self, email: str, team_name: str, url: str) -> None:
        self.gate.wait(30)
        self.sent.append((email, team_name, url))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _served(app: FastAPI, port: int) -> Iterator[str]:
    """``app`` under a real uvicorn server on loopback, in a thread."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def test_a_known_and_an_unknown_address_get_the_same_answer_before_any_mail_is_sent(
    book: creditbook.Creditbook,
) -> None:
    AccessService(book.kernel).install().create_team("One", time_zone="UTC", admin_email="sam@x.io")
    mailer = GatedMailer()
    port = _free_port()
    settings = Settings(env="test", secret_key=KEY, public_url=f"http://127.0.0.1:{port}")
    app = FastAPI()
    app.mount("/dashboard", create_dashboard(book, settings=settings, mailer=mailer))
    with _served(app, port) as base, httpx.Client(base_url=base, timeout=10) as browser:
        try:
            csrf = _csrf(browser.get("/dashboard/signin").text)
            known = browser.post("/dashboard/signin/link", data={"csrf": csrf, "email": "sam@x.io"})
            known_page = browser.get("/dashboard/signin").text
            unknown = browser.post(
                "/dashboard/signin/link", data={"csrf": csrf, "email": "nobody@x.io"}
            )
            unknown_page = browser.get("/dashboard/signin").text
            assert mailer.sent == []  # both answered while the mail still waits
        finally:
            mailer.gate.set()
        for _ in range(200):
            if mailer.sent:
                break
            time.sleep(0.05)
    assert known.status_code == unknown.status_code == 303
    assert known.headers["location"] == unknown.headers["location"] == "/dashboard/signin"
    assert known_page.replace("sam@x.io", "nobody@x.io") == unknown_page
    assert [(email, url.split("?")[0]) for email, _, url in mailer.sent] == [
        ("sam@x.io", f"http://127.0.0.1:{port}/dashboard/signin/link")
    ]
