"""The purchases, refunds, webhooks, alerts and settings endpoints over a real database."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import creditbook
from creditbook.adapters.payments import FakePaymentProvider, PaymentEventType
from creditbook.config import Settings
from creditbook.entrypoints.api import create_app
from creditbook.service.access import AccessService
from creditbook.service.purchases import install

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

OPERATOR_KEY = "operator-key-for-purchase-tests-0123456789"


@dataclass
class Ctx:
    client: TestClient
    book: creditbook.Creditbook
    fake: FakePaymentProvider
    team_id: str
    admin: dict[str, str]
    member: dict[str, str]
    op: dict[str, str]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def ctx(book: creditbook.Creditbook, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ctx]:
    monkeypatch.setenv("CREDITBOOK_NOTIFY_WORKER", "0")
    fake = FakePaymentProvider("stripe", webhook_secret="whsec_api_tests")
    book.purchases = install(book.kernel, fake)
    team = book.create_team("Acme").id
    admin = book.add_member(team, "alice@acme.com", "admin")
    member = book.add_member(team, "bob@acme.com", "member")
    keys = AccessService(book.kernel)
    settings = Settings(
        operator_key=OPERATOR_KEY, rate_limit_requests=10_000, rate_limit_window_seconds=1
    )
    with TestClient(create_app(book, settings), raise_server_exceptions=False) as client:
        yield Ctx(
            client,
            book,
            fake,
            team,
            _bearer(keys.issue_key(team, admin.id).api_key),
            _bearer(keys.issue_key(team, member.id).api_key),
            _bearer(OPERATOR_KEY),
        )


def test_an_admin_buys_a_package_and_gets_201_with_the_exact_price(ctx: Ctx) -> None:
    r = ctx.client.post("/v1/purchases", json={"package": "1k"}, headers=ctx.admin)
    assert r.status_code == 201, r.text
    purchase = r.json()["purchase"]
    assert {k: purchase[k] for k in ("credits", "amount", "currency", "status")} == {
        "credits": 1000,
        "amount": "100.00",
        "currency": "USD",
        "status": "completed",
    }
    custom = ctx.client.post("/v1/purchases", json={"credits": 1234}, headers=ctx.admin)
    assert custom.json()["purchase"]["amount"] == "123.40"
    assert ctx.client.get("/v1/credits", headers=ctx.admin).json()["available"] == 2234


def test_a_member_gets_403_naming_the_admins(ctx: Ctx) -> None:
    r = ctx.client.post("/v1/purchases", json={"package": "1k"}, headers=ctx.member)
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "forbidden" and "alice@acme.com" in body["detail"]
    assert ctx.fake.calls == []


def test_a_double_click_with_one_idempotency_key_buys_once(ctx: Ctx) -> None:
    headers = {**ctx.admin, "Idempotency-Key": "buy-once"}
    first = ctx.client.post("/v1/purchases", json={"package": "5k"}, headers=headers)
    second = ctx.client.post("/v1/purchases", json={"package": "5k"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert len(ctx.client.get("/v1/purchases", headers=ctx.admin).json()["purchases"]) == 1
    assert ctx.client.get("/v1/credits", headers=ctx.admin).json()["available"] == 5000


def test_bad_purchase_bodies_are_refused_with_the_valid_choices(ctx: Ctx) -> None:
    r = ctx.client.post("/v1/purchases", json={"credits": 5}, headers=ctx.admin)
    assert r.status_code == 422 and "between 100 and 1000000" in r.json()["detail"]
    r = ctx.client.post("/v1/purchases", json={"package": "2k"}, headers=ctx.admin)
    assert r.status_code == 422 and "1k" in r.json()["detail"]
    r = ctx.client.post("/v1/purchases", json={}, headers=ctx.admin)
    assert r.status_code == 422


def test_a_stripe_purchase_is_pending_until_its_signed_webhook(ctx: Ctx) -> None:
    ctx.fake.pend_next()
    r = ctx.client.post(
        "/v1/purchases",
        json={"package": "1k", "payment_method": "pm_card_visa"},
        headers=ctx.admin,
    )
    purchase = r.json()["purchase"]
    assert purchase["status"] == "pending"
    body, signature = ctx.fake.webhook(PaymentEventType.SUCCEEDED, purchase["provider_reference"])
    forged_body, forged_sig = ctx.fake.webhook(
        PaymentEventType.SUCCEEDED, purchase["provider_reference"], secret="whsec_forger"
    )
    forged = ctx.client.post(
        "/v1/webhooks/stripe", content=forged_body, headers={"Stripe-Signature": forged_sig}
    )
    assert forged.status_code == 400 and forged.json()["code"] == "invalid_signature"
    assert ctx.client.get("/v1/credits", headers=ctx.admin).json()["available"] == 0
    for expected in ("granted", "duplicate"):
        r = ctx.client.post(
            "/v1/webhooks/stripe", content=body, headers={"Stripe-Signature": signature}
        )
        assert r.status_code == 200 and r.json()["outcome"] == expected
    assert ctx.client.get("/v1/credits", headers=ctx.admin).json()["available"] == 1000
    one = ctx.client.get(f"/v1/purchases/{purchase['id']}", headers=ctx.member)
    assert one.json()["purchase"]["status"] == "completed"


def test_refunds_history_csv_and_alerts(ctx: Ctx) -> None:
    purchase = ctx.client.post("/v1/purchases", json={"package": "1k"}, headers=ctx.admin).json()[
        "purchase"
    ]
    r = ctx.client.post(
        "/v1/charges",
        json={"feature": "phone_finder", "outcome": "found", "quantity": 10},
        headers=ctx.member,
    )
    assert r.status_code == 201, r.text
    denied = ctx.client.post(f"/v1/purchases/{purchase['id']}/refund", headers=ctx.member)
    assert denied.status_code == 403
    r = ctx.client.post(f"/v1/purchases/{purchase['id']}/refund", headers=ctx.admin)
    assert r.status_code == 200, r.text
    refunded = r.json()["purchase"]
    assert (refunded["status"], refunded["refunded_credits"], refunded["refunded_amount"]) == (
        "refunded",
        800,
        "80.00",
    )
    again = ctx.client.post(
        f"/v1/teams/{ctx.team_id}/purchases/{purchase['id']}/refund", headers=ctx.op
    )
    assert again.status_code == 409 and again.json()["code"] == "refund_not_possible"
    csv_answer = ctx.client.get("/v1/purchases/export.csv", headers=ctx.admin)
    assert csv_answer.headers["content-type"].startswith("text/csv")
    assert f"{purchase['id']}," in csv_answer.text and ",refunded," in csv_answer.text
    assert ctx.client.get("/v1/purchases/pur_nope", headers=ctx.admin).status_code == 404
    kinds = [
        n["kind"]
        for n in ctx.client.get("/v1/notifications", headers=ctx.admin).json()["notifications"]
    ]
    assert kinds == ["purchase_refunded", "purchase_completed"]
    assert ctx.client.get("/v1/notifications", headers=ctx.member).status_code == 403


def test_settings_are_read_and_changed_by_admins(ctx: Ctx) -> None:
    r = ctx.client.put(
        "/v1/settings",
        json={
            "low_balance_threshold": 300,
            "webhook_url": "https://hooks.acme.com/creditbook",
            "auto_recharge": {"enabled": True, "threshold": 100, "credits": 1000},
        },
        headers=ctx.admin,
    )
    assert r.status_code == 200, r.text
    shown = r.json()["settings"]
    assert shown["webhook_secret"].startswith("whsec_")
    assert shown["auto_recharge"]["enabled"] is True
    read = ctx.client.get("/v1/settings", headers=ctx.admin).json()["settings"]
    assert "webhook_secret" not in read and read["webhook_secret_set"] is True
    assert read["low_balance_threshold"] == 300 and read["auto_recharge"]["credits"] == 1000
    assert ctx.client.get("/v1/settings", headers=ctx.member).status_code == 403
    off = ctx.client.put(
        "/v1/settings", json={"auto_recharge": {"enabled": False}}, headers=ctx.admin
    )
    assert off.json()["settings"]["auto_recharge"]["enabled"] is False
    assert off.json()["settings"]["low_balance_threshold"] == 300
