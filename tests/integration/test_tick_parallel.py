"""``tick(processes=N)``: several sweeping processes bring each due team up to date once.

On PostgreSQL two spawned processes share the due teams (``SKIP LOCKED``);
on SQLite, which has one writer at a time, the request is clamped to one
process with a message. Each test ends with a clean audit.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import creditbook
from creditbook.domain.clock import FrozenClock
from creditbook.domain.errors import InvalidInput
from creditbook.entrypoints.cli.app import main

Book = creditbook.Creditbook

SUBSCRIBED = datetime(2026, 1, 10, tzinfo=UTC)
AFTER_BOUNDARY = datetime(2026, 2, 10, 0, 1, tzinfo=UTC)
TEAMS = 200


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tick.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


@pytest.fixture
def due_book(backend_url: str) -> Iterator[tuple[Book, list[str]]]:
    """A book of its own database whose 200 subscribed teams all crossed a boundary."""
    clock = FrozenClock(SUBSCRIBED)
    book = creditbook.open(backend_url, clock=clock)
    teams = []
    for n in range(TEAMS):
        team = book.create_team(f"Team {n}").id
        book.plans.subscribe(team, "multichannel_expert")
        teams.append(team)
    clock.set(AFTER_BOUNDARY)
    yield book, teams
    if book.engine is not None:
        book.engine.dispose()


def assert_each_team_renewed_once(book: Book, teams: list[str]) -> None:
    for team in teams:
        # One allowance pair at subscription, one at the boundary (an entry each);
        # the first pair expired (one entry).
        assert len(book.ledger(team, kind="grant").entries) == 2
        assert len(book.ledger(team, kind="expire").entries) == 1
        assert len(book.grants(team, include_spent=True)) == 4
    report = book.audit()
    assert report.clean, report.problems


def test_two_processes_bring_every_due_team_up_to_date_exactly_once(
    due_book: tuple[Book, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    book, teams = due_book
    seen: list[str] = []
    with caplog.at_level(logging.WARNING, logger="creditbook.service.credits"):
        # Small batches, so both processes get a share of the 200 teams.
        done = book.tick(processes=2, batch_size=10, on_team=seen.append)
    assert done == TEAMS
    assert Counter(seen) == Counter(dict.fromkeys(teams, 1))
    clamped = "SQLite allows one writer at a time" in caplog.text
    assert clamped == (book.engine is not None and book.engine.dialect.name == "sqlite")
    assert book.tick(processes=2, on_team=seen.append) == 0  # nothing left due
    assert_each_team_renewed_once(book, teams)


def test_tick_refuses_fewer_than_one_process(tmp_path: Path) -> None:
    book = creditbook.open(f"sqlite:///{tmp_path / 'one.db'}", clock=FrozenClock(SUBSCRIBED))
    with pytest.raises(InvalidInput, match="processes must be at least 1"):
        book.tick(processes=0)
    assert book.tick(processes=1) == 0


def test_cli_tick_clamps_processes_to_one_on_sqlite_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CREDITBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("COLUMNS", "200")
    try:
        code = main(["tick", "--processes", "3"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 0
    out = capsys.readouterr().out
    assert "3 processes asked, running 1" in out and "SQLite" in out
    assert "0 team(s) brought up to date" in out
