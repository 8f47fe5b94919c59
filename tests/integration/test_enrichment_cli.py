"""`creditbook enrich` and `creditbook jobs`: a CSV in, a paused job, a top-up, a resume."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import creditbook
from creditbook.entrypoints.cli.app import main
from creditbook.service.enrichment import EnrichmentService

Cli = Callable[..., tuple[int, str, str]]


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


def test_enrich_pauses_when_credits_run_out_and_resumes_after_a_top_up(
    cli: Cli, tmp_path: Path
) -> None:
    code, out, _ = cli("team", "create", "Acme")
    team = re.search(r"(team_\w+)", out)
    assert code == 0 and team
    leads = tmp_path / "leads.csv"
    rows = ["First Name,Last Name,Company Domain"]
    rows += [f"Ada{i},Lovelace{i},acme{i}.example" for i in range(30)]
    rows.append("NoLast,,acme.example")
    leads.write_text("\n".join(rows) + "\n")
    assert cli("grant", team.group(1), "20")[0] == 0

    code, out, _ = cli("enrich", team.group(1), str(leads), "--features", "email_finder")

    assert code == 0
    assert "paused (insufficient_credits)" in out
    assert "MISSING_INPUTS" in out
    job = re.search(r"(job_\w+)", out)
    assert job
    assert (
        cli("grant", team.group(1), "1000", "--category", "purchased", "--source", "purchase")[0]
        == 0
    )
    code, out, _ = cli("jobs", "resume", job.group(1))
    assert code == 0
    assert "completed; 31/31 processed" in out

    code, out, _ = cli("jobs", "results", job.group(1))
    table = list(csv.DictReader(io.StringIO(out)))
    assert len(table) == 31
    assert table[-1]["email_finder_status"] == "MISSING_INPUTS"
    spent = sum(int(r["email_finder_credits"]) for r in table)
    code, out, _ = cli("jobs", "status", job.group(1))
    assert f"{spent} credits spent" in out
    assert cli("audit")[0] == 0
    code, _, err = cli("jobs", "resume", job.group(1))
    assert code == 5 and "completed" in err


def test_demo_ends_with_a_200_lead_sandbox_job(cli: Cli) -> None:
    code, out, _ = cli("demo")

    assert code == 0
    assert "400/400 processed" in out
    assert "audit: clean" in out


def test_jobs_recover_pauses_a_job_whose_process_died_once_its_lease_ran_out(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITBOOK_JOB_ORPHAN_SECONDS", "1")
    book = creditbook.open(f"sqlite:///{tmp_path / 'cli.db'}")
    team = book.create_team("Orphans").id
    book.grant(team, 100)
    svc = EnrichmentService(book.kernel)
    job = svc.create_job(team, [{"first_name": "Ada", "last_name": "L", "company_domain": "a.io"}],
                         ["email_finder"])  # fmt: skip
    svc._claim(team, job.id, "run_dead")  # a runner that then died

    early = cli("jobs", "recover")
    time.sleep(1.1)
    late = cli("jobs", "recover")

    assert early[:2] == (0, "0 orphaned job(s) paused\n")
    assert late[0] == 0 and job.id in late[1] and "1 orphaned job(s) paused" in late[1]
    assert "paused (interrupted)" in cli("jobs", "status", job.id)[1]
    assert book.engine is not None
    book.engine.dispose()
