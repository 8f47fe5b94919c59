"""Every number the API takes has a documented maximum the database can hold; past it: 422."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import Api, assert_problem

from creditbook.domain.limits import MAX_CREDITS

INT64_MAX = 2**63 - 1
LEAD = {"first_name": "Ada", "last_name": "Lovelace", "company_domain": "acme.example"}


def _estimate_job(api: Api, admin: dict[str, str]) -> str:
    made = api.client.post(
        "/v1/enrichment-jobs",
        json={"leads": [LEAD], "features": ["email_finder"], "estimate_only": True},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    job_id: str = made.json()["job"]["id"]
    return job_id


@pytest.mark.parametrize("value", [2**63, 10**20, MAX_CREDITS + 1])
def test_a_job_credit_limit_past_the_maximum_is_refused_with_422_not_a_500(
    api: Api, value: int
) -> None:
    team = api.new_team()
    body = {"leads": [LEAD], "features": ["email_finder"], "credit_limit": value}
    refused = api.client.post("/v1/enrichment-jobs", json=body, headers=team.admin)
    problem = assert_problem(refused, 422, "validation_error")
    assert "credit_limit" in problem["detail"]
    assert api.client.get("/v1/enrichment-jobs", headers=team.admin).json()["jobs"] == []


@pytest.mark.parametrize("value", [2**63, 10**20, MAX_CREDITS + 1])
def test_a_resume_credit_limit_past_the_maximum_is_refused_with_422_not_a_500(
    api: Api, value: int
) -> None:
    team = api.new_team()
    job_id = _estimate_job(api, team.admin)
    refused = api.client.post(
        f"/v1/enrichment-jobs/{job_id}/resume", json={"credit_limit": value}, headers=team.admin
    )
    assert_problem(refused, 422, "validation_error")
    job = api.client.get(f"/v1/enrichment-jobs/{job_id}", headers=team.admin).json()["job"]
    assert job["status"] == "paused" and job["credit_limit"] is None


def test_the_largest_credit_limit_is_accepted(api: Api) -> None:
    team = api.new_team()
    body = {"leads": [LEAD], "features": ["email_finder"], "credit_limit": MAX_CREDITS,
            "estimate_only": True}  # fmt: skip
    made = api.client.post("/v1/enrichment-jobs", json=body, headers=team.admin)
    assert made.status_code == 201, made.text
    assert made.json()["job"]["credit_limit"] == MAX_CREDITS


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("put", "/v1/settings", {"low_balance_threshold": 10**20}),
        ("put", "/v1/settings", {"auto_recharge": {"threshold": 10**20}}),
        ("post", "/v1/members", {"email": "big@acme.example", "monthly_cap": 10**20}),
        ("put", "/v1/enrichment-settings", {"dedupe_window_days": 10**20}),
        ("post", "/v1/charges", {"feature": "email_finder", "quantity": 2**63}),
    ],
)
def test_other_numbers_past_64_bits_are_422s(
    api: Api, method: str, path: str, body: dict[str, Any]
) -> None:
    team = api.new_team(credits=100)
    refused = getattr(api.client, method)(path, json=body, headers=team.admin)
    assert_problem(refused, 422, "validation_error")


def _integer_schemas(node: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if node.get("type") == "integer":
            found.append((where, node))
        for key, value in node.items():
            found += _integer_schemas(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _integer_schemas(value, f"{where}[{index}]")
    return found


def test_every_integer_a_request_may_carry_declares_a_maximum_that_fits_64_bits(
    api: Api,
) -> None:
    schema = api.client.get("/openapi.json").json()
    inputs: list[tuple[str, dict[str, Any]]] = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for param in operation.get("parameters", []):
                where = f"{method} {path} {param['name']}"
                inputs += _integer_schemas(param.get("schema", {}), where)
    # Request bodies are components; those the responses use alone are fine unbounded,
    # but an input model must bound every integer.
    refs = {
        ref.rsplit("/", 1)[-1]
        for operations in schema["paths"].values()
        for operation in operations.values()
        for ref in _refs(operation.get("requestBody", {}))
    }
    components = schema["components"]["schemas"]
    seen: set[str] = set()
    while refs:
        name = refs.pop()
        if name in seen:
            continue
        seen.add(name)
        inputs += _integer_schemas(components[name], name)
        refs |= {r.rsplit("/", 1)[-1] for r in _refs(components[name])}
    assert inputs, "no integer inputs found: the walk is broken"
    unbounded = [where for where, s in inputs if "maximum" not in s]
    too_big = [where for where, s in inputs if s.get("maximum", 0) > INT64_MAX]
    assert unbounded == [] and too_big == []


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        here = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return here + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []
