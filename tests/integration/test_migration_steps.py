"""Every migration comes down and goes back up, one step at a time, to exactly its schema."""

from __future__ import annotations

from sqlalchemy import inspect

from creditbook.adapters.db import migrate, schema_check
from creditbook.adapters.db.engine import make_engine

REVISIONS = migrate.known_revisions()


def test_each_downgrade_gives_the_schema_of_the_revision_before_and_each_upgrade_its_own(
    empty_url: str,
) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)

    for revision in reversed(REVISIONS[:-1]):
        run = migrate.downgrade(engine, revision)
        assert run.end == revision and len(run.steps) == 1
        assert schema_check.check(engine, revision)[1] == [], f"down to {revision}"
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    for revision in REVISIONS:
        migrate.upgrade(engine, revision)
        assert schema_check.check(engine, revision)[1] == [], f"up to {revision}"
    engine.dispose()
