"""Alert webhooks cannot reach the server's own network (SSRF): refused when saved, and again
when sent, to a real local receiver that must never hear from a refused delivery."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from api_helpers import OPERATOR_KEY, TestClient, assert_problem, bearer, make_settings

import creditbook
from creditbook.adapters.net.guard import OutboundGuard
from creditbook.entrypoints.api import create_app

UNSAFE_URLS = [
    "http://127.0.0.1:5432/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://0/",
    "http://0.0.0.0:8000/",
    "http://10.1.2.3/admin",
    "http://172.16.5.4/",
    "http://192.168.0.10/",
    "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://224.0.0.1/",
    "http://[::1]:5432/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://localhost:8080/",
    "http://LOCALHOST./",
    "http://api.localhost/",
]


@dataclass
class Receiver:
    """A loopback HTTP endpoint that records every request (and may answer a redirect)."""

    answer: int = 200
    location: str | None = None
    requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append({"path": self.path, "host": self.headers["Host"]})
                self.send_response(receiver.answer)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.stop()


@dataclass
class Team:
    id: str
    admin: dict[str, str]
    member: dict[str, str]


@contextmanager
def serving(book: creditbook.Creditbook) -> Iterator[TestClient]:
    with TestClient(create_app(book, make_settings()), raise_server_exceptions=False) as client:
        yield client


def new_team(client: TestClient) -> Team:
    made = client.post(
        "/v1/teams",
        json={"name": "Hooked", "admin_email": "ada@hooked.example"},
        headers=bearer(OPERATOR_KEY),
    )
    assert made.status_code == 201, made.text
    body = made.json()
    admin = bearer(body["admin_api_key"])
    member = client.post(
        "/v1/members", json={"email": "bob@hooked.example", "role": "member"}, headers=admin
    )
    return Team(body["team"]["id"], admin, bearer(member.json()["api_key"]))


def scripted(answers: dict[str, list[list[str]]]) -> Callable[[str, int], Sequence[str]]:
    """A resolver answering each name from a script: one list of addresses per lookup."""

    def resolve(host: str, port: int) -> Sequence[str]:
        queue = answers.get(host)
        if not queue:
            raise OSError(f"{host} does not resolve")
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return resolve


@pytest.fixture(autouse=True)
def _no_background_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests deliver themselves, so each attempt is one they can look at.
    monkeypatch.setenv("CREDITBOOK_NOTIFY_WORKER", "0")
    monkeypatch.delenv("CREDITBOOK_WEBHOOK_ALLOW_PRIVATE", raising=False)
    monkeypatch.delenv("CREDITBOOK_ENV", raising=False)


def test_every_private_loopback_or_odd_address_is_refused_when_saved(db_url: str) -> None:
    book = creditbook.open(db_url)
    with serving(book) as client:
        team = new_team(client)
        accepted = []
        for url in UNSAFE_URLS:
            answer = client.put("/v1/settings", json={"webhook_url": url}, headers=team.admin)
            if answer.status_code != 422:
                accepted.append((url, answer.status_code))
                continue
            problem = assert_problem(answer, 422, "unsafe_url")
            assert problem["field"] == "webhook_url"
            assert "public addresses only" in problem["detail"], problem
        assert accepted == []
        settings = client.get("/v1/settings", headers=team.admin).json()["settings"]
        assert settings["webhook_url"] is None and settings["webhook_secret_set"] is False


def test_the_refusal_says_which_address_the_url_stands_for_and_why(db_url: str) -> None:
    book = creditbook.open(db_url)
    with serving(book) as client:
        team = new_team(client)
        answer = client.put(
            "/v1/settings", json={"webhook_url": "http://2130706433/"}, headers=team.admin
        )
        problem = assert_problem(answer, 422, "unsafe_url")
        assert "2130706433 is 127.0.0.1, a loopback address" in problem["detail"]
        assert problem["address"] == "127.0.0.1"
        answer = client.put(
            "/v1/settings",
            json={"webhook_url": "http://169.254.169.254/latest/meta-data/"},
            headers=team.admin,
        )
        assert "a link-local address" in assert_problem(answer, 422, "unsafe_url")["detail"]


def test_outside_development_a_webhook_must_use_https(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITBOOK_ENV", "test")
    book = creditbook.open(db_url)
    with serving(book) as client:
        team = new_team(client)
        plain = client.put(
            "/v1/settings", json={"webhook_url": "http://hooks.acme.example/cb"}, headers=team.admin
        )
        assert "must use https" in assert_problem(plain, 422, "unsafe_url")["detail"]
        secure = client.put(
            "/v1/settings",
            json={"webhook_url": "https://hooks.acme.example/cb"},
            headers=team.admin,
        )
        assert secure.status_code == 200, secure.text


def test_a_name_resolving_to_any_private_address_is_refused_when_saved(db_url: str) -> None:
    resolve = scripted({"mixed.example.com": [["93.184.216.34", "10.0.0.7"]]})
    book = creditbook.open(db_url, outbound=OutboundGuard(require_https=False, resolve=resolve))
    with serving(book) as client:
        team = new_team(client)
        answer = client.put(
            "/v1/settings",
            json={"webhook_url": "http://mixed.example.com/hook"},
            headers=team.admin,
        )
        problem = assert_problem(answer, 422, "unsafe_url")
        assert "mixed.example.com resolves to 10.0.0.7, a private address" in problem["detail"]


def test_a_stored_loopback_webhook_is_refused_when_sent_and_the_receiver_hears_nothing(
    db_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Saved while the operator allowed private receivers, then the setting went off.
    monkeypatch.setenv("CREDITBOOK_WEBHOOK_ALLOW_PRIVATE", "true")
    lenient = creditbook.open(db_url)
    with serving(lenient) as client:
        team = new_team(client)
        saved = client.put("/v1/settings", json={"webhook_url": receiver.url}, headers=team.admin)
        assert saved.status_code == 200, saved.text
    alert = lenient.notifications.notify(team.id, "job_paused", {"job_id": "job_1"})
    monkeypatch.delenv("CREDITBOOK_WEBHOOK_ALLOW_PRIVATE")
    strict = creditbook.open(db_url)

    report = strict.notifications.deliver_due(team_id=team.id)

    assert receiver.requests == []
    assert (report.delivered, report.retrying, report.failed) == (0, 0, 1)
    with serving(strict) as client:
        [shown] = client.get("/v1/notifications", headers=team.admin).json()["notifications"]
    assert shown["id"] == alert and shown["status"] == "failed" and shown["attempts"] == 1
    assert shown["last_error"].startswith("refused by the outbound URL guard: ")
    assert "127.0.0.1, a loopback address" in shown["last_error"]


def test_a_name_that_rebinds_to_loopback_after_the_save_is_refused_when_sent(
    db_url: str, receiver: Receiver
) -> None:
    # The attacker's DNS answers a public address for the save, then the loopback one.
    resolve = scripted({"hooks.rebind.example": [["93.184.216.34"], ["127.0.0.1"]]})
    book = creditbook.open(db_url, outbound=OutboundGuard(require_https=False, resolve=resolve))
    url = f"http://hooks.rebind.example:{receiver.port}/alerts"
    with serving(book) as client:
        team = new_team(client)
        saved = client.put("/v1/settings", json={"webhook_url": url}, headers=team.admin)
        assert saved.status_code == 200, saved.text
        book.notifications.notify(team.id, "job_paused", {})

        book.notifications.deliver_due(team_id=team.id)

        assert receiver.requests == []
        [shown] = client.get("/v1/notifications", headers=team.admin).json()["notifications"]
    assert shown["status"] == "failed"
    assert "hooks.rebind.example resolves to 127.0.0.1, a loopback address" in shown["last_error"]


def test_allowed_private_delivery_connects_to_the_checked_address_and_keeps_the_host_name(
    db_url: str, receiver: Receiver
) -> None:
    # hooks.internal.example exists only in this resolver: the POST can reach the
    # receiver only through the address the guard resolved and checked.
    resolve = scripted({"hooks.internal.example": [["127.0.0.1"]]})
    guard = OutboundGuard(allow_private=True, require_https=False, resolve=resolve)
    book = creditbook.open(db_url, outbound=guard)
    url = f"http://hooks.internal.example:{receiver.port}/alerts"
    with serving(book) as client:
        team = new_team(client)
        assert client.put("/v1/settings", json={"webhook_url": url}, headers=team.admin).is_success
        book.notifications.notify(team.id, "job_paused", {})

        assert book.notifications.deliver_due(team_id=team.id).delivered == 1

        [shown] = client.get("/v1/notifications", headers=team.admin).json()["notifications"]
    assert receiver.requests == [
        {"path": "/alerts", "host": f"hooks.internal.example:{receiver.port}"}
    ]
    assert shown["status"] == "delivered" and shown["last_error"] is None


def test_a_redirect_from_the_receiver_is_not_followed(
    db_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = Receiver()
    receiver.answer, receiver.location = 307, target.url
    monkeypatch.setenv("CREDITBOOK_WEBHOOK_ALLOW_PRIVATE", "true")
    book = creditbook.open(db_url)
    try:
        with serving(book) as client:
            team = new_team(client)
            saved = client.put(
                "/v1/settings", json={"webhook_url": receiver.url}, headers=team.admin
            )
            assert saved.status_code == 200
            book.notifications.notify(team.id, "job_paused", {})

            assert book.notifications.deliver_due(team_id=team.id).retrying == 1

            [shown] = client.get("/v1/notifications", headers=team.admin).json()["notifications"]
        assert len(receiver.requests) == 1 and target.requests == []
        assert shown["status"] == "pending" and shown["last_error"] == "HTTP 307 from the receiver"
    finally:
        target.stop()


def test_with_private_receivers_allowed_an_alert_reaches_a_local_receiver(
    db_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITBOOK_WEBHOOK_ALLOW_PRIVATE", "true")
    book = creditbook.open(db_url)
    with serving(book) as client:
        team = new_team(client)
        saved = client.put("/v1/settings", json={"webhook_url": receiver.url}, headers=team.admin)
        assert saved.status_code == 200, saved.text
        book.notifications.notify(team.id, "job_paused", {})
        assert book.notifications.deliver_due(team_id=team.id).delivered == 1
    assert [r["path"] for r in receiver.requests] == ["/alerts"]


def test_a_member_cannot_set_a_webhook_to_probe_with(db_url: str) -> None:
    book = creditbook.open(db_url)
    with serving(book) as client:
        team = new_team(client)
        answer = client.put(
            "/v1/settings", json={"webhook_url": "http://127.0.0.1:5432/"}, headers=team.member
        )
        assert_problem(answer, 403, "forbidden")
