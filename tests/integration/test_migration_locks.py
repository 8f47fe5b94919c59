"""A migration that needs a lock another session holds fails fast and names the holder.

Without ``lock_timeout`` it would wait, and every later query on the table would queue behind it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from upgrade_data import DbCli

from creditbook.adapters.db import migrate
from creditbook.adapters.db.engine import make_engine
from creditbook.adapters.db.schema_errors import MigrationLockTimeout

# Generous: the migration must give up on its own long before this (a hang fails the test).
HANG = 60.0


def _in_thread(work):  # type: ignore[no-untyped-def]
    """Run ``work`` in a thread; what it raised or returned, or a failure if it hangs."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["returned"] = work()
        except BaseException as exc:
            outcome["raised"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(HANG)
    assert not worker.is_alive(), "the migration waited for the lock instead of giving up"
    return outcome


@pytest.mark.postgres
def test_a_reader_holding_a_lock_makes_the_upgrade_fail_fast_and_change_nothing(
    fresh_pg_url: str,
) -> None:
    engine = make_engine(fresh_pg_url)
    migrate.upgrade(engine, "0008_lean_indexes")
    reader = make_engine(fresh_pg_url)
    with reader.connect() as conn:
        conn.execute(text("SET application_name = 'creditbook balance'"))
        conn.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one()
        # The reader's transaction stays open: 0009's ALTER TABLE cannot take its lock.
        outcome = _in_thread(lambda: migrate.upgrade(engine, lock_timeout=0.3))
        conn.rollback()

    raised = outcome.get("raised")
    assert isinstance(raised, MigrationLockTimeout), outcome
    assert "migration 0009_check_equalities gave up waiting for a lock" in raised.message
    assert "creditbook balance" in raised.message and "nothing was changed" in raised.message
    assert "CREDITBOOK_MIGRATION_LOCK_TIMEOUT_SECONDS" in raised.message
    assert migrate.current_revision(engine) == "0008_lean_indexes"
    # Once the reader is gone the same upgrade goes through.
    assert migrate.upgrade(engine, lock_timeout=0.3).end == migrate.head_revision()
    reader.dispose()
    engine.dispose()


@pytest.mark.postgres
def test_db_upgrade_reports_the_lock_timeout_in_one_line_and_exit_code(
    db_cli: DbCli, fresh_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(fresh_pg_url)
    migrate.upgrade(engine, "0008_lean_indexes")
    monkeypatch.setenv("CREDITBOOK_DATABASE_URL", fresh_pg_url)
    monkeypatch.setenv("CREDITBOOK_MIGRATION_LOCK_TIMEOUT_SECONDS", "0.3")
    with engine.connect() as conn:
        conn.execute(text("SELECT count(*) FROM grants")).scalar_one()
        started = time.monotonic()
        code, _, err = db_cli("db", "upgrade")
        waited = time.monotonic() - started
        conn.rollback()
    assert code == 12, err
    assert "error (migration_lock_timeout): migration 0009_check_equalities" in err
    assert waited < HANG
    engine.dispose()


def test_another_process_writing_to_a_sqlite_file_makes_the_upgrade_fail_fast(
    tmp_path: Path,
) -> None:
    path = tmp_path / "busy.db"
    engine = make_engine(f"sqlite:///{path}", busy_timeout=0.3)
    migrate.upgrade(engine, "0008_lean_indexes")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        outcome = _in_thread(lambda: migrate.upgrade(engine))
    finally:
        writer.execute("ROLLBACK")
        writer.close()

    raised = outcome.get("raised")
    assert isinstance(raised, MigrationLockTimeout), outcome
    assert "holds the write lock" in raised.message and "nothing was changed" in raised.message
    assert migrate.current_revision(engine) == "0008_lean_indexes"
    engine.dispose()
