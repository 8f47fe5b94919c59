"""PostgreSQL's pool pings a connection only after it sat idle, and replaces a dead one.

``pool_pre_ping`` cost a round trip per transaction; the engine now pings a
pooled connection only when it waited at least ``PING_AFTER_IDLE_SECONDS``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

import creditbook
from creditbook.adapters.db import engine as engine_module
from creditbook.domain.errors import DatabaseUnavailable

pytestmark = pytest.mark.postgres


def _book_with_a_team(url: str) -> tuple[creditbook.Creditbook, str]:
    book = creditbook.open(url)
    team = book.create_team("Pool").id
    return book, team


def _count_pings(book: creditbook.Creditbook, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    assert book.engine is not None
    dialect = book.engine.dialect
    original = dialect.do_ping
    pings: list[int] = []

    def counting(dbapi_conn: Any) -> bool:
        pings.append(1)
        return original(dbapi_conn)

    monkeypatch.setattr(dialect, "do_ping", counting)
    return pings


def _book_whose_idle_connection_died(
    url: str, end_sessions: Callable[[str], int]
) -> tuple[creditbook.Creditbook, str]:
    book, team = _book_with_a_team(url)
    book.grant(team, 50, reason="start")
    assert end_sessions(url) >= 1  # the pooled connection is gone
    return book, team


def test_a_connection_used_a_moment_ago_is_not_pinged(
    fresh_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    book, team = _book_with_a_team(fresh_pg_url)
    pings = _count_pings(book, monkeypatch)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    for _ in range(5):
        book.balance(team)
    assert pings == []
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    book.balance(team)
    assert pings == [1]
    assert book.engine is not None
    book.engine.dispose()


def test_a_connection_that_died_while_idle_is_replaced_before_use(
    fresh_pg_url: str, monkeypatch: pytest.MonkeyPatch, end_pg_sessions: Callable[[str], int]
) -> None:
    book, team = _book_whose_idle_connection_died(fresh_pg_url, end_pg_sessions)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    assert book.balance(team).available == 50
    assert book.charge(team, "email_finder", outcome="deliverable").credits == 5
    assert book.engine is not None
    book.engine.dispose()


def test_without_the_ping_a_dead_idle_connection_fails_its_first_use(
    fresh_pg_url: str, monkeypatch: pytest.MonkeyPatch, end_pg_sessions: Callable[[str], int]
) -> None:
    # Shows what the test above guards against.
    book, team = _book_whose_idle_connection_died(fresh_pg_url, end_pg_sessions)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    with pytest.raises(DatabaseUnavailable) as raised:
        book.balance(team)
    assert re.search(r"terminat|closed|connection", raised.value.cause)
    assert book.engine is not None
    book.engine.dispose()
