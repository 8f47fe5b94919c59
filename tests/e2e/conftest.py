"""``creditbook serve`` as a real process on a free loopback port, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_helpers import (
    Server,
    create_pg_database,
    drop_pg_database,
    pg_available,
    start_server,
    stop_server,
)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp(f"serve-{request.param}")
    pg_url = None
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'creditbook.db'}"
    else:
        if not pg_available():
            pytest.skip("PostgreSQL not reachable")
        pg_url = url = create_pg_database("cb_e2e")
    server = start_server(url, workdir / "server.log")
    yield server
    stop_server(server)
    if pg_url is not None:
        drop_pg_database(pg_url)
