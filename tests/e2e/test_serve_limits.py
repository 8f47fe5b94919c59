"""Request bodies against a real ``creditbook serve``: each route's limit, and the key first.

The limits (defaults): 1 MiB for JSON routes, 20 MiB for enrichment uploads, 256
KiB for the Stripe webhook, 64 KiB for dashboard forms; beyond them 413
``payload_too_large``, whether ``Content-Length`` declares the size or the body
streams in chunks. An anonymous spend request is refused before its body is
read: the server answers 401 while the client has not sent a byte of it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from e2e_helpers import OPERATOR_KEY, Server, start_server, stop_server

from creditbook.service.requests import MAX_QUANTITY

MiB = 1024 * 1024
KiB = 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("serve-limits")
    running = start_server(f"sqlite:///{workdir / 'creditbook.db'}", workdir / "server.log")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def admin_key(server: Server) -> str:
    with server.client(OPERATOR_KEY) as op:
        made = op.post("/v1/teams", json={"name": "Limits", "admin_email": "ada@limits.example"})
        assert made.status_code == 201, made.text
        team_id = made.json()["team"]["id"]
        granted = op.post(
            f"/v1/teams/{team_id}/grants",
            json={"credits": 1000, "category": "purchased", "reason": "test"},
        )
        assert granted.status_code == 201, granted.text
    key: str = made.json()["admin_api_key"]
    return key


def _assert_too_large(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text[:500]
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "payload_too_large"
    assert problem["max_bytes"] == limit
    assert f"{limit:,} bytes" in problem["detail"]


def _charge_padded_to(size: int) -> bytes:
    head = b'{"feature": "email_finder", "outcome": "deliverable", "memo": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def _chunks(body: bytes, size: int = 64 * KiB) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_json_body_over_1_mib_is_refused_413_whether_declared_or_streamed(
    server: Server, admin_key: str
) -> None:
    body = _charge_padded_to(2 * MiB)
    as_json = {"Content-Type": "application/json"}
    with server.client() as anonymous:
        _assert_too_large(anonymous.post("/v1/charges", content=body, headers=as_json), MiB)
    with server.client(admin_key) as admin:
        # No Content-Length (chunked): counted as it arrives, refused past the limit.
        for path in ("/v1/charges", "/v1/charges:batch"):
            _assert_too_large(admin.post(path, content=_chunks(body), headers=as_json), MiB)
        # Under the limit the same routes parse the body as before; the largest valid
        # batch (every field at its longest) fits in 1 MiB.
        fine = admin.post("/v1/charges", json={"feature": "email_finder", "outcome": "risky"})
        assert fine.status_code == 201, fine.text
        assert admin.get("/v1/credits").json()["available"] == 995
        longest = {
            "feature": "f" * 64,
            "quantity": MAX_QUANTITY,
            "outcome": "o" * 64,
            "call": {"duration_seconds": 604_800, "answered": True, "destination": "d" * 64},
        }
        batch = {"charges": [{**longest, "idempotency_key": f"{i:0255d}"} for i in range(1000)]}
        answered = admin.post("/v1/charges:batch", json=batch)
        assert answered.status_code == 200, answered.text[:500]
        assert answered.json()["failed"] == 1000  # an unknown feature each: read, parsed, refused
    assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200


def test_the_stripe_webhook_reads_at_most_256_kib_before_its_signature(server: Server) -> None:
    event = {"id": "evt_big", "type": "checkout.session.completed", "pad": "x" * (300 * KiB)}
    headers = {"Stripe-Signature": "t=1,v1=forged", "Content-Type": "application/json"}
    with server.client() as stripe:
        too_big = json.dumps(event).encode()
        _assert_too_large(
            stripe.post("/v1/webhooks/stripe", content=too_big, headers=headers), 256 * KiB
        )
        streamed = stripe.post("/v1/webhooks/stripe", content=_chunks(too_big), headers=headers)
        _assert_too_large(streamed, 256 * KiB)
        event["pad"] = "x" * (100 * KiB)
        small = stripe.post("/v1/webhooks/stripe", content=json.dumps(event), headers=headers)
        assert small.status_code != 413  # read, then refused for its signature or provider


def test_an_enrichment_upload_may_be_larger_than_a_json_body_up_to_20_mib(
    server: Server, admin_key: str
) -> None:
    leads = [{"email": f"lead{i}@acme.example", "note": "n" * 1500} for i in range(1000)]
    job = {"leads": leads, "features": ["email_finder"], "estimate_only": True}
    body = json.dumps(job).encode()
    as_json = {"Content-Type": "application/json"}
    assert 1.2 * MiB < len(body) < 2 * MiB
    with server.client(admin_key) as admin:
        made = admin.post("/v1/enrichment-jobs", content=body, headers=as_json)
        assert made.status_code == 201, made.text[:500]
        assert made.json()["job"]["total"] == 1000
        huge = b'{"leads": [' + b'{"email": "a@b.example"},' * (21 * MiB // 25) + b"{}]}"
        _assert_too_large(
            admin.post("/v1/enrichment-jobs", content=huge, headers=as_json), 20 * MiB
        )
    with server.client() as browser:
        upload = {"leads": ("leads.csv", b"email\n" + b"a@b.example\n" * (21 * MiB // 12))}
        _assert_too_large(browser.post("/dashboard/enrichment", files=upload), 20 * MiB)


def test_a_dashboard_form_over_64_kib_is_refused_413(server: Server) -> None:
    with server.client() as browser:
        form = {"csrf": "x", "api_key": "k" * (100 * KiB)}
        _assert_too_large(browser.post("/dashboard/signin", data=form), 64 * KiB)
        assert browser.get("/dashboard/signin").status_code == 200


def _answer_before_the_body(server: Server, path: str, authorization: str | None) -> dict:  # type: ignore[type-arg]
    """POST ``path`` declaring a 500 KB body, send none of it; the answer read within 5 s."""
    address = urlsplit(server.base_url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Content-Length: 500000",
        *([f"Authorization: {authorization}"] if authorization else []),
    ]
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received += chunk
            head, _, rest = received.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(rest) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                rest += chunk
        except TimeoutError:
            pytest.fail(f"no answer to {path} within 5 s: the server waited for the body")
    status = int(head.split(b" ", 2)[1])
    problem: dict = json.loads(rest[:length])  # type: ignore[type-arg]
    problem["http_status"] = status
    return problem


@pytest.mark.parametrize(
    "path", ["/v1/charges", "/v1/holds", "/v1/holds/hold_x/capture", "/v1/charges:batch"]
)
def test_an_anonymous_spend_request_is_refused_before_its_body_is_read(
    server: Server, path: str
) -> None:
    for authorization in (None, "Bearer cbk.team_x.key_y.not-a-secret"):
        problem = _answer_before_the_body(server, path, authorization)
        assert (problem["http_status"], problem["code"]) == (401, "unauthorized")
