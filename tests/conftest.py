"""Shared fixtures: a database per backend (SQLite always, PostgreSQL when reachable).

``db_url`` runs a test on both backends. PostgreSQL tests use a database made
for this test session (dropped at the end) at ``CREDITBOOK_TEST_POSTGRES_URL``
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``'s server).
With ``CI=true``, a skipped PostgreSQL or browser test fails the run: CI must
never pass by skipping the real components.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import creditbook
from creditbook.domain.clock import FrozenClock

PG_SERVER_URL = os.environ.get(
    "CREDITBOOK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
START = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
REAL_COMPONENT_MARKERS = ("postgres", "browser", "redis")


def _pg_admin_engine():  # type: ignore[no-untyped-def]
    return create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


def pg_available() -> bool:
    try:
        with _pg_admin_engine().connect() as conn:
            conn.execute(text("select 1"))
        return True
    except Exception:
        return False


def create_pg_database(prefix: str = "cb_test") -> str:
    """A new empty PostgreSQL database; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = _pg_admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)


def terminate_pg_sessions(url: str) -> int:
    """End every session on ``url``'s database (as a server restart would); how many."""
    name = make_url(url).database
    engine = _pg_admin_engine()
    with engine.connect() as conn:
        ended = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        ).scalar_one()
    engine.dispose()
    return int(ended)


@pytest.fixture
def end_pg_sessions() -> Callable[[str], int]:
    """``terminate_pg_sessions``, for tests that cut a database's connections."""
    return terminate_pg_sessions


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    terminate_pg_sessions(url)
    engine = _pg_admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    engine.dispose()


@pytest.fixture(scope="session")
def pg_session_url() -> Iterator[str]:
    """One migrated PostgreSQL database for this session (per xdist worker)."""
    if not pg_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_SERVER_URL}")
    url = create_pg_database()
    engine = creditbook.open(url).engine
    assert engine is not None
    engine.dispose()
    yield url
    drop_pg_database(url)


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, for tests that break things."""
    if not pg_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_SERVER_URL}")
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database URL, once per backend."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "creditbook.db")
    url: str = request.getfixturevalue("pg_session_url")
    return url


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def book(db_url: str, clock: FrozenClock) -> Iterator[creditbook.Creditbook]:
    engine_book = creditbook.open(db_url, clock=clock)
    yield engine_book
    if engine_book.engine is not None:
        engine_book.engine.dispose()


# ---- CI: skipped real-component tests fail the run -----------------------------

_skipped_real: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and any(m in report.keywords for m in REAL_COMPONENT_MARKERS):
        _skipped_real.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and _skipped_real:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if _skipped_real:
        ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
        terminalreporter.section("real components skipped")
        for nodeid in _skipped_real[:20]:
            terminalreporter.line(nodeid)
        if ci:
            terminalreporter.line(
                f"CI=true: {len(_skipped_real)} PostgreSQL/browser/Redis test(s) were skipped; "
                "failing the run",
                red=True,
            )
