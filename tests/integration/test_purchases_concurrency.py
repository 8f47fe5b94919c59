"""Auto-recharge and alerts stay exact when many charges of one team run at once."""

from __future__ import annotations

import threading
from collections.abc import Callable

import creditbook
from creditbook import Actor, InsufficientCredits
from creditbook.adapters.payments import FakePaymentProvider
from creditbook.service.purchases import install

THREADS = 16


def _at_once(work: Callable[[int], None]) -> list[BaseException]:
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:  # surfaced to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_auto_recharge_fires_once_under_sixteen_concurrent_charges_crossing_the_threshold(
    book: creditbook.Creditbook,
) -> None:
    fake = FakePaymentProvider()
    shop = install(book.kernel, fake)
    team = book.create_team("Busy").id
    admin = book.add_member(team, "alice@busy.com", "admin")
    book.grant(team, 400)
    shop.update_settings(
        team,
        actor=Actor(member_id=admin.id),
        low_balance_threshold=250,
        auto_recharge_enabled=True,
        auto_recharge_threshold=250,
        auto_recharge_credits=1000,
        auto_recharge_cooldown_seconds=3600,
    )

    errors = _at_once(
        lambda i: book.charge(team, "phone_finder", outcome="found", idempotency_key=f"c{i}")
    )

    assert errors == []
    recharges = [p for p in shop.list(team) if p.kind == "auto_recharge"]
    assert len(recharges) == 1 and recharges[0].status == "completed"
    assert len(fake.calls_to("create_payment")) == 1
    assert book.balance(team).available == 400 - THREADS * 20 + 1000
    assert len(book.notifications.list(team, kind="low_balance")) == 1
    assert book.audit(team).clean


def test_sixteen_concurrent_refused_charges_raise_one_depleted_alert(
    book: creditbook.Creditbook,
) -> None:
    install(book.kernel, FakePaymentProvider())
    team = book.create_team("Empty").id
    refused: list[int] = []

    def charge(i: int) -> None:
        try:
            book.charge(team, "phone_finder", outcome="found")
        except InsufficientCredits:
            refused.append(i)

    assert _at_once(charge) == []
    assert len(refused) == THREADS
    assert len(book.notifications.list(team, kind="depleted")) == 1
