"""POST /v1/charges:batch: many charges in one request, one result per item, on both databases."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

import creditbook
from creditbook.config import Settings
from creditbook.entrypoints.api import create_app
from creditbook.service.access import AccessService

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def client_and_team(book: creditbook.Creditbook) -> Iterator[tuple[TestClient, str, str]]:
    settings = Settings(env="test", operator_key="o" * 32, rate_limit_requests=1000)
    app = create_app(book, settings)
    _, _, key = AccessService(book.kernel).create_team(
        "Batch API", time_zone="UTC", admin_email="ada@batch.example"
    )
    book.grant(key.team_id, 12, category="purchased", source="purchase")
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, key.team_id, key.api_key


def test_a_batch_answers_each_charge_with_its_own_status_and_body(
    client_and_team: tuple[TestClient, str, str], book: creditbook.Creditbook
) -> None:
    client, team, api_key = client_and_team
    auth = {"Authorization": f"Bearer {api_key}"}
    r = client.post(
        "/v1/charges:batch",
        json={
            "charges": [
                {"feature": "email_finder", "outcome": "deliverable", "idempotency_key": "b1"},
                {"feature": "email_finder", "outcome": "no_such_outcome"},
                {"feature": "email_finder", "outcome": "deliverable", "idempotency_key": "b2"},
                {"feature": "email_finder", "outcome": "deliverable", "idempotency_key": "b3"},
                {"feature": "email_finder", "outcome": "not_found"},
            ]
        },
        headers=auth,
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert [x["status"] for x in data["results"]] == [201, 422, 201, 402, 201]
    assert data["succeeded"] == 3 and data["failed"] == 2
    first = data["results"][0]["body"]
    assert first["credits"] == 5 and first["feature"] == "email_finder"
    refused = data["results"][3]["body"]
    assert refused["code"] == "insufficient_credits"
    assert refused["type"] == "urn:creditbook:problem:insufficient_credits"
    assert data["results"][4]["body"]["credits"] == 0
    assert book.balance(team).available == 2
    # An item's key is the Idempotency-Key of POST /v1/charges: the retry answers the first.
    again = client.post(
        "/v1/charges",
        json={"feature": "email_finder", "outcome": "deliverable"},
        headers=auth | {"Idempotency-Key": "b1"},
    )
    assert again.status_code == 201 and again.json()["charge_id"] == first["charge_id"]
    assert book.balance(team).available == 2
    assert book.audit(team).clean


def test_an_empty_or_malformed_batch_is_refused_whole(
    client_and_team: tuple[TestClient, str, str], book: creditbook.Creditbook
) -> None:
    client, team, api_key = client_and_team
    auth = {"Authorization": f"Bearer {api_key}"}
    assert client.post("/v1/charges:batch", json={"charges": []}, headers=auth).status_code == 422
    bad = client.post(
        "/v1/charges:batch", json={"charges": [{"feature": "email_finder", "x": 1}]}, headers=auth
    )
    assert bad.status_code == 422
    assert client.post("/v1/charges:batch", json={"charges": [{"feature": "a"}]}).status_code == 401
    assert book.balance(team).available == 12
