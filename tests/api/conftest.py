"""The API over a real database (SQLite and PostgreSQL) through FastAPI's TestClient (httpx)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import Api, TestClient, make_settings

import creditbook
from creditbook.domain.clock import FrozenClock
from creditbook.entrypoints.api import create_app


@pytest.fixture
def api(book: creditbook.Creditbook, clock: FrozenClock) -> Iterator[Api]:
    app = create_app(book, make_settings())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, book, clock)
