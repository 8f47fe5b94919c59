"""``creditbook credits buy | purchases | refund | alerts`` on a SQLite file."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import creditbook
from creditbook.entrypoints.cli.app import main

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.setenv("CREDITBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("CREDITBOOK_PAYMENT_PROVIDER", "manual")
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _id(prefix: str, text: str) -> str:
    match = re.search(rf"({prefix}_\w+)", text)
    assert match, text
    return match.group(1)


def test_an_admin_buys_lists_and_refunds_from_the_command_line(cli: Cli) -> None:
    team = _id("team", cli("team", "create", "Acme")[1])
    admin = _id("mem", cli("member", "add", team, "alice@acme.com", "--role", "admin")[1])
    member = _id("mem", cli("member", "add", team, "bob@acme.com")[1])

    code, out, _ = cli("credits", "buy", team, "--package", "1k", "--member", admin)
    assert code == 0 and "1,000 credits for 100.00 USD" in out and "completed" in out
    purchase = _id("pur", out)
    code, _, err = cli("credits", "buy", team, "--credits", "1234", "--member", member)
    assert code == 4 and "only a team admin" in err and "alice@acme.com" in err
    code, _, err = cli("credits", "buy", team, "--credits", "5", "--member", admin)
    assert code == 2 and "between 100 and 1000000" in err

    assert cli("charge", team, "phone_finder", "--outcome", "found")[0] == 0
    code, out, _ = cli("credits", "refund", team, purchase, "--member", admin)
    assert code == 0 and "refunded 980 credits (98.00 USD)" in out
    code, out, _ = cli("credits", "purchases", team)
    assert code == 0 and purchase in out and "refunded" in out
    code, out, _ = cli("credits", "purchases", team, "--csv")
    assert code == 0 and out.startswith("id,created_at,kind,credits,amount")
    code, out, _ = cli("credits", "alerts", team)
    assert code == 0 and "purchase_refunded" in out and "purchase_completed" in out


def test_the_sweep_completes_a_purchase_a_crash_left_pending(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    an_hour_ago = creditbook.FrozenClock(datetime.now(UTC) - timedelta(hours=1))
    book = creditbook.open(os.environ["CREDITBOOK_DATABASE_URL"], clock=an_hour_ago)
    team = book.create_team("Acme").id
    admin = creditbook.Actor(member_id=book.add_member(team, "alice@acme.com", "admin").id)

    def died(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the process stopped here")

    with monkeypatch.context() as crash:
        crash.setattr(book.purchases, "_pay", died)
        with pytest.raises(RuntimeError):
            book.purchases.buy(team, package="1k", actor=admin)
    [stalled] = book.purchases.list(team)
    code, out, _ = cli("credits", "sweep")
    assert code == 0 and "asked the provider again for 1, failed 0" in out and stalled.id in out
    code, out, _ = cli("credits", "purchases", team)
    assert code == 0 and "completed" in out
    assert cli("credits", "sweep")[1].startswith("asked the provider again for 0, failed 0")
    code, _, err = cli("credits", "sweep", "--stalled-minutes", "3000")
    assert code == 2 and "abandoned_after at least stalled_after" in err
