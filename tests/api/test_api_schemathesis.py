"""Property-based tests generated from the API's own OpenAPI schema (schemathesis).

Every operation is called with generated input (valid and invalid) as the
operator (``/v1/teams``) or a team admin (the rest), on SQLite and
PostgreSQL: no response may be a 5xx, and every response must match the
documented status codes, content types and schemas. With ``CI=true`` at
least 500 requests are made in total.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from api_helpers import OPERATOR_KEY, TestClient, bearer, make_settings
from hypothesis import HealthCheck, settings
from schemathesis import checks

import creditbook
from creditbook.entrypoints.api import create_app

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Each example budget is spent per phase (examples, coverage, fuzzing): 6 gives
# ~3,000 requests over both backends, 3 about half of that.
EXAMPLES = 6 if CI else 3
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
CALLS: list[int] = []


def _world(url: str) -> tuple[Any, dict[str, dict[str, str]]]:
    book = creditbook.open(url)
    app = create_app(book, make_settings(rate_limit_requests=1_000_000))
    with TestClient(app) as client:
        made = client.post(
            "/v1/teams",
            json={"name": "Fuzz", "admin_email": "fuzz@fuzz.example"},
            headers=bearer(OPERATOR_KEY),
        ).json()
        team_id = made["team"]["id"]
        client.post(
            f"/v1/teams/{team_id}/grants",
            json={"credits": 1_000_000, "category": "purchased", "reason": "fuzz"},
            headers=bearer(OPERATOR_KEY),
        )
    return app, {"admin": bearer(made["admin_api_key"]), "operator": bearer(OPERATOR_KEY)}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, dict[str, dict[str, str]]]]:
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('fuzz')) / 'fuzz.db'}"
    else:
        url = request.getfixturevalue("pg_session_url")
    yield _world(url)


def _schema() -> Any:
    # The schema is the app's own; a throwaway app on a temporary file serves it at
    # collection (its background workers need a database several threads can share).
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="cb-schema-")) / "schema.db"
    app = create_app(creditbook.open(f"sqlite:///{path}"), make_settings())
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = _schema()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_never_fails_and_always_matches_its_schema(
    case: Any, world: tuple[Any, dict[str, dict[str, str]]]
) -> None:
    app, keys = world
    role = "operator" if case.operation.path.startswith("/v1/teams") else "admin"
    headers = dict(keys[role])
    case.call_and_validate(headers=headers, checks=CHECKS, app=app)
    CALLS.append(1)


def test_enough_generated_requests_were_made() -> None:
    print(f"schemathesis made {len(CALLS)} requests")
    if CI:
        assert len(CALLS) >= 500, f"only {len(CALLS)} generated requests"
