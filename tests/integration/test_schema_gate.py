"""``migrate.require_head``: the one check a long-running process (serve, a worker) makes first."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from creditbook.adapters.db import migrate
from creditbook.adapters.db.engine import make_engine
from creditbook.adapters.db.schema_errors import SchemaNotCurrent

HEAD = migrate.head_revision()


def test_a_database_at_the_head_passes(empty_url: str) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    assert migrate.require_head(engine).state == "current"
    assert migrate.schema_problem(engine) is None
    engine.dispose()


def test_a_database_behind_is_refused_with_the_command_to_run_and_left_alone(
    empty_url: str,
) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine, "0011_purchase_sweep")

    with pytest.raises(SchemaNotCurrent) as refused:
        migrate.require_head(engine, create_new=True)

    assert refused.value.details == {
        "revision": "0011_purchase_sweep",
        "head": HEAD,
        "state": "behind",
    }
    assert "`creditbook db upgrade`" in refused.value.message
    assert "`creditbook db backup PATH`" in refused.value.message
    assert migrate.current_revision(engine) == "0011_purchase_sweep"
    engine.dispose()


def test_a_database_ahead_is_refused_with_the_newest_revision_this_version_knows(
    empty_url: str,
) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0020_later'"))

    with pytest.raises(SchemaNotCurrent) as refused:
        migrate.require_head(engine)

    assert refused.value.details["state"] == "ahead"
    assert f"the newest it knows is {HEAD}" in refused.value.message
    # The library's own upgrade refuses it the same way (Alembic said "Can't locate revision").
    with pytest.raises(SchemaNotCurrent):
        migrate.upgrade(engine)
    engine.dispose()


def test_only_a_new_empty_database_is_created_and_only_when_asked(empty_url: str) -> None:
    engine = make_engine(empty_url)
    with pytest.raises(SchemaNotCurrent, match="the database is empty"):
        migrate.require_head(engine)
    assert migrate.require_head(engine, create_new=True).current == HEAD
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    with pytest.raises(SchemaNotCurrent, match="tables but no migration revision"):
        migrate.require_head(engine, create_new=True)
    engine.dispose()
