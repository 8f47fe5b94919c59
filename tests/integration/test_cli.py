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


def test_an_operator_issues_caps_and_revokes_keys_from_the_cli(cli) -> None:  # type: ignore[no-untyped-def]
    team = _team(cli)
    assert cli("grant", team, "100", "--category", "purchased", "--source", "purchase")[0] == 0
    book = creditbook.open(os.environ["CREDITBOOK_DATABASE_URL"])
    member = book.add_member(team, "robot@acme.example", "member")
    code, out, _ = cli("key", "issue", team, member.id, "--label", "crm", "--monthly-cap", "10")
    key_id = re.search(r"(key_\w+)", out)
    assert code == 0 and key_id and "cbk." in out and "10 credits a month" in out
    actor = creditbook.Actor(member_id=member.id, api_key_id=key_id.group(1))
    book.charge(team, "email_finder", outcome="risky", actor=actor)
    code, out, _ = cli("key", "list", team)
    assert code == 0 and key_id.group(1) in out and "crm" in out
    assert re.search(rf"{key_id.group(1)}.*\b10\b.*\b5\b", out)  # cap 10, 5 spent
    assert cli("key", "cap", team, key_id.group(1), "5")[0] == 0
    with pytest.raises(creditbook.KeyCapExceeded):
        book.charge(team, "email_finder", outcome="risky", actor=actor)
    code, out, _ = cli("key", "cap", team, key_id.group(1), "--none")
    assert code == 0 and "no cap" in out
    book.charge(team, "email_finder", outcome="risky", actor=actor)
    assert cli("member", "cap", team, member.id, "0")[0] == 0
    with pytest.raises(creditbook.CapExceeded):
        book.charge(team, "email_finder", outcome="risky", actor=actor)
    code, out, _ = cli("member", "list", team)
    assert code == 0 and re.search(r"robot@acme\.example.*\b0\b", out)
    assert cli("key", "revoke", team, key_id.group(1))[0] == 0
    code, _, err = cli("key", "cap", team, key_id.group(1), "3")
    assert code != 0 and "is revoked" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("key", "cap", "{team}", "key_nope", "5"), "no API key 'key_nope' in this team"),
        (("key", "cap", "{team}", "key_nope"), "give a cap in credits (0 or more), or --none"),
        (("key", "cap", "{team}", "key_nope", "5", "--none"), "give a cap in credits"),
        (("member", "cap", "{team}", "mem_nope", "--", "-1"), "a monthly cap is a whole number"),
        (("member", "cap", "{team}", "mem_nope", "5"), "mem_nope"),
    ],
)
def test_bad_caps_from_the_cli_are_one_line_and_change_nothing(cli, args, message) -> None:  # type: ignore[no-untyped-def]
    team = _team(cli)
    code, out, err = cli(*(a.format(team=team) for a in args))
    assert code != 0 and message in err and "Traceback" not in out + err


def test_an_operator_issues_a_service_key_from_the_cli_and_the_list_says_its_kind(cli) -> None:  # type: ignore[no-untyped-def]
    team = _team(cli)
    book = creditbook.open(os.environ["CREDITBOOK_DATABASE_URL"])
    member = book.add_member(team, "workers@acme.example", "member")
    code, out, _ = cli("key", "issue", team, member.id, "--label", "workers", "--service")
    key_id = re.search(r"(key_\w+)", out)
    assert code == 0 and key_id and "issued service key" in out and "cbk." in out
    code, out, _ = cli("key", "issue", team, member.id)
    assert code == 0 and "issued personal key" in out
    code, out, _ = cli("key", "list", team)
    assert code == 0 and re.search(rf"{key_id.group(1)}.*\bservice\b.*workers", out)
    assert re.search(r"\bpersonal\b", out)
