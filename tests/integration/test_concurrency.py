"""Many processes charging one team never overdraw it nor lose an update."""

from __future__ import annotations

import multiprocessing as mp
import threading
from pathlib import Path

import pytest

import creditbook
from creditbook import InsufficientCredits

PROCESSES = 8
CHARGES_EACH = 200
COST = 5  # email_finder, deliverable


def _charge_many(url: str, team_id: str, worker: int, results: mp.Queue) -> None:  # type: ignore[type-arg]
    book = creditbook.open(url, upgrade=False)
    ok = refused = 0
    for i in range(CHARGES_EACH):
        try:
            book.charge(
                team_id, "email_finder", outcome="deliverable", idempotency_key=f"w{worker}-{i}"
            )
            ok += 1
        except InsufficientCredits:
            refused += 1
    results.put((ok, refused))


def _run_processes(url: str, covered: int) -> tuple[int, int, creditbook.Creditbook, str]:
    book = creditbook.open(url)
    team = book.create_team("Hot team").id
    book.grant(team, covered * COST, category="purchased", source="purchase")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_charge_many, args=(url, team, w, results)) for w in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return sum(o for o, _ in outcomes), sum(r for _, r in outcomes), book, team


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_eight_processes_charging_one_team_succeed_exactly_as_often_as_the_balance_covers(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'hot.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("fresh_pg_url")
    )
    covered = 1000  # of 1600 attempts
    ok, refused, book, team = _run_processes(url, covered)
    assert ok == covered
    assert refused == PROCESSES * CHARGES_EACH - covered
    assert book.balance(team).available == 0
    assert len(book.ledger(team, kind="charge", limit=500).entries) == 500  # page size cap
    report = book.audit(team)
    assert report.clean, report.problems
    assert report.entries == covered + 1


def test_threads_retrying_one_idempotency_key_charge_once(book: creditbook.Creditbook) -> None:
    team = book.create_team("Acme").id
    book.grant(team, 100, category="purchased", source="purchase")
    receipts = []
    errors: list[BaseException] = []

    def retry() -> None:
        try:
            receipts.append(
                book.charge(team, "phone_finder", outcome="found", idempotency_key="same")
            )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({r.charge_id for r in receipts}) == 1
    assert book.balance(team).available == 80
