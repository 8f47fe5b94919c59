"""A real `creditbook serve` refuses a database behind or ahead of its migrations; /readyz says so.

A new, empty database is created (nothing in it to lose); one that holds data
is never upgraded by the server: the operator backs it up and runs
``creditbook db upgrade``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_helpers import (
    create_pg_database,
    drop_pg_database,
    free_port,
    pg_available,
    serve_command,
    serve_env,
    start_server,
    stop_server,
)
from sqlalchemy import text

import creditbook
from creditbook.adapters.db import migrate
from creditbook.adapters.db.engine import make_engine

HEAD = migrate.head_revision()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def populated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at the head with a team and credits in it."""
    pg_url = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'creditbook.db'}"
    else:
        if not pg_available():
            pytest.skip("PostgreSQL not reachable")
        pg_url = url = create_pg_database("cb_schema")
    book = creditbook.open(url)
    team = book.create_team("Acme").id
    book.grant(team, 100, category="purchased", source="purchase")
    assert book.engine is not None
    book.engine.dispose()
    yield url
    if pg_url is not None:
        drop_pg_database(pg_url)


def _serve_until_exit(url: str) -> tuple[int, str]:
    done = subprocess.run(
        serve_command(url, free_port()), env=serve_env(), capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stdout + done.stderr


def test_serve_refuses_a_database_behind_and_says_the_command_to_run(populated_url: str) -> None:
    engine = make_engine(populated_url)
    migrate.downgrade(engine, "0012_service_keys")
    engine.dispose()

    code, said = _serve_until_exit(populated_url)

    assert code == 10, said
    assert "error (schema_not_current): the database is at revision 0012_service_keys" in said
    assert f"needs {HEAD}" in said and "`creditbook db upgrade`" in said
    assert migrate.current_revision(make_engine(populated_url)) == "0012_service_keys"


def test_serve_refuses_a_database_ahead_and_says_the_version_it_knows(
    populated_url: str,
) -> None:
    engine = make_engine(populated_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0015_from_the_future'"))
    engine.dispose()

    code, said = _serve_until_exit(populated_url)

    assert code == 10, said
    assert "0015_from_the_future, which this version of creditbook does not know" in said
    assert f"the newest it knows is {HEAD}" in said


def test_readiness_answers_503_with_the_reason_while_the_schema_is_not_at_the_head(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"  # a new database: the server creates it
    server = start_server(url, tmp_path / "server.log")
    try:
        assert httpx.get(f"{server.base_url}/readyz").json() == {"status": "ready"}
        engine = make_engine(url)
        migrate.downgrade(engine, "0013_dashboard_sessions")

        answer = httpx.get(f"{server.base_url}/readyz")

        assert answer.status_code == 503
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem = answer.json()
        assert problem["code"] == "not_ready"
        assert "the database is at revision 0013_dashboard_sessions" in problem["detail"]
        assert "`creditbook db upgrade`" in problem["detail"]
        migrate.upgrade(engine)
        engine.dispose()
        assert httpx.get(f"{server.base_url}/readyz").status_code == 200
    finally:
        stop_server(server)
