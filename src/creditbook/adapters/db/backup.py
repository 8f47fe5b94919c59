"""``creditbook db backup PATH`` and ``db restore PATH``: a whole database, online.

SQLite: the online backup API (``sqlite3.Connection.backup``) copies a
consistent snapshot while the server keeps running; the copy is one file
(rollback journal, not WAL), checked with ``PRAGMA integrity_check`` before it
takes its name. A restore copies it back the same way, in one transaction on
the live file.

PostgreSQL: ``pg_dump --format=custom`` (a consistent snapshot; it blocks no
reader or writer). A restore is ``pg_restore --clean --if-exists`` piped into
``psql --single-transaction``: the tables the backup does not hold (made by a
later migration) are dropped first, then every object of the backup is
dropped and created again, all in one transaction with the migrations' lock
timeout, so a restore either ends with exactly the backup's database or
leaves the database as it was. The client tools (``pg_dump``, ``pg_restore``,
``psql``) must be on ``PATH``; the password goes through ``PGPASSWORD``, never
on a command line.

A backup never overwrites a file.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from creditbook.adapters.db import migrate
from creditbook.adapters.db.schema_errors import BackupFailed, MigrationLockTimeout


@dataclass(frozen=True)
class BackupFile:
    """A backup on disk: where, of which revision, how large."""

    path: Path
    revision: str | None
    size: int


def default_path(engine: Engine, revision: str | None, *, directory: Path | None = None) -> Path:
    """Where a backup goes when none is named: beside a SQLite file, else here."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    label = revision or "empty"
    database = engine.url.database or "memory"
    if engine.dialect.name == "sqlite":
        live = Path(database)
        folder, name, suffix = directory or live.parent, f"{live.name}.{label}.{stamp}", "backup"
    else:
        folder, name, suffix = (
            directory or Path.cwd(),
            f"creditbook-{database}-{label}.{stamp}",
            "dump",
        )
    path = folder / f"{name}.{suffix}"
    taken = 1
    while path.exists():  # two backups in one second
        taken += 1
        path = folder / f"{name}-{taken}.{suffix}"
    return path


def backup(engine: Engine, path: Path) -> BackupFile:
    """Copy the whole database to ``path`` (which must not exist)."""
    path = Path(path)
    if path.exists():
        raise BackupFailed(f"{path} exists: a backup never overwrites a file; name another")
    if not path.parent.is_dir():
        raise BackupFailed(f"{path.parent} is not a directory")
    if engine.dialect.name == "sqlite":
        _sqlite_backup(_sqlite_file(engine), path)
    else:
        _pg_dump(engine.url, path)
    return describe(engine, path)


def describe(engine: Engine, path: Path) -> BackupFile:
    """The revision and size of the backup at ``path``."""
    if engine.dialect.name == "sqlite":
        revision = _sqlite_revision(path)
    else:
        revision = _pg_dump_revision(path)
    return BackupFile(path, revision, path.stat().st_size)


def restore(
    engine: Engine,
    path: Path,
    *,
    lock_timeout: float = migrate.DEFAULT_LOCK_TIMEOUT_SECONDS,
) -> BackupFile:
    """Make the database exactly the backup at ``path`` (everything in it now is replaced)."""
    path = Path(path)
    if not path.is_file():
        raise BackupFailed(f"no backup at {path}")
    if engine.dialect.name == "sqlite":
        found = _sqlite_check(path)
        _sqlite_restore(path, _sqlite_file(engine), busy_timeout=lock_timeout)
    else:
        found = describe(engine, path)
        _pg_restore(engine, path, lock_timeout=lock_timeout)
    engine.dispose()  # no pooled connection keeps a view of the old database
    return found


# ---- SQLite --------------------------------------------------------------------------


def _sqlite_file(engine: Engine) -> Path:
    database = engine.url.database
    if database in (None, "", ":memory:"):
        raise BackupFailed("a SQLite database in memory has no file to back up or restore")
    return Path(str(database))


def _sqlite_backup(live: Path, path: Path) -> None:
    if not live.is_file():
        raise BackupFailed(f"no SQLite database at {live}")
    partial = path.with_name(path.name + ".partial")
    source = sqlite3.connect(live, timeout=migrate.DEFAULT_LOCK_TIMEOUT_SECONDS)
    try:
        target = sqlite3.connect(partial, isolation_level=None)
        try:
            source.backup(target)
            # One self-contained file: a WAL copy would need its -wal file beside it.
            target.execute("PRAGMA journal_mode=DELETE")
            verdict = target.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            target.close()
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupFailed(f"backup of {live} failed: {exc}") from None
    finally:
        source.close()
    if verdict != "ok":
        partial.unlink(missing_ok=True)
        raise BackupFailed(f"the copy of {live} fails its integrity check: {verdict}")
    partial.rename(path)


def _sqlite_check(path: Path) -> BackupFile:
    try:
        copy = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
            tables = {row[0] for row in copy.execute("SELECT name FROM sqlite_master")}
        finally:
            copy.close()
    except sqlite3.DatabaseError as exc:
        raise BackupFailed(f"{path} is not a SQLite database: {exc}") from None
    if verdict != "ok":
        raise BackupFailed(f"{path} fails its integrity check: {verdict}")
    if migrate.VERSION_TABLE not in tables:
        raise BackupFailed(f"{path} is not a creditbook database (it has no migration revision)")
    return BackupFile(path, _sqlite_revision(path), path.stat().st_size)


def _sqlite_revision(path: Path) -> str | None:
    copy = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = copy.execute(f"SELECT version_num FROM {migrate.VERSION_TABLE}").fetchone()
    except sqlite3.Error:
        return None
    finally:
        copy.close()
    return str(row[0]) if row else None


def _sqlite_restore(path: Path, live: Path, *, busy_timeout: float) -> None:
    live.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(live, timeout=busy_timeout, isolation_level=None)
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode=WAL")
        finally:
            target.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise MigrationLockTimeout(
                f"{live} stayed locked by another connection for {busy_timeout:g} s ({exc}); "
                "nothing was changed. Stop the processes using it and restore again"
            ) from None
        raise BackupFailed(f"restore of {path} into {live} failed: {exc}") from None
    finally:
        source.close()


# ---- PostgreSQL ------------------------------------------------------------------------


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, and the environment that carries it."""
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    bare = url.set(drivername="postgresql", password=None)
    return bare.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupFailed(
            f"{name} is not on PATH: install PostgreSQL's client tools (the version of the "
            "server or newer)"
        )
    return found


def _pg_dump(url: URL, path: Path) -> None:
    conninfo, env = _libpq(url)
    partial = path.with_name(path.name + ".partial")
    done = subprocess.run(
        [_tool("pg_dump"), "--format=custom", "--file", str(partial), "--dbname", conninfo],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupFailed(f"pg_dump failed: {_last_lines(done.stderr)}")
    partial.rename(path)


def _pg_dump_revision(path: Path) -> str | None:
    done = subprocess.run(
        [
            _tool("pg_restore"),
            "--data-only",
            "--table",
            migrate.VERSION_TABLE,
            "--file",
            "-",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BackupFailed(f"{path} is not a pg_dump archive: {_last_lines(done.stderr)}")
    copy = r"^COPY [^\n]*alembic_version[^\n]*FROM stdin;\n(.*?)^\\\.$"
    rows = re.search(copy, done.stdout, re.M | re.S)
    values = rows.group(1).split() if rows else []
    return values[0] if values else None


def _toc(path: Path) -> list[tuple[str, str, str]]:
    """The archive's tables and functions: (kind, schema, name)."""
    done = subprocess.run(
        [_tool("pg_restore"), "--list", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BackupFailed(f"{path} is not a pg_dump archive: {_last_lines(done.stderr)}")
    found = []
    for line in done.stdout.splitlines():
        match = re.match(r"^\d+; \d+ \d+ (TABLE|FUNCTION) (\S+) (.+) \S+$", line)
        if match:
            found.append((match.group(1), match.group(2), match.group(3)))
    return found


def _pg_restore(engine: Engine, path: Path, *, lock_timeout: float) -> None:
    toc = _toc(path)
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        live_tables = set(
            conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
            ).scalars()
        )
    archived = {name for kind, in_schema, name in toc if kind == "TABLE" and in_schema == schema}
    if not archived:
        raise BackupFailed(
            f"{path} holds no table of schema {schema!r}: not this database's backup"
        )
    extra = sorted(live_tables - archived)
    conninfo, env = _libpq(engine.url)
    milliseconds = max(1, round(lock_timeout * 1000))
    prelude = [f"SET lock_timeout = {milliseconds}"] + [
        f'DROP TABLE IF EXISTS "{schema}"."{table}" CASCADE' for table in extra
    ]
    psql = [_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
    for statement in prelude:
        psql += ["-c", statement]
    psql += ["-f", "-", "--dbname", conninfo]
    # Messages go to files: a full stderr pipe nobody reads would stall the restore.
    with tempfile.TemporaryFile() as script_err, tempfile.TemporaryFile() as loader_err:
        script = subprocess.Popen(
            [
                _tool("pg_restore"),
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--file",
                "-",
                str(path),
            ],
            stdout=subprocess.PIPE,
            stderr=script_err,
        )
        loader = subprocess.Popen(
            psql, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=loader_err, env=env
        )
        assert script.stdout is not None and loader.stdin is not None
        _pipe(script.stdout, loader.stdin, milliseconds)
        loader.wait()
        script.stdout.close()
        script.wait()
        script_err.seek(0)
        loader_err.seek(0)
        script_words = _last_lines(script_err.read().decode(errors="replace"))
        loader_words = _last_lines(loader_err.read().decode(errors="replace"))
    if loader.returncode != 0:
        if "lock timeout" in loader_words:
            raise MigrationLockTimeout(
                f"the restore gave up waiting for a lock ({loader_words}); nothing was changed. "
                "Stop the processes using the database (creditbook serve) and restore again"
            )
        raise BackupFailed(f"restore failed, nothing was changed: {loader_words}")
    if script.returncode != 0:
        raise BackupFailed(f"pg_restore failed: {script_words}")


# pg_restore's script sets its session options (lock_timeout among them) in its first lines.
_SCRIPT_HEADER_LINES = 40


def _pipe(source: IO[bytes], sink: IO[bytes], lock_timeout_ms: int) -> None:
    """Copy pg_restore's script into psql; its header's ``lock_timeout = 0`` keeps ours."""
    try:
        for _ in range(_SCRIPT_HEADER_LINES):
            line = source.readline()
            if line.startswith(b"SET lock_timeout = 0;"):
                line = f"SET lock_timeout = {lock_timeout_ms};\n".encode()
            sink.write(line)
        shutil.copyfileobj(source, sink, 1024 * 1024)
    except BrokenPipeError:
        pass  # psql stopped at an error: its own message says which
    finally:
        with contextlib.suppress(BrokenPipeError):
            sink.close()


def _last_lines(words: str, count: int = 3) -> str:
    lines = [line.strip() for line in words.strip().splitlines() if line.strip()]
    return " / ".join(lines[-count:]) or "no message"
