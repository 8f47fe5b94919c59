"""``creditbook db current | history | upgrade | downgrade``: what an operator types and sees."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from upgrade_data import DbCli, Upgrade, audit_is_clean, build

from creditbook.adapters.db import migrate
from creditbook.adapters.db.engine import make_engine

HEAD = "0014_repair_history"


@pytest.fixture
def at_0012(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite file at 0012 holding one team's rows, as CREDITBOOK_DATABASE_URL."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    engine = make_engine(url)
    build(engine, [Upgrade("0012_service_keys")])
    engine.dispose()
    monkeypatch.setenv("CREDITBOOK_DATABASE_URL", url)
    return url


def test_current_and_history_say_where_the_database_stands(db_cli: DbCli, at_0012: str) -> None:
    code, out, _ = db_cli("db", "current")
    assert code == 0
    assert out.startswith("0012_service_keys (behind)")
    assert f"needs {HEAD}" in out and "creditbook db upgrade" in out

    code, out, _ = db_cli("db", "history")
    assert code == 0
    lines = [line for line in out.splitlines() if "_" in line]
    assert next(line for line in lines if "│ > │" in line).count("0012_service_keys") == 1
    assert f"{HEAD} (head)" in out and "0001_ledger_core" in out


def test_a_downgrade_asks_first_and_a_no_changes_nothing(db_cli: DbCli, at_0012: str) -> None:
    code, out, err = db_cli("db", "downgrade", "0011_purchase_sweep", answer="n")

    assert code == 1 and "nothing was changed" in err
    assert "0012_service_keys" in out and "undoes" in out
    assert migrate.current_revision(make_engine(at_0012)) == "0012_service_keys"
    assert not list(Path(at_0012.removeprefix("sqlite:///")).parent.glob("*.backup"))


def test_a_downgrade_takes_a_backup_first_then_undoes_each_step(
    db_cli: DbCli, at_0012: str, tmp_path: Path
) -> None:
    backup = tmp_path / "before-downgrade.backup"

    code, out, err = db_cli(
        "db", "downgrade", "0009_check_equalities", "--yes", "--backup", str(backup)
    )

    assert code == 0, err
    assert f"backup written: {backup} (revision 0012_service_keys" in out
    assert "downgraded 0012_service_keys -> 0009_check_equalities" in out
    for undone in ("0012_service_keys", "0011_purchase_sweep", "0010_key_caps"):
        assert f"  {undone}" in out
    engine = make_engine(at_0012)
    assert migrate.current_revision(engine) == "0009_check_equalities"
    audit_is_clean(engine)
    engine.dispose()
    assert db_cli("db", "check", "--revision", "0009_check_equalities")[0] == 0
    # And back up: the code that knows the newer revisions upgrades it again.
    code, out, _ = db_cli("db", "upgrade")
    assert code == 0 and f"upgraded 0009_check_equalities -> {HEAD}" in out


def test_a_downgrade_to_a_revision_that_is_not_older_is_refused(
    db_cli: DbCli, at_0012: str
) -> None:
    code, _, err = db_cli("db", "downgrade", HEAD, "--yes")
    assert code == 2 and "is not older than the database's 0012_service_keys" in err
    code, _, err = db_cli("db", "downgrade", "0011_nope", "--yes")
    assert code == 2 and "unknown revision '0011_nope'" in err
    assert migrate.current_revision(make_engine(at_0012)) == "0012_service_keys"


def test_a_database_ahead_of_this_version_is_refused_with_the_revision_it_knows(
    db_cli: DbCli, at_0012: str
) -> None:
    engine = make_engine(at_0012)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0015_from_the_future'"))
    engine.dispose()

    for command in (("db", "upgrade"), ("db", "downgrade", "0011_purchase_sweep", "--yes")):
        code, _, err = db_cli(*command)
        assert code == 10, command
        assert "0015_from_the_future, which this version of creditbook does not know" in err
        assert f"the newest it knows is {HEAD}" in err
        assert f"creditbook db downgrade {HEAD}" in err
    code, out, _ = db_cli("db", "current")
    assert code == 0 and "0015_from_the_future (unknown to this version)" in out


def test_a_sqlite_upgrade_that_rebuilt_tables_gives_their_old_pages_back(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine, "0008_lean_indexes")
    with engine.begin() as conn:
        # 20,000 balanced entries: 0009 copies their tables, and frees the old pages.
        conn.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
                "INSERT INTO ledger_entries (team_id, id, kind, created_at, credits, meta) "
                "SELECT 't', 'e' || i, 'grant', '2026-01-15 09:30:00.000000', 1, '{}' FROM n"
            )
        )

    run = migrate.upgrade(engine)

    assert run.vacuum is not None and run.vacuum.skipped is None
    # 0009 doubled the ledger's pages; VACUUM gave the copy's worth back.
    assert run.vacuum.after < run.vacuum.before * 0.7
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA freelist_count")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM ledger_entries")).scalar() == 20000
    # Nothing freed, nothing vacuumed: a downgrade of an index-only step.
    assert migrate.downgrade(engine, "0013_dashboard_sessions").vacuum is None
    engine.dispose()
