"""Helpers of the API tests: a client wrapper that makes teams, members and credits."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import creditbook
from creditbook.config import Settings
from creditbook.domain.clock import FrozenClock

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

OPERATOR_KEY = "operator-key-for-tests-0123456789abcdef"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Team:
    id: str
    admin_id: str
    admin: dict[str, str]


@dataclass
class Api:
    client: TestClient
    book: creditbook.Creditbook
    clock: FrozenClock

    @property
    def op(self) -> dict[str, str]:
        return bearer(OPERATOR_KEY)

    def new_team(self, name: str = "Acme", time_zone: str = "UTC", credits: int = 0) -> Team:
        r = self.client.post(
            "/v1/teams",
            json={"name": name, "time_zone": time_zone, "admin_email": "ada@acme.example"},
            headers=self.op,
        )
        assert r.status_code == 201, r.text
        data = r.json()
        team = Team(data["team"]["id"], data["admin"]["id"], bearer(data["admin_api_key"]))
        if credits:
            self.grant(team.id, credits)
        return team

    def grant(self, team_id: str, credits: int, category: str = "purchased") -> dict[str, Any]:
        r = self.client.post(
            f"/v1/teams/{team_id}/grants",
            json={"credits": credits, "category": category, "reason": "test credits"},
            headers=self.op,
        )
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    def add_member(
        self, team: Team, email: str, role: str = "member", cap: int | None = None
    ) -> tuple[str, dict[str, str]]:
        r = self.client.post(
            "/v1/members",
            json={"email": email, "role": role, "monthly_cap": cap},
            headers=team.admin,
        )
        assert r.status_code == 201, r.text
        return r.json()["member"]["id"], bearer(r.json()["api_key"])

    def available(self, team: Team) -> int:
        r = self.client.get("/v1/credits", headers=team.admin)
        assert r.status_code == 200, r.text
        value: int = r.json()["available"]
        return value


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "operator_key": OPERATOR_KEY,
        "rate_limit_requests": 10_000,
        "rate_limit_window_seconds": 1,
    }
    values.update(overrides)
    return Settings(**values)


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:creditbook:problem:{code}"
    assert body["title"] and body["detail"]
    return body
