"""A database populated at each released revision upgrades to the head and loses nothing.

Each revision's database is built with today's (frozen) migrations and holds
one team's rows written with plain SQL for that revision's schema
(``upgrade_rows.py``). After the upgrade: the audit is clean, balances are
equal, the holds opened before still capture and release, and the idempotency
keys of before still replay their first answer without a second charge. Each
migration also comes down one step and back up with the data in place.
"""

from __future__ import annotations

import pytest
from upgrade_data import (
    Upgrade,
    assert_engine_keeps_everything,
    audit_is_clean,
    build,
    present_columns,
    stored_rows,
)

from creditbook.adapters.db import migrate
from creditbook.adapters.db.engine import make_engine

REVISIONS = migrate.known_revisions()


@pytest.mark.parametrize("revision", REVISIONS)
def test_a_database_populated_at_each_revision_upgrades_to_the_head_losing_nothing(
    empty_url: str, revision: str
) -> None:
    engine = make_engine(empty_url)
    build(engine, [Upgrade(revision)])
    audit_is_clean(engine)
    with engine.connect() as conn:
        columns = present_columns(conn)
    before = stored_rows(engine, columns)

    run = migrate.upgrade(engine)

    assert run.start == revision and run.end == migrate.head_revision()
    assert run.steps == REVISIONS[REVISIONS.index(revision) + 1 :]
    assert stored_rows(engine, columns) == before
    engine.dispose()
    assert_engine_keeps_everything(empty_url, {t for t, rows in before.items() if rows})


@pytest.mark.parametrize("revision", REVISIONS[1:])
def test_each_migration_comes_down_one_step_and_back_up_with_the_data_in_place(
    empty_url: str, revision: str
) -> None:
    engine = make_engine(empty_url)
    build(engine, [Upgrade(revision)])
    previous = REVISIONS[REVISIONS.index(revision) - 1]
    with engine.connect() as conn:
        columns = present_columns(conn)
    before = stored_rows(engine, columns)

    down = migrate.downgrade(engine, previous)

    assert (down.end, down.steps) == (previous, [revision])
    audit_is_clean(engine)
    with engine.connect() as conn:
        kept = present_columns(conn)
    # What the step created is gone with it; everything else is as it was.
    assert stored_rows(engine, kept) == {
        table: [tuple(row[columns[table].index(c)] for c in names) for row in before[table]]
        for table, names in kept.items()
        if table in before
    }

    migrate.upgrade(engine, revision)
    audit_is_clean(engine)
    migrate.upgrade(engine)
    engine.dispose()
    assert_engine_keeps_everything(
        empty_url, {t for t, rows in before.items() if t in kept and rows}
    )
