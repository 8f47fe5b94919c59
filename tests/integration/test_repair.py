"""Databases that earlier versions of main left (stub-era 0004-0006, the first 0008) reach the head.

``creditbook db repair`` runs the migrations a database is stamped past but
never ran, upgrades it, and compares the result with the head schema; the
check must then find it identical to a fresh database, with every row and
credit where it was.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from schema_history import FIRST_0008_FILLFACTOR, HISTORIES
from sqlalchemy import text
from upgrade_data import (
    DbCli,
    Stamp,
    Upgrade,
    assert_engine_keeps_everything,
    audit_is_clean,
    build,
    present_columns,
    stored_rows,
)

from creditbook.adapters.db import migrate, repair, schema_check
from creditbook.adapters.db.engine import make_engine
from creditbook.adapters.db.schema_errors import SchemaDrift, SchemaNeedsRepair


@pytest.mark.parametrize("history", list(HISTORIES))
def test_each_earlier_schema_is_repaired_to_one_identical_to_a_fresh_database(
    empty_url: str, history: str
) -> None:
    engine = make_engine(empty_url)
    build(engine, HISTORIES[history])
    audit_is_clean(engine)
    with engine.connect() as conn:
        columns = present_columns(conn)
    before = stored_rows(engine, columns)
    stamp = migrate.current_revision(engine)
    _, differences = schema_check.check(engine)
    assert differences, "the check sees what the history left"

    report = repair.repair(engine)

    assert report.start == stamp
    _, differences = schema_check.check(engine)
    assert differences == []
    assert stored_rows(engine, columns) == before
    engine.dispose()
    assert_engine_keeps_everything(empty_url, {t for t, rows in before.items() if rows})


def test_an_upgrade_refuses_a_stub_era_database_and_names_the_repair(empty_url: str) -> None:
    engine = make_engine(empty_url)
    build(engine, HISTORIES["stamped 0006 with 0005-0006 empty"])

    with pytest.raises(SchemaNeedsRepair) as refused:
        migrate.upgrade(engine)

    message = refused.value.message
    assert "stamped 0006_dashboard" in message and "creditbook db repair" in message
    assert "0005_enrichment (enrichment_items, enrichment_jobs" in message
    assert "0006_dashboard (dashboard_signin_links)" in message
    assert migrate.current_revision(engine) == "0006_dashboard"  # nothing ran
    engine.dispose()


@pytest.mark.postgres
def test_the_check_finds_the_first_0008s_fillfactor_and_the_upgrade_removes_it(
    fresh_pg_url: str,
) -> None:
    engine = make_engine(fresh_pg_url)
    build(
        engine,
        [Upgrade("0008_lean_indexes"), FIRST_0008_FILLFACTOR, Upgrade("0013_dashboard_sessions")],
    )

    _, differences = schema_check.check(engine, "0013_dashboard_sessions")
    assert [str(d) for d in differences] == ["grants: unexpected option fillfactor (80)"]

    assert migrate.upgrade(engine).steps == ["0014_repair_history"]
    assert schema_check.check(engine)[1] == []
    with engine.connect() as conn:
        options = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'grants'"))
        assert options.scalar() is None
    engine.dispose()


def test_a_migration_whose_tables_are_only_partly_there_is_not_guessed_at(
    empty_url: str,
) -> None:
    engine = make_engine(empty_url)
    build(engine, [Upgrade("0004_purchases"), Stamp("0006_dashboard")])
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE payment_events"))
    before = stored_rows(engine)

    with pytest.raises(SchemaDrift, match=re.escape("0004_purchases (payment_events)")):
        repair.repair(engine)

    assert migrate.current_revision(engine) == "0006_dashboard"
    assert stored_rows(engine) == before
    engine.dispose()


def test_db_repair_backs_up_first_then_says_what_it_ran(
    db_cli: DbCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    build(engine, HISTORIES["stamped 0006 with 0004-0006 empty"])
    engine.dispose()
    monkeypatch.setenv("CREDITBOOK_DATABASE_URL", url)

    code, out, err = db_cli("db", "upgrade")
    assert code == 10 and "creditbook db repair" in err

    code, out, err = db_cli("db", "repair", "--backup", str(tmp_path / "before-repair.db"))
    assert code == 0, err
    assert f"backup written: {tmp_path / 'before-repair.db'} (revision 0006_dashboard" in out
    for revision in ("0004_purchases", "0005_enrichment", "0006_dashboard"):
        assert f"ran {revision}, whose tables were missing: " in out
    assert "upgraded 0006_dashboard -> 0014_repair_history" in out
    assert "identical to the schema of 0014_repair_history" in out
    code, out, _ = db_cli("db", "check")
    assert code == 0 and "identical" in out
