"""Migrations build exactly the schema the code declares, and come back down."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from creditbook.adapters.db import migrate
from creditbook.adapters.db.engine import make_engine
from creditbook.adapters.db.schema import metadata


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


def test_upgrading_to_head_gives_the_declared_schema(empty_url: str) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    assert migrate.is_up_to_date(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # Ignore index differences that carry no meaning for SQLite's reflection of JSON.
    assert diff == [], diff
    engine.dispose()


def test_downgrading_to_base_removes_everything(empty_url: str) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    from sqlalchemy import inspect

    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert migrate.is_up_to_date(engine)
    engine.dispose()
