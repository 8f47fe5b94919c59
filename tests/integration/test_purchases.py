"""Buying credits on SQLite and PostgreSQL: admins only, exact prices, idempotency, webhooks,
refunds, alerts and auto-recharge, with the scriptable fake payment provider."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

import creditbook
from creditbook import Actor, Forbidden, FrozenClock, IdempotencyConflict, InvalidInput
from creditbook.adapters.db.tables import grants
from creditbook.adapters.db.tables_purchases import payment_events
from creditbook.adapters.payments import (
    FakePaymentProvider,
    PaymentEventType,
    WebhookSignatureError,
)
from creditbook.adapters.payments.signing import sign_webhook_payload
from creditbook.domain.money import Money
from creditbook.service.purchases import PurchaseService, RefundNotPossible, install


@pytest.fixture
def fake() -> FakePaymentProvider:
    return FakePaymentProvider("stripe", webhook_secret="whsec_test_secret")


@pytest.fixture
def shop(book: creditbook.Creditbook, fake: FakePaymentProvider) -> PurchaseService:
    book.purchases = install(book.kernel, fake)
    return book.purchases


@pytest.fixture
def team(book: creditbook.Creditbook) -> tuple[str, Actor, Actor]:
    t = book.create_team("Acme")
    admin = book.add_member(t.id, "alice@acme.com", "admin")
    member = book.add_member(t.id, "bob@acme.com", "member")
    return t.id, Actor(member_id=admin.id), Actor(member_id=member.id)


def _grant_rows(book: creditbook.Creditbook, team_id: str) -> int:
    assert book.engine is not None
    with book.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(grants).where(grants.c.team_id == team_id)
            ).scalar_one()
        )


def test_an_admin_buys_a_package_that_becomes_a_never_expiring_purchased_grant(
    book: creditbook.Creditbook, shop: PurchaseService, team: tuple[str, Actor, Actor]
) -> None:
    team_id, admin, _ = team
    purchase = shop.buy(team_id, package="1k", actor=admin)
    assert purchase.status == "completed"
    assert purchase.amount == Money.of("100.00", "USD")
    assert book.balance(team_id).available == 1000
    [grant] = book.grants(team_id)
    assert (grant.category.value, grant.source.value, grant.bucket) == (
        "purchased",
        "purchase",
        "purchased",
    )
    assert grant.expires_at is None
    assert grant.origin == purchase.id == shop.get(team_id, purchase.id).id
    assert [n.kind for n in book.notifications.list(team_id)] == ["purchase_completed"]


def test_a_custom_amount_is_priced_exactly(
    shop: PurchaseService, team: tuple[str, Actor, Actor]
) -> None:
    team_id, admin, _ = team
    purchase = shop.buy(team_id, credits=1234, actor=admin)
    assert purchase.to_dict()["amount"] == "123.40"
    assert purchase.amount.minor_units == 12340


def test_a_member_cannot_buy_and_is_told_which_admins_can(
    book: creditbook.Creditbook,
    shop: PurchaseService,
    fake: FakePaymentProvider,
    team: tuple[str, Actor, Actor],
) -> None:
    team_id, _, member = team
    with pytest.raises(Forbidden) as refused:
        shop.buy(team_id, package="1k", actor=member)
    assert "admin" in refused.value.message and "alice@acme.com" in refused.value.message
    assert shop.list(team_id) == []
    assert fake.calls == []
    assert book.balance(team_id).available == 0


def test_a_custom_amount_outside_the_bounds_is_refused_with_the_bounds(
    shop: PurchaseService, team: tuple[str, Actor, Actor]
) -> None:
    team_id, admin, _ = team
    with pytest.raises(InvalidInput, match="between 100 and 1000000"):
        shop.buy(team_id, credits=99, actor=admin)
    assert shop.list(team_id) == []


def test_a_double_submit_with_one_key_buys_once_and_asks_the_provider_once(
    book: creditbook.Creditbook,
    shop: PurchaseService,
    fake: FakePaymentProvider,
    team: tuple[str, Actor, Actor],
) -> None:
    team_id, admin, _ = team
    first = shop.buy(team_id, package="5k", actor=admin, idempotency_key="click-1")
    second = shop.buy(team_id, package="5k", actor=admin, idempotency_key="click-1")
    assert first.id == second.id
    assert len(shop.list(team_id)) == 1
    assert len(fake.calls_to("create_payment")) == 1
    assert book.balance(team_id).available == 5000
    with pytest.raises(IdempotencyConflict):
        shop.buy(team_id, package="10k", actor=admin, idempotency_key="click-1")


def test_two_concurrent_submits_with_one_key_buy_once(
    book: creditbook.Creditbook,
    shop: PurchaseService,
    fake: FakePaymentProvider,
    team: tuple[str, Actor, Actor],
) -> None:
    team_id, admin, _ = team
    barrier = threading.Barrier(2)
    ids: list[str] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            barrier.wait()
            ids.append(shop.buy(team_id, package="1k", actor=admin, idempotency_key="same").id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(set(ids)) == 1 and len(ids) == 2
    assert len(fake.calls_to("create_payment")) == 1
    assert book.balance(team_id).available == 1000


def test_a_pending_payment_grants_only_when_its_signed_webhook_arrives_and_only_once(
    book: creditbook.Creditbook,
    shop: PurchaseService,
    fake: FakePaymentProvider,
    team: tuple[str, Actor, Actor],
) -> None:
    team_id, admin, _ = team
    fake.pend_next()
    purchase = shop.buy(team_id, package="1k", actor=admin, payment_method="pm_card_visa")
    assert purchase.status == "pending" and purchase.provider_reference is not None
    assert purchase.client_secret is not None  # for the browser; never stored
    assert shop.get(team_id, purchase.id).client_secret is None
    assert book.balance(team_id).available == 0

    body, signature = fake.webhook(PaymentEventType.SUCCEEDED, purchase.provider_reference)
    assert shop.handle_webhook(body, signature).outcome == "granted"
    # Stripe retries the same event; an attacker replays the same signed body.
    assert shop.handle_webhook(body, signature).outcome == "duplicate"
    assert shop.handle_webhook(body, signature).outcome == "duplicate"
    # A second, different event for the same payment grants nothing more either.
    other, other_sig = fake.webhook(PaymentEventType.SUCCEEDED, purchase.provider_reference)
    assert shop.handle_webhook(other, other_sig).outcome == "noop"

    assert book.balance(team_id).available == 1000
    assert shop.get(team_id, purchase.id).status == "completed"
    assert _grant_rows(book, team_id) == 1
    assert book.audit(team_id).clean


def test_a_forged_webhook_is_rejected_and_grants_nothing(
    book: creditbook.Creditbook,
    shop: PurchaseService,
    fake: FakePaymentProvider,
    team: tuple[str, Actor, Actor],
) -> None:
    team_id, admin, _ = team
    fake.pend_next()
    purchase = shop.buy(team_id, package="1k", actor=admin)
    assert purchase.provider_reference is not None
    forged, forged_sig = fake.webhook(
        PaymentEventType.SUCCEEDED, purchase.provider_reference, secret="whsec_attacker"
    )
    with pytest.raises(WebhookSignatureError):
        shop.handle_webhook(forged, forged_sig)
    genuine, genuine_sig = fake.webhook(PaymentEventType.SUCCEEDED, purchase.provider_reference)
    tampered = genuine.replace(b'"amount": "100.00"', b'"amount": "1.00"')
    assert tampered != genuine
    with pytest.raises(WebhookSignatureError):
        shop.handle_webhook(tampered, genuine_sig)
    stale = sign_webhook_payload(genuine, "whsec_test_secret", timestamp=1_000_000)
    with pytest.raises(WebhookSignatureError):
        shop.handle_webhook(genuine, stale)
    with pytest.raises(WebhookSignatureError):
        shop.handle_webhook(genuine, "")
    assert book.balance(team_id).available == 0
    assert shop.get(team_id, purchase.id).status == "pending"
    assert book.engine is not None
    with book.engine.connect() as conn:
        seen = select(func.count()).where(payment_events.c.team_id == team_id)
        assert conn.execute(seen).scalar_one() == 0


def test_a_declined_card_marks_the_purchase_failed_grants_nothing_and_alerts(
    book: creditbook.Creditbook,
    shop: PurchaseService,
    fake: FakePaymentProvider,
    team: tuple[str, Actor, Actor],
) -> None:
    team_id, admin, _ = team
    fake.fail_next(message="Your card was declined.")
    purchase = shop.buy(team_id, package="1k", actor=admin, payment_method="pm_card_declined")
    assert purchase.status == "failed"
    assert purchase.failure_message == "Your card was declined."
    assert book.balance(team_id).available == 0
    [alert] = book.notifications.list(team_id)
    assert alert.kind == "purchase_failed" and alert.payload["purchase_id"] == purchase.id


def test_a_payment_failed_webhook_marks_a_pending_purchase_failed(
    book: creditbook.Creditbook,
    shop: PurchaseService,
    fake: FakePaymentProvider,
    team: tuple[str, Actor, Actor],
) -> None:
    team_id, admin, _ = team
    fake.pend_next()
    purchase = shop.buy(team_id, package="1k", actor=admin)
    assert purchase.provider_reference is not None
    body, sig = fake.webhook(
        PaymentEventType.FAILED, purchase.provider_reference, failure_message="insufficient funds"
    )
    assert shop.handle_webhook(body, sig).outcome == "failed"
    assert shop.get(team_id, purchase.id).status == "failed"
    assert book.balance(team_id).available == 0
    assert [n.kind for n in book.notifications.list(team_id)] == ["purchase_failed"]


def test_a_refund_after_partial_spending_takes_back_only_the_rest_and_its_price(
    book: creditbook.Creditbook,
    shop: PurchaseService,
    fake: FakePaymentProvider,
    team: tuple[str, Actor, Actor],
) -> None:
    team_id, admin, member = team
    purchase = shop.buy(team_id, package="1k", actor=admin)
    book.charge(team_id, "phone_finder", outcome="found", quantity=15, actor=member)  # 300
    refunded = shop.refund(team_id, purchase.id, actor=admin)
    assert refunded.status == "refunded"
    assert refunded.refunded_credits == 700
    assert refunded.refunded_amount == Money.of("70.00", "USD")
    assert not refunded.refund_pending and refunded.refund_reference is not None
    [call] = fake.calls_to("refund")
    assert call.kwargs["amount"] == Money.of("70.00", "USD")
    assert call.kwargs["reference"] == purchase.provider_reference
    assert book.balance(team_id).available == 0
    with pytest.raises(RefundNotPossible):
        shop.refund(team_id, purchase.id, actor=admin)
    assert len(fake.calls_to("refund")) == 1
    with pytest.raises(Forbidden):
        shop.refund(team_id, purchase.id, actor=member)
    assert book.audit(team_id).clean


def test_the_operator_may_refund_and_a_fully_spent_purchase_has_nothing_to_refund(
    book: creditbook.Creditbook, shop: PurchaseService, team: tuple[str, Actor, Actor]
) -> None:
    team_id, admin, _ = team
    purchase = shop.buy(team_id, credits=100, actor=admin)
    book.charge(team_id, "phone_finder", outcome="found", quantity=5)
    with pytest.raises(RefundNotPossible, match="all spent"):
        shop.refund(team_id, purchase.id, actor=Actor(operator="ops"))
    assert shop.get(team_id, purchase.id).status == "completed"


def test_free_credits_are_spent_before_purchased(
    book: creditbook.Creditbook, shop: PurchaseService, team: tuple[str, Actor, Actor]
) -> None:
    team_id, admin, _ = team
    shop.buy(team_id, package="1k", actor=admin)
    book.grant(team_id, 50, category="free", source="gift")
    receipt = book.charge(team_id, "phone_finder", outcome="found", quantity=3)  # 60
    assert [(d.category, d.credits) for d in receipt.grants] == [("free", 50), ("purchased", 10)]
    assert book.balance(team_id).buckets["purchased"] == 990


def test_the_low_balance_alert_fires_once_per_crossing(
    book: creditbook.Creditbook, shop: PurchaseService, team: tuple[str, Actor, Actor]
) -> None:
    team_id, admin, _ = team
    shop.update_settings(team_id, actor=admin, low_balance_threshold=100)
    book.grant(team_id, 200)
    for quantity in (3, 3, 1, 1):  # 200 -> 140 -> 80 -> 60 -> 40: crosses 100 once
        book.charge(team_id, "phone_finder", outcome="found", quantity=quantity)
    low = book.notifications.list(team_id, kind="low_balance")
    assert len(low) == 1 and low[0].payload == {"available": 80, "threshold": 100}
    book.grant(team_id, 500)  # back above: the next dip is a new crossing
    book.charge(team_id, "phone_finder", outcome="found", quantity=25)
    assert len(book.notifications.list(team_id, kind="low_balance")) == 2


def test_a_refused_charge_raises_one_depleted_alert_until_credits_arrive(
    book: creditbook.Creditbook, shop: PurchaseService, team: tuple[str, Actor, Actor]
) -> None:
    team_id, admin, _ = team
    for _ in range(3):
        with pytest.raises(creditbook.InsufficientCredits):
            book.charge(team_id, "phone_finder", outcome="found")
    [alert] = book.notifications.list(team_id, kind="depleted")
    assert alert.payload["needed"] == 20 and alert.payload["available"] == 0
    shop.buy(team_id, credits=100, actor=admin)
    for _ in range(6):
        with contextlib.suppress(creditbook.InsufficientCredits):
            book.charge(team_id, "phone_finder", outcome="found")
    assert len(book.notifications.list(team_id, kind="depleted")) == 2


def test_auto_recharge_buys_once_when_the_balance_crosses_its_threshold(
    book: creditbook.Creditbook,
    shop: PurchaseService,
    fake: FakePaymentProvider,
    team: tuple[str, Actor, Actor],
    clock: FrozenClock,
) -> None:
    team_id, admin, _ = team
    book.grant(team_id, 300)
    shop.update_settings(
        team_id,
        actor=admin,
        auto_recharge_enabled=True,
        auto_recharge_threshold=200,
        auto_recharge_credits=1000,
        auto_recharge_cooldown_seconds=3600,
    )
    book.charge(team_id, "phone_finder", outcome="found", quantity=5)  # 300 -> 200: not below
    assert shop.list(team_id) == []
    book.charge(team_id, "phone_finder", outcome="found")  # 180: crosses the threshold
    [recharge] = [p for p in shop.list(team_id) if p.kind == "auto_recharge"]
    assert recharge.status == "completed" and recharge.credits == 1000
    assert book.balance(team_id).available == 1180
    # Spending down again within the cooldown does not buy again.
    book.charge(team_id, "phone_finder", outcome="found", quantity=50)  # 180
    book.charge(team_id, "phone_finder", outcome="found", quantity=1)  # 160
    assert len([p for p in shop.list(team_id) if p.kind == "auto_recharge"]) == 1
    clock.advance(timedelta(hours=2))
    book.grant(team_id, 500)  # 660, above the threshold again: re-armed
    book.charge(team_id, "phone_finder", outcome="found", quantity=25)  # 160
    assert len([p for p in shop.list(team_id) if p.kind == "auto_recharge"]) == 2
    assert book.balance(team_id).available == 1160
    assert len(fake.calls_to("create_payment")) == 2


def test_a_failed_auto_recharge_alerts_and_stays_off_until_an_admin_turns_it_on(
    book: creditbook.Creditbook,
    shop: PurchaseService,
    fake: FakePaymentProvider,
    team: tuple[str, Actor, Actor],
    clock: FrozenClock,
) -> None:
    team_id, admin, _ = team
    book.grant(team_id, 100)
    shop.update_settings(
        team_id,
        actor=admin,
        auto_recharge_enabled=True,
        auto_recharge_threshold=90,
        auto_recharge_credits=500,
        auto_recharge_cooldown_seconds=0,
    )
    fake.fail_next(message="card expired")
    book.charge(team_id, "phone_finder", outcome="found")  # 80 < 90
    settings = shop.settings(team_id)
    assert not settings.auto_recharge_enabled
    assert settings.auto_recharge_disabled_reason is not None
    assert "card expired" in settings.auto_recharge_disabled_reason
    assert [n.kind for n in book.notifications.list(team_id)] == ["auto_recharge_failed"]
    book.charge(team_id, "phone_finder", outcome="found")
    assert len(fake.calls_to("create_payment")) == 1  # not retried in a loop
    shop.update_settings(team_id, actor=admin, auto_recharge_enabled=True)
    book.charge(team_id, "phone_finder", outcome="found")
    assert len(fake.calls_to("create_payment")) == 2
    assert book.balance(team_id).available == 540


def test_settings_are_for_admins_and_a_webhook_url_gets_a_secret(
    shop: PurchaseService, team: tuple[str, Actor, Actor]
) -> None:
    team_id, admin, member = team
    with pytest.raises(Forbidden):
        shop.update_settings(team_id, actor=member, low_balance_threshold=10)
    changed = shop.update_settings(team_id, actor=admin, webhook_url="https://hooks.acme.com/cb")
    assert changed.webhook_secret is not None and changed.webhook_secret.startswith("whsec_")
    again = shop.settings(team_id)
    assert again.webhook_secret is None and again.webhook_secret_set
    with pytest.raises(InvalidInput):
        shop.update_settings(team_id, actor=admin, webhook_url="ftp://nope")
    with pytest.raises(InvalidInput, match="threshold and a number of credits"):
        shop.update_settings(team_id, actor=admin, auto_recharge_enabled=True)


def test_purchases_export_as_csv(shop: PurchaseService, team: tuple[str, Actor, Actor]) -> None:
    team_id, admin, _ = team
    first = shop.buy(team_id, package="1k", actor=admin)
    second = shop.buy(team_id, credits=1234, actor=admin)
    lines = shop.export_csv(team_id).strip().split("\n")
    assert lines[0].startswith("id,created_at,kind,credits,amount,currency,status")
    assert lines[1].startswith(f"{first.id},") and ",1000,100.00,USD,completed," in lines[1]
    assert lines[2].startswith(f"{second.id},") and ",1234,123.40,USD,completed," in lines[2]
