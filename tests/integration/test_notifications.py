"""Alerts reach the team's webhook through the outbox: signed, retried with backoff, once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import creditbook
from creditbook import Actor, FrozenClock
from creditbook.adapters.net.guard import OutboundGuard
from creditbook.adapters.notify import HttpWebhookSender, verify_signature
from creditbook.adapters.payments import FakePaymentProvider
from creditbook.bootstrap import outbound_guard
from creditbook.service.notifications import NotificationService
from creditbook.service.purchases import install


@dataclass(frozen=True)
class Received:
    body: bytes
    signature: str
    event_id: str
    answered: int


class FlakyReceiver:
    """A loopback webhook endpoint that answers 503 ``failures`` times, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = 503 if receiver.failures > 0 else 200
                receiver.failures -= 1
                receiver.received.append(
                    Received(
                        body,
                        self.headers.get("Creditbook-Signature", ""),
                        self.headers.get("Creditbook-Event-Id", ""),
                        answer,
                    )
                )
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> OutboundGuard:
    """The outbound-URL guard with CREDITBOOK_WEBHOOK_ALLOW_PRIVATE=true: the receiver is local."""
    monkeypatch.setenv("CREDITBOOK_WEBHOOK_ALLOW_PRIVATE", "true")
    return outbound_guard()


@pytest.fixture
def receiver() -> Iterator[FlakyReceiver]:
    found = FlakyReceiver(failures=2)
    yield found
    found.stop()


def test_an_alert_reaches_a_receiver_that_fails_twice_once_with_a_valid_signature(
    book: creditbook.Creditbook, clock: FrozenClock, receiver: FlakyReceiver, local: OutboundGuard
) -> None:
    notifications = NotificationService(
        book.uow,
        clock,
        HttpWebhookSender(timeout_seconds=2, guard=local),
        base_delay=timedelta(seconds=10),
        guard=local,
    )
    shop = install(book.kernel, FakePaymentProvider(), notifications)
    team = book.create_team("Alerted").id
    admin = Actor(member_id=book.add_member(team, "alice@alerted.com", "admin").id)
    settings = shop.update_settings(
        team, actor=admin, webhook_url=receiver.url, low_balance_threshold=100
    )
    secret = settings.webhook_secret
    assert secret is not None
    book.grant(team, 120)
    book.charge(team, "phone_finder", outcome="found")  # 100: not below
    book.charge(team, "phone_finder", outcome="found")  # 80: below -> one alert
    [alert] = notifications.list(team)
    assert alert.kind == "low_balance" and alert.status == "pending"

    first = notifications.deliver_due(team_id=team)
    assert (first.delivered, first.retrying) == (0, 1)
    assert notifications.deliver_due(team_id=team).retrying == 0  # not due before its backoff
    clock.advance(timedelta(seconds=10))
    assert notifications.deliver_due(team_id=team).retrying == 1
    clock.advance(timedelta(seconds=19))
    assert notifications.deliver_due(team_id=team).retrying == 0  # the second wait is 20 s
    clock.advance(timedelta(seconds=1))
    assert notifications.deliver_due(team_id=team).delivered == 1
    clock.advance(timedelta(hours=1))
    assert notifications.deliver_due(team_id=team).delivered == 0  # delivered once, never again

    assert [r.answered for r in receiver.received] == [503, 503, 200]
    assert {r.event_id for r in receiver.received} == {alert.id}
    delivered = receiver.received[-1]
    now = int(clock.now().timestamp())
    assert verify_signature(delivered.body, delivered.signature, secret, now=now - 3600)
    assert not verify_signature(delivered.body, delivered.signature, "whsec_wrong_secret_x")
    assert not verify_signature(delivered.body + b" ", delivered.signature, secret, now=now)
    body = json.loads(delivered.body)
    assert body["type"] == "low_balance" and body["team_id"] == team
    assert body["data"] == {"available": 80, "threshold": 100}
    [done] = notifications.list(team)
    assert done.status == "delivered" and done.attempts == 3 and done.delivered_at is not None


def test_an_alert_without_a_webhook_stays_in_app_and_others_can_raise_alerts(
    book: creditbook.Creditbook,
) -> None:
    team = book.create_team("Quiet").id
    alert_id = book.notifications.notify(team, "job_paused", {"job_id": "job_1", "reason": "x"})
    report = book.notifications.deliver_due(team_id=team)
    assert report.skipped == 1 and report.delivered == 0
    [alert] = book.notifications.list(team)
    assert (alert.id, alert.kind, alert.status) == (alert_id, "job_paused", "skipped")
    assert alert.payload == {"job_id": "job_1", "reason": "x"}


def test_an_alert_is_given_up_after_its_last_attempt(
    book: creditbook.Creditbook, clock: FrozenClock, local: OutboundGuard
) -> None:
    from creditbook.adapters.notify import FakeWebhookSender

    sender = FakeWebhookSender()
    notifications = NotificationService(
        book.uow, clock, sender, max_attempts=3, base_delay=timedelta(seconds=1), guard=local
    )
    shop = install(book.kernel, FakePaymentProvider(), notifications)
    team = book.create_team("Down").id
    admin = Actor(member_id=book.add_member(team, "alice@down.com", "admin").id)
    shop.update_settings(team, actor=admin, webhook_url="http://127.0.0.1:9/none")
    notifications.notify(team, "job_paused", {})
    sender.fail_next(10)
    for _ in range(5):
        notifications.deliver_due(team_id=team)
        clock.advance(timedelta(minutes=1))
    [alert] = notifications.list(team)
    assert alert.status == "failed" and alert.attempts == 3
    assert len(sender.attempts) == 3 and sender.delivered == []
