"""Problem details for every error, rate limits, request ids and logs, health and schema."""

from __future__ import annotations

import json
import logging
import re

import pytest
from api_helpers import OPERATOR_KEY, Api, TestClient, assert_problem, bearer, make_settings

import creditbook
from creditbook.entrypoints.api import create_app
from creditbook.entrypoints.api.logs import JsonFormatter


def test_invalid_bodies_are_422_problems_with_the_field_errors(api: Api) -> None:
    team = api.new_team()
    cases = [
        {"feature": "email_finder", "quantity": 0},
        {"feature": "email_finder", "quantity": "many"},
        {"feature": "email_finder\x00"},
        {"quantity": 1},
        {"feature": "email_finder", "surprise": True},
        [],
    ]
    for body in cases:
        r = api.client.post("/v1/charges", json=body, headers=team.admin)
        problem = assert_problem(r, 422, "validation_error")
        assert problem["errors"] and problem["errors"][0]["loc"]
    broken = api.client.post(
        "/v1/charges",
        content=b'{"feature": ',
        headers={**team.admin, "Content-Type": "application/json"},
    )
    assert_problem(broken, 422, "validation_error")
    far = api.client.get("/v1/ledger", params={"from": "99999-01-01"}, headers=team.admin)
    assert_problem(far, 422, "validation_error")
    long_key = {**team.admin, "Idempotency-Key": "k" * 256}
    r = api.client.post("/v1/charges", json={"feature": "email_finder"}, headers=long_key)
    assert_problem(r, 422, "validation_error")


def test_unknown_routes_and_methods_are_problems_too(api: Api) -> None:
    assert_problem(api.client.get("/v1/nothing-here"), 404, "not_found")
    assert_problem(api.client.put("/v1/charges", json={}), 405, "method_not_allowed")


def test_a_bug_answers_a_500_problem_and_logs_one_line_with_its_traceback(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    team = api.new_team()

    def broken(team_id: str) -> None:
        raise RuntimeError("boom")

    api.book.balance = broken  # type: ignore[assignment,method-assign]
    with caplog.at_level(logging.INFO, logger="creditbook"):
        r = api.client.get("/v1/credits", headers=team.admin)
    body = assert_problem(r, 500, "internal_error")
    assert "boom" not in body["detail"]
    ours = [rec for rec in caplog.records if getattr(rec, "request_id", None) == body["request_id"]]
    assert len(ours) == 1
    (line,) = ours
    assert line.levelno == logging.ERROR and line.getMessage() == "request"
    assert vars(line)["code"] == "internal_error" and vars(line)["status"] == 500
    assert line.exc_info is not None and "boom" in str(line.exc_info[1])


def test_the_rate_limit_answers_429_with_retry_after_and_exempts_operator_and_service_keys(
    book: creditbook.Creditbook,
) -> None:
    app = create_app(book, make_settings(rate_limit_requests=3, rate_limit_window_seconds=60))
    with TestClient(app) as client:
        op = bearer(OPERATOR_KEY)
        made = client.post(
            "/v1/teams", json={"name": "A", "admin_email": "a@a.example"}, headers=op
        ).json()
        key = bearer(made["admin_api_key"])
        statuses = [client.get("/v1/credits", headers=key).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        r = client.get("/v1/credits", headers=key)
        assert_problem(r, 429, "rate_limited")
        assert 1 <= int(r.headers["retry-after"]) <= 60  # when the oldest of the 3 expires
        team_id = made["team"]["id"]
        assert all(
            client.get(f"/v1/teams/{team_id}", headers=op).status_code == 200 for _ in range(6)
        )
        service_key_id = made["admin_api_key"].split(".")[2]
    exempt = create_app(
        book,
        make_settings(
            rate_limit_requests=1,
            rate_limit_window_seconds=60,
            rate_limit_exempt_keys=f"key_other, {service_key_id}",
        ),
    )
    with TestClient(exempt) as client:
        assert all(client.get("/v1/credits", headers=key).status_code == 200 for _ in range(5))


def test_every_response_echoes_a_request_id_and_every_log_line_carries_it(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="creditbook"):
        r = api.client.get("/healthz", headers={"X-Request-ID": "req-abc.123"})
        bad = api.client.get("/v1/credits", headers={"X-Request-ID": "bad id\t"})
    assert r.headers["x-request-id"] == "req-abc.123"
    assert re.fullmatch(r"req_[0-9a-z]{26}", bad.headers["x-request-id"])
    assert bad.json()["request_id"] == bad.headers["x-request-id"]
    lines = [json.loads(JsonFormatter().format(rec)) for rec in caplog.records]
    ours = [line for line in lines if line["request_id"] == "req-abc.123"]
    assert ours and ours[0]["path"] == "/healthz" and ours[0]["status"] == 200


def test_health_readiness_and_the_benchmark_noop(api: Api, book: creditbook.Creditbook) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json() == {"status": "ready"}
    assert api.client.get("/v1/noop").status_code == 200
    off = create_app(book, make_settings(api_noop=False))
    with TestClient(off) as client:
        assert_problem(client.get("/v1/noop"), 404, "not_found")


def test_readiness_fails_with_a_503_problem_when_the_database_is_gone(
    book: creditbook.Creditbook,
) -> None:
    # Nothing listens on port 1: the engine is made lazily, the first query fails.
    broken = creditbook.open(
        "postgresql+psycopg://postgres@127.0.0.1:1/gone?connect_timeout=2", upgrade=False
    )
    with TestClient(create_app(broken, make_settings())) as client:
        assert_problem(client.get("/readyz"), 503, "not_ready")


def test_the_openapi_schema_documents_models_security_and_problems(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    charges = schema["paths"]["/v1/charges"]["post"]
    assert charges["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ChargeOut"
    )
    assert "application/problem+json" in charges["responses"]["402"]["content"]
    assert "Problem" in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert any(p["name"] == "Idempotency-Key" for p in charges["parameters"])
    assert api.client.get("/docs").status_code == 200


def test_idempotency_keys_are_kept_30_days_then_purged(api: Api) -> None:
    from datetime import timedelta

    from creditbook.domain.errors import InvalidInput
    from creditbook.service.access import AccessService

    team = api.new_team(credits=100)
    headers = {**team.admin, "Idempotency-Key": "old-key"}
    body = {"feature": "email_finder", "outcome": "deliverable"}
    first = api.client.post("/v1/charges", json=body, headers=headers)
    access = AccessService(api.book.kernel)
    api.clock.advance(timedelta(days=29))
    access.purge_idempotency_keys()
    assert api.client.post("/v1/charges", json=body, headers=headers).json() == first.json()
    with pytest.raises(InvalidInput):
        access.purge_idempotency_keys(timedelta(days=7))
    api.clock.advance(timedelta(days=2))
    assert access.purge_idempotency_keys() >= 1  # the database may hold other tests' keys
    again = api.client.post("/v1/charges", json=body, headers=headers)
    assert again.json()["charge_id"] != first.json()["charge_id"]
