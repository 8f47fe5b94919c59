"""The Stripe flow end to end: localstripe, a real ``creditbook serve``, real signed webhooks.

Nothing is mocked: the official ``stripe`` SDK inside the served process talks
to localstripe on loopback, localstripe posts its signed
``payment_intent.*`` webhooks to the served ``/v1/webhooks/stripe``, and the
test only uses the HTTP API.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "integration" / "payments"))
from localstripe_server import free_port, register_webhook, run_localstripe

import creditbook
from creditbook.adapters.payments import ManualPaymentProvider, sign_webhook_payload
from creditbook.service.access import AccessService

SRC = Path(__file__).parents[2] / "src"
WEBHOOK_SECRET = "whsec_creditbook_e2e"
pytestmark = pytest.mark.slow


@dataclass
class Served:
    base: str
    admin: dict[str, str]
    member: dict[str, str]
    team_id: str


def _wait_until_up(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"creditbook serve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"creditbook serve did not answer in 30 s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("stripe-e2e")
    url = f"sqlite:///{workdir / 'creditbook.db'}"
    book = creditbook.open(url, payment_provider=ManualPaymentProvider())
    team = book.create_team("Acme").id
    admin = book.add_member(team, "alice@acme.com", "admin")
    member = book.add_member(team, "bob@acme.com", "member")
    keys = AccessService(book.kernel)
    admin_key = keys.issue_key(team, admin.id).api_key
    member_key = keys.issue_key(team, member.id).api_key
    assert book.engine is not None
    book.engine.dispose()

    with run_localstripe() as stripe_base:
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(SRC),
            "CREDITBOOK_PAYMENT_PROVIDER": "stripe",
            "CREDITBOOK_STRIPE_API_KEY": "sk_test_creditbook_e2e",
            "CREDITBOOK_STRIPE_API_BASE": stripe_base,
            "CREDITBOOK_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "CREDITBOOK_RATE_LIMIT_REQUESTS": "10000",
            "CREDITBOOK_NOTIFY_WORKER": "0",
        }
        log = workdir / "serve.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "creditbook.entrypoints.cli",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--database-url",
                    url,
                    "--log-level",
                    "warning",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(base, process, log)
            register_webhook(
                stripe_base,
                "creditbook-e2e",
                url=f"{base}/v1/webhooks/stripe",
                secret=WEBHOOK_SECRET,
                events=["payment_intent.succeeded", "payment_intent.payment_failed"],
            )
            yield Served(
                base,
                {"Authorization": f"Bearer {admin_key}"},
                {"Authorization": f"Bearer {member_key}"},
                team,
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _available(s: Served) -> int:
    value: int = httpx.get(f"{s.base}/v1/credits", headers=s.admin).json()["available"]
    return value


def _wait_for_status(s: Served, purchase_id: str, wanted: str) -> dict[str, object]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found: dict[str, object] = httpx.get(
            f"{s.base}/v1/purchases/{purchase_id}", headers=s.admin
        ).json()["purchase"]
        if found["status"] == wanted:
            return found
        time.sleep(0.2)
    raise AssertionError(f"purchase {purchase_id} never became {wanted}: {found}")


def test_buying_with_a_test_card_grants_the_credits_once_when_stripe_confirms(
    served: Served,
) -> None:
    before = _available(served)
    headers = {**served.admin, "Idempotency-Key": "e2e-buy-1"}
    body = {"package": "1k", "payment_method": "pm_card_visa"}
    r = httpx.post(f"{served.base}/v1/purchases", json=body, headers=headers, timeout=30)
    assert r.status_code == 201, r.text
    purchase = r.json()["purchase"]
    assert purchase["status"] == "pending" and purchase["amount"] == "100.00"
    assert str(purchase["provider_reference"]).startswith("pi_")
    assert _available(served) == before  # nothing before Stripe's signed webhook

    # A double click while the payment is in flight buys nothing more.
    again = httpx.post(f"{served.base}/v1/purchases", json=body, headers=headers, timeout=30)
    assert again.status_code == 201 and again.json()["purchase"]["id"] == purchase["id"]

    done = _wait_for_status(served, str(purchase["id"]), "completed")
    assert done["provider_reference"] == purchase["provider_reference"]
    assert _available(served) == before + 1000
    time.sleep(1.5)  # any second webhook would have arrived by now
    assert _available(served) == before + 1000
    purchases = httpx.get(f"{served.base}/v1/purchases", headers=served.admin).json()
    assert [p["id"] for p in purchases["purchases"]].count(purchase["id"]) == 1
    assert len(purchases["purchases"]) == 1


def test_a_declined_card_fails_the_purchase_and_grants_nothing(served: Served) -> None:
    before = _available(served)
    r = httpx.post(
        f"{served.base}/v1/purchases",
        json={"credits": 500, "payment_method": "pm_card_chargeCustomerFail"},
        headers=served.admin,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    failed = _wait_for_status(served, r.json()["purchase"]["id"], "failed")
    assert failed["failure_message"]
    time.sleep(1.5)
    assert _available(served) == before
    kinds = [
        n["kind"]
        for n in httpx.get(f"{served.base}/v1/notifications", headers=served.admin).json()[
            "notifications"
        ]
    ]
    assert "purchase_failed" in kinds


def test_a_forged_webhook_is_refused_by_the_served_api(served: Served) -> None:
    before = _available(served)
    payload = (
        b'{"id": "evt_forged", "object": "event", "type": "payment_intent.succeeded", '
        b'"data": {"object": {"id": "pi_forged", "amount": 1000000, "currency": "usd", '
        b'"metadata": {"purchase_id": "pur_x", "team_id": "' + served.team_id.encode() + b'"}}}}'
    )
    forged = sign_webhook_payload(payload, "whsec_not_the_secret")
    r = httpx.post(
        f"{served.base}/v1/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": forged, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_signature"
    assert _available(served) == before


def test_a_genuine_signature_timestamped_an_hour_ahead_is_refused_by_the_served_api(
    served: Served,
) -> None:
    payload = (
        b'{"id": "evt_ahead", "object": "event", "type": "payment_intent.succeeded", '
        b'"data": {"object": {"id": "pi_ahead", "amount": 1000, "currency": "usd", '
        b'"metadata": {"purchase_id": "pur_x", "team_id": "' + served.team_id.encode() + b'"}}}}'
    )
    ahead = sign_webhook_payload(payload, WEBHOOK_SECRET, timestamp=int(time.time()) + 3600)
    r = httpx.post(
        f"{served.base}/v1/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": ahead, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_signature", r.text
    assert "in the future" in r.json()["detail"]


def test_a_refund_through_stripe_takes_back_only_the_unspent_credits(served: Served) -> None:
    r = httpx.post(
        f"{served.base}/v1/purchases",
        json={"credits": 200, "payment_method": "pm_card_visa"},
        headers=served.admin,
        timeout=30,
    )
    purchase_id = r.json()["purchase"]["id"]
    _wait_for_status(served, purchase_id, "completed")
    others = _available(served) - 200  # older grants are spent first (oldest first)
    assert others % 20 == 0
    spent = httpx.post(
        f"{served.base}/v1/charges",
        json={"feature": "phone_finder", "outcome": "found", "quantity": others // 20 + 1},
        headers=served.member,
    )
    assert spent.status_code == 201, spent.text
    assert _available(served) == 180  # 20 of this purchase's 200 credits are spent
    refund = httpx.post(
        f"{served.base}/v1/purchases/{purchase_id}/refund", headers=served.admin, timeout=30
    )
    assert refund.status_code == 200, refund.text
    refunded = refund.json()["purchase"]
    assert refunded["status"] == "refunded"
    assert (refunded["refunded_credits"], refunded["refunded_amount"]) == (180, "18.00")
    assert str(refunded["refund_reference"]).startswith("re_")
    assert refunded["refund_pending"] is False
    assert _available(served) == 0
