"""Property-based tests generated from the API's own OpenAPI schema (schemathesis).

Every operation is called with generated input (valid and invalid, the
declared boundaries included) as the operator (``/v1/teams``) or a team admin
(the rest), on SQLite and PostgreSQL, one request at a time and then in
sequences that follow the links schemathesis infers from the schema (a hold
created then captured or released, a member created then changed, a key
issued then revoked...). For every response:

- no 5xx;
- status codes, content types, headers and bodies match the schema;
- every error is RFC 9457 problem+json with a stable ``code``;
- a number past the maximum its schema declares (every integer input
  declares one, see ``creditbook.domain.limits``) is answered 422.

Beyond what the schema's bounds make schemathesis try, the ``flatmap_body``
and ``flatmap_query`` hooks below offer, for every integer input, variants
past 64 bits (2**63, 2**64, 10**20, -2**63 - 1): the numbers that used to
reach the database and come back as 500s.

With ``CI=true`` at least 2,000 requests are made in total (counted below) and
the out-of-range numbers must have been explored. ``CREDITBOOK_FUZZ_LONG=1``
runs a long mode (many more examples and sequences).
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from api_helpers import OPERATOR_KEY, TestClient, bearer, make_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks

import creditbook
from creditbook.entrypoints.api import create_app
from creditbook.service.enrichment import enrichment_for

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LONG = os.environ.get("CREDITBOOK_FUZZ_LONG", "").lower() in ("1", "true", "yes")
# Each example budget is spent per phase (examples, coverage, fuzzing): 6 gives
# ~5,000 one-shot requests over both backends, 3 about half of that.
EXAMPLES = 60 if LONG else 6 if CI else 3
SEQUENCES = 300 if LONG else 40 if CI else 15
STEPS = 12 if LONG else 6
MIN_REQUESTS = 2_000
PAST_64_BITS = (2**63, 2**64, 10**20, -(2**63) - 1)
PROBLEM_FIELDS = ("type", "title", "status", "detail", "code")
REQUESTS: Counter[str] = Counter()
OUT_OF_RANGE: Counter[str] = Counter()
HUGE_SENT: Counter[str] = Counter()
LINKED: Counter[str] = Counter()


def _new_team(client: TestClient) -> dict[str, str]:
    """A team with credits; its admin's headers."""
    made = client.post(
        "/v1/teams",
        json={"name": "Fuzz", "admin_email": "fuzz@fuzz.example"},
        headers=bearer(OPERATOR_KEY),
    ).json()
    client.post(
        f"/v1/teams/{made['team']['id']}/grants",
        json={"credits": 1_000_000, "category": "purchased", "reason": "fuzz"},
        headers=bearer(OPERATOR_KEY),
    )
    return bearer(made["admin_api_key"])


def _world(url: str) -> tuple[Any, dict[str, dict[str, str]]]:
    book = creditbook.open(url)
    app = create_app(book, make_settings(rate_limit_requests=1_000_000))
    with TestClient(app) as client:
        admin = _new_team(client)
    return app, {"admin": admin, "operator": bearer(OPERATOR_KEY)}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch_module: pytest.MonkeyPatch,
) -> Iterator[tuple[Any, dict[str, dict[str, str]]]]:
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('fuzz')) / 'fuzz.db'}"
    else:
        url = request.getfixturevalue("pg_session_url")
    yield _world(url)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        # Alerts stay in the outbox: nothing is posted anywhere while fuzzing.
        patch.setenv("CREDITBOOK_NOTIFY_WORKER", "0")
        yield patch


def _pointer(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def _fuzz_document() -> dict[str, Any]:
    """The app's own OpenAPI document, plus two things a fuzzer cannot guess.

    The features a hold or a job may name (the catalog's; random strings are
    refused before anything runs), and the links from a job to its operations
    (its routes answer untyped JSON, so none can be inferred): with them,
    sequences create a job and then read, resume, cancel and export it.
    """
    # A throwaway app on a temporary file serves the schema at collection (its
    # background workers need a database several threads can share).
    path = Path(tempfile.mkdtemp(prefix="cb-schema-")) / "schema.db"
    book = creditbook.open(f"sqlite:///{path}")
    document = copy.deepcopy(create_app(book, make_settings()).openapi())
    features = document["components"]["schemas"]["JobCreate"]["properties"]["features"]
    features["items"] = {"type": "string", "enum": enrichment_for(book).job_features()}
    hold = document["components"]["schemas"]["HoldCreate"]["properties"]["feature"]
    hold["enum"] = sorted(book.catalog.features)
    job = "/v1/enrichment-jobs/{job_id}"
    links = {
        name: {
            "operationRef": _pointer(target, method),
            "parameters": {"path.job_id": "$response.body#/job/id"},
        }
        for name, target, method in [
            ("GetJob", job, "get"),
            ("ResumeJob", f"{job}/resume", "post"),
            ("CancelJob", f"{job}/cancel", "post"),
            ("JobResults", f"{job}/results.csv", "get"),
        ]
    }
    paths = document["paths"]
    paths["/v1/enrichment-jobs"]["post"]["responses"]["201"]["links"] = links
    for action in ("resume", "cancel"):
        paths[f"{job}/{action}"]["post"]["responses"]["200"]["links"] = links
    return document


OPENAPI = _fuzz_document()
schema = schemathesis.openapi.from_dict(OPENAPI)
LinkedSequences = schema.as_state_machine()


# ---- the checks beyond schemathesis' own -----------------------------------------------------


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = OPENAPI["components"]["schemas"][name]
    return node


def _integer_bounds(node: dict[str, Any]) -> tuple[int | None, int | None] | None:
    node = _resolve(node)
    if node.get("type") == "integer":
        return node.get("minimum"), node.get("maximum")
    for option in node.get("anyOf", []) + node.get("oneOf", []):
        found = _integer_bounds(option)
        if found is not None:
            return found
    return None


def _beyond_bounds(value: Any, node: dict[str, Any], where: str) -> str | None:
    """Where ``value`` holds an integer outside the bounds ``node`` declares for it, if anywhere."""
    node = _resolve(node)
    if isinstance(value, int) and not isinstance(value, bool):
        bounds = _integer_bounds(node)
        if bounds is not None:
            low, high = bounds
            if (low is not None and value < low) or (high is not None and value > high):
                return where
        return None
    options = [_resolve(o) for o in node.get("anyOf", []) + node.get("oneOf", [])] or [node]
    for option in options:
        if isinstance(value, dict) and "properties" in option:
            for key, item in value.items():
                if key in option["properties"]:
                    found = _beyond_bounds(item, option["properties"][key], f"{where}.{key}")
                    if found:
                        return found
        elif isinstance(value, list) and "items" in option:
            for index, item in enumerate(value):
                found = _beyond_bounds(item, option["items"], f"{where}[{index}]")
                if found:
                    return found
    return None


def _integer_paths(node: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The paths of a body schema's integer properties (two levels deep)."""
    node = _resolve(node)
    found: list[tuple[str, ...]] = []
    for option in [node, *(_resolve(o) for o in node.get("anyOf", []) + node.get("oneOf", []))]:
        for key, sub in option.get("properties", {}).items():
            if _integer_bounds(sub) is not None:
                found.append((*prefix, key))
            elif len(prefix) < 1:
                found += _integer_paths(sub, (*prefix, key))
    return found


def _operation(path: str, method: str) -> dict[str, Any]:
    found: dict[str, Any] = OPENAPI["paths"][path][method.lower()]
    return found


def _with(body: dict[str, Any], path: tuple[str, ...], value: int) -> dict[str, Any] | None:
    """A copy of ``body`` with ``value`` at ``path``, when the containers on the way exist."""
    copy = dict(body)
    node = copy
    for key in path[:-1]:
        inner = node.get(key)
        if not isinstance(inner, dict):
            return None
        node[key] = node = dict(inner)
    node[path[-1]] = value
    return copy


@schema.hook("flatmap_body")
def sometimes_past_64_bits(context: Any, body: Any) -> Any:
    operation = context.operation
    if operation is None or not isinstance(body, dict):
        return st.just(body)
    content = _operation(operation.path, operation.method).get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return st.just(body)
    variants = [
        variant
        for path in _integer_paths(content["application/json"]["schema"])
        for number in PAST_64_BITS
        if (variant := _with(body, path, number)) is not None
    ]
    return st.one_of(st.just(body), st.sampled_from(variants)) if variants else st.just(body)


@schema.hook("flatmap_query")
def sometimes_a_query_number_past_64_bits(context: Any, query: Any) -> Any:
    operation = context.operation
    if operation is None or not isinstance(query, dict):
        return st.just(query)
    names = [
        p["name"]
        for p in _operation(operation.path, operation.method).get("parameters", [])
        if p["in"] == "query" and _integer_bounds(p["schema"]) is not None
    ]
    variants = [{**query, name: number} for name in names for number in PAST_64_BITS]
    return st.one_of(st.just(query), st.sampled_from(variants)) if variants else st.just(query)


def _carries_past_64_bits(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return not -(2**63) <= value < 2**63
    if isinstance(value, dict):
        return any(_carries_past_64_bits(v) for v in value.values())
    if isinstance(value, list):
        return any(_carries_past_64_bits(v) for v in value)
    return False


def _out_of_range(case: Any) -> str | None:
    """The request's number that is past its declared bounds (a well-formed JSON request only)."""
    if case.method.upper() != case.operation.method.upper():
        return None
    operation = _operation(case.operation.path, case.operation.method)
    for param in operation.get("parameters", []):
        if param["in"] == "query" and param["name"] in (case.query or {}):
            found = _beyond_bounds(case.query[param["name"]], param["schema"], param["name"])
            if found:
                return found
    body = case.body if isinstance(case.body, dict) else None
    content = operation.get("requestBody", {}).get("content", {})
    if (
        body is not None
        and "application/json" in content
        and case.media_type
        in (
            None,
            "application/json",
        )
    ):
        return _beyond_bounds(body, content["application/json"]["schema"], "body")
    return None


def every_error_is_problem_json(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 400:
        return None
    kind = (response.headers.get("content-type") or [""])[0]
    assert kind.startswith("application/problem+json"), (
        f"{case.operation.label} answered {response.status_code} as {kind!r}, not problem+json"
    )
    body = response.json()
    missing = [f for f in PROBLEM_FIELDS if f not in body]
    assert not missing, f"problem details without {missing}: {body}"
    assert body["status"] == response.status_code, body
    assert body["type"] == f"urn:creditbook:problem:{body['code']}", body
    return None


def numbers_past_their_maximum_are_422(ctx: Any, response: Any, case: Any) -> bool | None:
    if _carries_past_64_bits(case.body) or _carries_past_64_bits(case.query):
        HUGE_SENT[case.operation.label] += 1
    where = _out_of_range(case)
    if where is None or response.status_code in (401, 403):
        return None  # a refused key is answered before the body is read
    OUT_OF_RANGE[case.operation.label] += 1
    assert response.status_code == 422, (
        f"{case.operation.label}: {where} is outside its declared bounds, "
        f"answered {response.status_code}"
    )
    return None


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    every_error_is_problem_json,
    numbers_past_their_maximum_are_422,
]


def _headers_for(case: Any, keys: dict[str, dict[str, str]]) -> dict[str, str]:
    role = "operator" if case.operation.path.startswith("/v1/teams") else "admin"
    return dict(keys[role])


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


# ---- one request at a time -------------------------------------------------------------------


@schema.parametrize()
@FUZZ_SETTINGS
def test_the_api_never_fails_and_always_matches_its_schema(
    case: Any, world: tuple[Any, dict[str, dict[str, str]]]
) -> None:
    app, keys = world
    case.call_and_validate(headers=_headers_for(case, keys), checks=CHECKS, app=app)
    REQUESTS["one-shot"] += 1


# ---- sequences along the inferred links --------------------------------------------------------


def test_linked_operations_in_sequence_never_fail_and_match_the_schema(
    world: tuple[Any, dict[str, dict[str, str]]],
) -> None:
    app, keys = world
    assert schema.statistic.transitions.total > 0, "no links inferred: nothing to chain"

    client = TestClient(app)  # no lifespan: the world's app is already set up

    class Sequences(LinkedSequences):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            # A team of its own per sequence: a replayed sequence meets the same state,
            # as Hypothesis requires (an email taken by an earlier one would change it).
            self.keys = {"admin": _new_team(client), "operator": keys["operator"]}

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": _headers_for(case, self.keys), "app": app}

        def after_call(self, response: Any, case: Any) -> None:
            REQUESTS["linked"] += 1
            LINKED[case.operation.label] += 1

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, headers=kwargs.get("headers"))

    Sequences.run(
        settings=settings(
            max_examples=SEQUENCES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
    )


def test_enough_generated_requests_were_made_and_out_of_range_numbers_explored() -> None:
    total = sum(REQUESTS.values())
    print(
        f"schemathesis made {total} requests ({dict(REQUESTS)}); "
        f"out-of-range numbers sent to {len(OUT_OF_RANGE)} operations, "
        f"{sum(OUT_OF_RANGE.values())} times, all answered 422; numbers past 64 bits "
        f"sent to {len(HUGE_SENT)} operations, {sum(HUGE_SENT.values())} times; "
        f"{len(LINKED)} operations reached in linked sequences: {sorted(LINKED)}"
    )
    if CI:
        assert total >= MIN_REQUESTS, f"only {total} generated requests"
        assert len(LINKED) >= 15, f"linked sequences reached only {sorted(LINKED)}"
        assert len(OUT_OF_RANGE) >= 10, f"out-of-range numbers reached only {dict(OUT_OF_RANGE)}"
        assert len(HUGE_SENT) >= 10, f"numbers past 64 bits reached only {dict(HUGE_SENT)}"
