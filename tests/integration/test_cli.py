"""The `creditbook` command: happy paths, and bad input as one clear line and an exit code."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import creditbook
from creditbook.entrypoints.cli.app import main


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
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


def _team(cli) -> str:  # type: ignore[no-untyped-def]
    code, out, _ = cli("team", "create", "Acme")
    assert code == 0
    match = re.search(r"(team_\w+)", out)
    assert match
    return match.group(1)


def test_a_team_is_granted_charged_and_audited(cli) -> None:  # type: ignore[no-untyped-def]
    team = _team(cli)
    assert cli("grant", team, "100", "--category", "purchased", "--source", "purchase")[0] == 0
    code, out, _ = cli("charge", team, "email_finder", "--outcome", "risky")
    assert code == 0 and "charged 5 credits" in out
    code, out, _ = cli("balance", team)
    assert code == 0 and "95" in out
    code, out, _ = cli("hold", team, "phone_finder")
    hold = re.search(r"(hold_\w+)", out)
    assert code == 0 and hold
    code, out, _ = cli("capture", team, hold.group(1), "--outcome", "not_found")
    assert code == 0 and "captured 0 credits" in out
    code, out, _ = cli("ledger", team)
    assert code == 0 and "capture" in out and "charge" in out
    code, out, _ = cli("audit")
    assert code == 0 and "audit clean" in out


@pytest.mark.parametrize(
    ("args", "message", "exit_code"),
    [
        (("charge", "{team}", "teleport"), "unknown feature 'teleport'; valid features:", 2),
        (("charge", "{team}", "email_finder", "--quantity", "0"), "quantity 0 is out of range", 2),
        (("charge", "{team}", "phone_finder", "--outcome", "found"), "insufficient credits", 6),
        (("charge", "team_nope", "email_finder"), "no team 'team_nope'", 3),
        (("capture", "{team}", "hold_nope"), "no hold 'hold_nope'", 3),
        (("team", "create", "Acme", "--time-zone", "Mars/Olympus"), "unknown time zone", 2),
    ],
)
def test_bad_input_prints_one_clear_line_and_exits_non_zero(  # type: ignore[no-untyped-def]
    cli, args: tuple[str, ...], message: str, exit_code: int
) -> None:
    team = _team(cli)
    code, out, err = cli(*(a.format(team=team) for a in args))
    assert code == exit_code
    assert message in err
    assert "Traceback" not in err + out


def test_a_reused_key_with_another_request_is_a_conflict(cli) -> None:  # type: ignore[no-untyped-def]
    team = _team(cli)
    cli("grant", team, "100")
    assert cli("charge", team, "ai_variable", "--idempotency-key", "k")[0] == 0
    code, _, err = cli("charge", team, "email_finder", "--idempotency-key", "k")
    assert code == 5 and "idempotency key 'k'" in err


def test_the_demo_runs_and_ends_with_a_clean_audit(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("demo")
    assert code == 0
    assert "audit: clean" in out


def test_a_capped_members_charge_from_the_cli_is_refused_like_anywhere_else(cli) -> None:  # type: ignore[no-untyped-def]
    team = _team(cli)
    assert cli("grant", team, "100", "--category", "purchased", "--source", "purchase")[0] == 0
    book = creditbook.open(os.environ["CREDITBOOK_DATABASE_URL"])
    member = book.add_member(team, "max@acme.example", "member", monthly_cap=5)
    assert cli("charge", team, "email_finder", "--outcome", "risky", "--member", member.id)[0] == 0
    code, _, err = cli("charge", team, "email_finder", "--outcome", "risky", "--member", member.id)
    assert code == 6 and "monthly cap of max@acme.example reached" in err
    assert book.balance(team).available == 95
