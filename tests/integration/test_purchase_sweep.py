"""Purchases left pending are settled by the sweep (``creditbook credits sweep``), once.

A crash between recording a purchase and asking the provider for the money
leaves it ``pending`` with no answer; so does a crash after an auto-recharge
was decided and before it was paid; and a payment started with the provider
may never be made. Each is simulated here and swept, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import creditbook
from creditbook import Actor, FrozenClock, InvalidInput
from creditbook.adapters.payments import FakePaymentProvider, PaymentEventType
from creditbook.service.purchases import PurchaseService, SweepReport, install


class ProcessDied(Exception):
    """Stands for the process stopping where it is raised."""


@pytest.fixture
def admin(book: creditbook.Creditbook) -> tuple[str, Actor]:
    team = book.create_team("Acme").id
    return team, Actor(member_id=book.add_member(team, "alice@acme.com", "admin").id)


@pytest.fixture
def stripe(book: creditbook.Creditbook) -> Iterator[tuple[PurchaseService, FakePaymentProvider]]:
    fake = FakePaymentProvider("stripe", webhook_secret="whsec_test_secret")
    book.purchases = install(book.kernel, fake)
    yield book.purchases, fake


def _buy_and_crash_before_paying(
    shop: PurchaseService, monkeypatch: pytest.MonkeyPatch, team: str, actor: Actor, **buy: Any
) -> None:
    """``shop.buy`` that stops after recording the purchase, before asking the provider."""

    def died(*args: Any, **kwargs: Any) -> None:
        raise ProcessDied

    with monkeypatch.context() as crash:
        crash.setattr(shop, "_pay", died)
        with pytest.raises(ProcessDied):
            shop.buy(team, package="1k", actor=actor, **buy)


def test_a_manual_purchase_stalled_by_a_crash_is_completed_by_the_sweep_once(
    book: creditbook.Creditbook,
    admin: tuple[str, Actor],
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    team, actor = admin
    shop = book.purchases
    _buy_and_crash_before_paying(shop, monkeypatch, team, actor, idempotency_key="buy-1")
    [stalled] = shop.list(team)
    assert stalled.status == "pending" and book.balance(team).available == 0
    # A retry with the same key finds the purchase and, by design, does not pay again.
    assert shop.buy(team, package="1k", actor=actor, idempotency_key="buy-1").status == "pending"
    assert shop.sweep_pending().retried == ()  # not stalled yet: it may still be under way
    clock.advance(timedelta(minutes=16))
    report = shop.sweep_pending()
    assert report.retried == (stalled.id,) and report.failed == ()
    assert shop.get(team, stalled.id).status == "completed"
    assert book.balance(team).available == 1000
    assert shop.sweep_pending().retried == ()  # nothing pending is left
    assert book.audit(team).clean


def test_a_purchase_that_never_reached_stripe_fails_and_a_late_payment_still_grants(
    book: creditbook.Creditbook,
    admin: tuple[str, Actor],
    stripe: tuple[PurchaseService, FakePaymentProvider],
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    team, actor = admin
    shop, fake = stripe
    _buy_and_crash_before_paying(shop, monkeypatch, team, actor)
    [stalled] = shop.list(team)
    clock.advance(timedelta(minutes=16))
    assert shop.sweep_pending().failed == (stalled.id,)
    failed = shop.get(team, stalled.id)
    assert failed.status == "failed" and "no answer from stripe" in (failed.failure_message or "")
    assert fake.calls_to("create_payment") == []  # the sweep never pays a Stripe purchase
    assert [n.kind for n in book.notifications.list(team, kind="purchase_failed")] == [
        "purchase_failed"
    ]
    # The crashed request had reached Stripe after all, and the customer paid: still
    # granted, once.
    reached = fake.create_payment(
        purchase_id=stalled.id, team_id=team, amount=failed.amount, idempotency_key=stalled.id
    )
    assert reached.reference is not None
    body, signature = fake.webhook(PaymentEventType.SUCCEEDED, reached.reference)
    assert shop.handle_webhook(body, signature).outcome == "granted"
    assert shop.handle_webhook(body, signature).outcome == "duplicate"
    assert shop.get(team, stalled.id).status == "completed"
    assert book.balance(team).available == 1000
    assert book.audit(team).clean


def test_a_started_payment_nobody_makes_fails_after_a_day(
    book: creditbook.Creditbook,
    admin: tuple[str, Actor],
    stripe: tuple[PurchaseService, FakePaymentProvider],
    clock: FrozenClock,
) -> None:
    team, actor = admin
    shop, fake = stripe
    fake.pend_next()
    started = shop.buy(team, package="1k", actor=actor)
    assert started.status == "pending" and started.provider_reference is not None
    clock.advance(timedelta(hours=2))
    assert shop.sweep_pending() == SweepReport((), ())  # still waiting for its payer
    clock.advance(timedelta(hours=23))
    assert shop.sweep_pending().failed == (started.id,)
    assert "not paid within 24 hours" in (shop.get(team, started.id).failure_message or "")
    body, signature = fake.webhook(PaymentEventType.SUCCEEDED, started.provider_reference)
    assert shop.handle_webhook(body, signature).outcome == "granted"
    assert book.balance(team).available == 1000


def test_an_auto_recharge_stalled_after_its_commit_is_paid_by_the_sweep_once(
    book: creditbook.Creditbook,
    admin: tuple[str, Actor],
    stripe: tuple[PurchaseService, FakePaymentProvider],
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    team, actor = admin
    shop, fake = stripe
    book.grant(team, 300)
    shop.update_settings(
        team,
        actor=actor,
        auto_recharge_enabled=True,
        auto_recharge_threshold=200,
        auto_recharge_credits=1000,
    )
    with monkeypatch.context() as crash:
        crash.setattr(shop, "run_auto_recharge", lambda *args: None)  # died after the commit
        book.charge(team, "phone_finder", outcome="found", quantity=6)  # 180: crosses it
    [recharge] = [p for p in shop.list(team) if p.kind == "auto_recharge"]
    assert recharge.status == "pending" and book.balance(team).available == 180
    clock.advance(timedelta(minutes=20))
    assert shop.sweep_pending().retried == (recharge.id,)
    assert shop.get(team, recharge.id).status == "completed"
    assert book.balance(team).available == 1180
    assert shop.sweep_pending().retried == ()
    assert len(fake.calls_to("create_payment")) == 1
    assert book.audit(team).clean


def test_the_sweeps_windows_are_checked(book: creditbook.Creditbook) -> None:
    with pytest.raises(InvalidInput, match="abandoned_after at least stalled_after"):
        book.purchases.sweep_pending(
            stalled_after=timedelta(hours=2), abandoned_after=timedelta(hours=1)
        )


def test_overlapping_sweeps_grant_a_stalled_purchase_once(
    book: creditbook.Creditbook,
    admin: tuple[str, Actor],
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    team, actor = admin
    shop = book.purchases
    for _ in range(3):
        _buy_and_crash_before_paying(shop, monkeypatch, team, actor)
    clock.advance(timedelta(minutes=16))
    start = threading.Barrier(4)
    reports: list[SweepReport] = []

    def sweep() -> None:
        start.wait()
        reports.append(shop.sweep_pending())

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(reports) == 4  # every sweep finished (none raised)
    assert [p.status for p in shop.list(team)] == ["completed"] * 3
    assert book.balance(team).available == 3000
    assert len(book.grants(team)) == 3
    assert book.audit(team).clean
