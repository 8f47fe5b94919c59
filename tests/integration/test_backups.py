"""``creditbook db backup`` and ``db restore``: a restored copy passes the audit, same balances."""

from __future__ import annotations

from pathlib import Path

import pytest
from upgrade_data import DbCli

import creditbook
from creditbook import Actor
from creditbook.adapters.db import migrate, schema_check
from creditbook.adapters.db.engine import make_engine


def _populated(url: str) -> tuple[str, str]:
    """A team with credits, charges and an open hold; its id and the hold's."""
    book = creditbook.open(url)
    team = book.create_team("Acme").id
    member = book.add_member(team, "bob@acme.example", "member").id
    book.grant(team, 1000, category="purchased", source="purchase")
    book.charge(team, "email_finder", outcome="deliverable", idempotency_key="c1")
    hold = book.hold(team, "phone_finder", actor=Actor(member_id=member)).hold_id
    assert book.engine is not None
    book.engine.dispose()
    return team, hold


def _balance(url: str, team: str) -> tuple[int, int]:
    book = creditbook.open(url, upgrade=False)
    balance = book.balance(team)
    assert book.engine is not None
    book.engine.dispose()
    return balance.available, balance.reserved


def test_a_restored_backup_passes_the_audit_with_the_balances_it_was_taken_with(
    db_cli: DbCli, empty_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    team, hold = _populated(empty_url)
    monkeypatch.setenv("CREDITBOOK_DATABASE_URL", empty_url)
    taken = _balance(empty_url, team)
    path = tmp_path / "acme.backup"
    code, out, err = db_cli("db", "backup", str(path))
    assert code == 0, err
    assert f"written: {path} (revision {migrate.head_revision()}" in out
    later = creditbook.open(empty_url, upgrade=False)
    later.charge(team, "phone_finder", outcome="found")
    later.grant(team, 50, category="free", source="gift")
    assert later.engine is not None
    later.engine.dispose()
    assert _balance(empty_url, team) != taken

    code, out, err = db_cli("db", "restore", str(path), "--yes", "--no-backup")

    assert code == 0, err
    assert f"restored: database at revision {migrate.head_revision()}" in out
    code, out, _ = db_cli("audit")
    assert code == 0 and "audit clean" in out
    assert _balance(empty_url, team) == taken
    restored = creditbook.open(empty_url, upgrade=False)
    assert restored.capture(team, hold, outcome="found").credits == 20  # the hold is still open
    assert restored.audit().clean
    assert restored.engine is not None
    restored.engine.dispose()


def test_a_backup_restored_into_an_empty_database_is_an_identical_copy(
    empty_url: str, another_empty_url: str, tmp_path: Path
) -> None:
    from creditbook.adapters.db import backup

    team, _ = _populated(empty_url)
    source = make_engine(empty_url)
    made = backup.backup(source, tmp_path / "copy.backup")
    copy = make_engine(another_empty_url)

    backup.restore(copy, made.path)

    assert schema_check.check(copy)[1] == []
    assert _balance(another_empty_url, team) == _balance(empty_url, team)
    book = creditbook.open(another_empty_url, upgrade=False)
    assert book.audit().clean
    assert book.engine is not None
    book.engine.dispose()
    source.dispose()
    copy.dispose()


def test_restoring_an_older_backup_removes_what_later_migrations_made(
    db_cli: DbCli, empty_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine, "0012_service_keys")
    engine.dispose()
    monkeypatch.setenv("CREDITBOOK_DATABASE_URL", empty_url)
    monkeypatch.chdir(tmp_path)  # where a PostgreSQL backup taken first goes
    path = tmp_path / "at-0012.backup"
    assert db_cli("db", "backup", str(path))[0] == 0
    assert db_cli("db", "upgrade")[0] == 0

    code, out, err = db_cli("db", "restore", str(path), answer="y")

    assert code == 0, err
    assert "a backup is written first" in out and "backup written" in out  # of the head's state
    assert "the database is at revision 0012_service_keys" in out  # and what to run next
    code, out, _ = db_cli("db", "check", "--revision", "0012_service_keys")
    assert code == 0 and "identical" in out  # dashboard_sessions (0013) is gone


def test_a_backup_never_overwrites_and_a_restore_refuses_what_is_no_backup(
    db_cli: DbCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    _populated(url)
    monkeypatch.setenv("CREDITBOOK_DATABASE_URL", url)
    taken = tmp_path / "taken.backup"
    taken.write_text("an operator's file")

    code, _, err = db_cli("db", "backup", str(taken))
    assert code == 13 and "exists: a backup never overwrites a file" in err
    assert taken.read_text() == "an operator's file"

    code, _, err = db_cli("db", "restore", str(taken), "--yes", "--no-backup")
    assert code == 13 and "is not a SQLite database" in err
    code, _, err = db_cli("db", "restore", str(tmp_path / "missing.backup"), "--yes")
    assert code == 2 and "no backup at" in err
    code, out, _ = db_cli("audit")
    assert code == 0 and "audit clean" in out


def test_a_restore_asks_first_and_changes_nothing_when_refused(
    db_cli: DbCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    team, _ = _populated(url)
    monkeypatch.setenv("CREDITBOOK_DATABASE_URL", url)
    path = tmp_path / "b.backup"
    assert db_cli("db", "backup", str(path))[0] == 0
    book = creditbook.open(url, upgrade=False)
    book.grant(team, 7, category="free", source="gift")
    after = book.balance(team).available
    assert book.engine is not None
    book.engine.dispose()

    code, _, err = db_cli("db", "restore", str(path), answer="n")

    assert code == 1 and "nothing was changed" in err
    assert _balance(url, team)[0] == after
    assert [p.name for p in tmp_path.glob("*.backup")] == ["b.backup"]  # none taken either
