"""Alembic migrations run from code: ``creditbook db ...``, ``creditbook.open`` and the tests.

Every upgrade and downgrade runs in one transaction, rolled back whole if a step
fails. On PostgreSQL it first sets ``lock_timeout`` (``lock_timeout`` below,
``CREDITBOOK_MIGRATION_LOCK_TIMEOUT_SECONDS`` in the CLI): a step that needs a
lock another session holds fails after that long, naming the sessions that
hold it, instead of waiting while every query on that table queues behind it.
On SQLite a step that rebuilt tables leaves their old pages free; when that is
a tenth of the file or more (and at least 1 MiB) the file is vacuumed after the
commit.

``revision_status`` and ``require_head`` tell whether the database is at the
head of this version's migrations; ``creditbook serve``, ``/readyz`` and
workers refuse a database that is behind or ahead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from creditbook.adapters.db.schema_errors import (
    MigrationLockTimeout,
    SchemaNeedsRepair,
    SchemaNotCurrent,
)
from creditbook.domain.errors import DatabaseUnavailable, InvalidInput

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# Alembic is imported where it is used: a process that only opens an up-to-date
# database (a sweeping process, an API worker) does not pay a quarter second for it.

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"
# How long a migration waits for a lock on PostgreSQL before it gives up (seconds).
DEFAULT_LOCK_TIMEOUT_SECONDS = 5.0
# SQLite: vacuum after a migration when its free pages are this share of the file...
VACUUM_FREE_SHARE = 0.10
# ...and at least this many bytes.
VACUUM_FREE_BYTES = 1024 * 1024
UPGRADE_COMMAND = "creditbook db upgrade"


def alembic_config(**attributes: Any) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes.update(attributes)
    return config


@functools.cache
def script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None, "the migrations have one head"
    return head


@dataclass(frozen=True)
class Revision:
    """One migration: its id, the one it follows, and the first line of its docstring."""

    revision: str
    down_revision: str | None
    title: str


def history() -> list[Revision]:
    """Every migration, oldest first."""
    found = []
    for script in script_directory().walk_revisions():
        down = script.down_revision
        assert down is None or isinstance(down, str), "the migrations form one line"
        title = (script.longdoc or "").strip().splitlines()
        found.append(Revision(script.revision, down, title[0] if title else ""))
    return found[::-1]


def known_revisions() -> list[str]:
    return [r.revision for r in history()]


# ---- where a database stands ----------------------------------------------------------


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return read_revision(conn)


def read_revision(conn: Connection) -> str | None:
    """The revision stamped in the database, None when it has none (plain SQL, no Alembic)."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


@dataclass(frozen=True)
class RevisionStatus:
    """Where the database stands against this version's migrations."""

    current: str | None
    head: str
    known: bool
    has_tables: bool

    @property
    def state(self) -> str:
        """``current``, ``behind``, ``ahead`` (a revision this version does not know),
        ``new`` (no tables at all) or ``unversioned`` (tables, no revision)."""
        if self.current == self.head:
            return "current"
        if self.current is None:
            return "unversioned" if self.has_tables else "new"
        return "behind" if self.known else "ahead"

    def problem(self) -> str | None:
        """What is wrong and the command that fixes it; None at the head."""
        state = self.state
        if state == "current":
            return None
        if state == "new":
            return f"the database is empty: run `{UPGRADE_COMMAND}` to create its tables"
        if state == "unversioned":
            return (
                "the database has tables but no migration revision (it was not made by "
                "creditbook's migrations); `creditbook db check` lists how it differs"
            )
        if state == "behind":
            return (
                f"the database is at revision {self.current}; this version of creditbook "
                f"needs {self.head}: back it up (`creditbook db backup PATH`), then run "
                f"`{UPGRADE_COMMAND}`"
            )
        return (
            f"the database is at revision {self.current}, which this version of creditbook "
            f"does not know (the newest it knows is {self.head}): a newer version upgraded "
            f"it. Run that version, or downgrade with it first: "
            f"`creditbook db downgrade {self.head}`"
        )

    def error(self) -> SchemaNotCurrent:
        return SchemaNotCurrent(
            self.problem() or "the database is at the head revision",
            revision=self.current,
            head=self.head,
            state=self.state,
        )


def revision_status(engine: Engine) -> RevisionStatus:
    with engine.connect() as conn:
        current = read_revision(conn)
        tables = set(inspect(conn).get_table_names()) - {VERSION_TABLE}
    known = current is None or current in known_revisions()
    return RevisionStatus(current, head_revision(), known, bool(tables))


def require_head(engine: Engine, *, create_new: bool = False) -> RevisionStatus:
    """Refuse (``SchemaNotCurrent``) a database that is not at this version's head.

    The check a long-running process (``creditbook serve``, a worker) makes before it
    starts: it never upgrades a database that holds data. ``create_new``: a new, empty
    database (no tables at all) is migrated instead; there is nothing in it to lose.
    """
    status = revision_status(engine)
    if status.state == "current":
        return status
    if status.state == "new" and create_new:
        upgrade(engine)
        return revision_status(engine)
    raise status.error()


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def schema_problem(engine: Engine) -> str | None:
    """None at the head; else what is wrong and what to run (``/readyz`` asks it each time)."""
    if current_revision(engine) == head_revision():
        return None
    return revision_status(engine).problem()


# ---- running migrations ---------------------------------------------------------------


@dataclass(frozen=True)
class Vacuum:
    """A SQLite file vacuumed after a migration: its size before and after, in bytes."""

    before: int
    after: int
    skipped: str | None = None


@dataclass
class MigrationRun:
    """What an upgrade or downgrade did: from and to which revision, each step run.

    ``path``: the steps it set out to run (``steps`` are those done, in order).
    """

    start: str | None
    end: str | None
    steps: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    vacuum: Vacuum | None = None


def upgrade(
    engine: Engine,
    revision: str = "head",
    *,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT_SECONDS,
    vacuum: bool = True,
) -> MigrationRun:
    """Apply the migrations up to ``revision`` in one transaction.

    Refused: a database at a revision this version does not know (``SchemaNotCurrent``),
    and one stamped at a revision whose tables it lacks (``SchemaNeedsRepair``:
    ``creditbook db repair`` fixes it).
    """
    run = MigrationRun(None, None)
    with _lock_errors(engine, run):
        status = revision_status(engine)
        target = head_revision() if revision == "head" else revision
        if not status.known or status.state == "unversioned":
            raise status.error()
        run.start = run.end = status.current
        run.path = _path(status.current, target)
        if status.current is not None and run.path:
            _refuse_gaps(engine, status.current)
        with engine.begin() as conn:
            run.steps.extend(upgrade_on(conn, target, lock_timeout=lock_timeout))
        run.end = current_revision(engine)
    if vacuum and run.steps:
        run.vacuum = vacuum_if_worth_it(engine)
    return run


def downgrade(
    engine: Engine,
    revision: str,
    *,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT_SECONDS,
    vacuum: bool = True,
) -> MigrationRun:
    """Undo the migrations after ``revision`` (``base``: all of them), in one transaction."""
    run = MigrationRun(None, None)
    with _lock_errors(engine, run):
        status = revision_status(engine)
        if not status.known:
            raise status.error()
        run.start = run.end = status.current
        run.path = downgrade_path(status.current, revision)
        with engine.begin() as conn:
            run.steps.extend(downgrade_on(conn, revision, lock_timeout=lock_timeout))
        run.end = current_revision(engine)
    if vacuum and run.steps:
        run.vacuum = vacuum_if_worth_it(engine)
    return run


def upgrade_on(
    conn: Connection, revision: str = "head", *, lock_timeout: float | None = None
) -> list[str]:
    """Run the upgrade on ``conn``, in its transaction; the revisions applied, in order."""
    from alembic import command

    applied: list[str] = []
    command.upgrade(_config(conn, applied, lock_timeout), revision)
    return applied


def downgrade_on(
    conn: Connection, revision: str, *, lock_timeout: float | None = None
) -> list[str]:
    """Run the downgrade on ``conn``, in its transaction; the revisions undone, in order."""
    from alembic import command

    undone: list[str] = []
    command.downgrade(_config(conn, undone, lock_timeout), revision)
    return undone


def stamp_on(conn: Connection, revision: str) -> None:
    """Record ``revision`` as the database's, running nothing."""
    from alembic import command

    command.stamp(alembic_config(connection=conn), revision, purge=True)


def _config(conn: Connection, steps: list[str], lock_timeout: float | None) -> Config:
    def on_version_apply(*, step: Any, **_kw: Any) -> None:
        if not step.is_stamp:
            steps.append(step.up_revision_id)

    return alembic_config(
        connection=conn, lock_timeout=lock_timeout, on_version_apply=on_version_apply
    )


def _path(current: str | None, target: str) -> list[str]:
    """The revisions an upgrade from ``current`` to ``target`` applies, in order."""
    known = known_revisions()
    if target not in known:
        raise InvalidInput(
            f"unknown revision {target!r}; this version knows {', '.join(known)}",
            revision=target,
        )
    start = -1 if current is None else known.index(current)
    end = known.index(target)
    if end < start:
        raise InvalidInput(
            f"revision {target} is older than the database's {current}: "
            f"use `creditbook db downgrade {target}`",
            revision=target,
        )
    return known[start + 1 : end + 1]


def downgrade_path(current: str | None, target: str) -> list[str]:
    """The revisions a downgrade from ``current`` to ``target`` undoes, newest first."""
    known = known_revisions()
    if current is None:
        raise InvalidInput("the database has no migration revision: there is nothing to undo")
    if target != "base" and target not in known:
        raise InvalidInput(
            f"unknown revision {target!r}; this version knows base, {', '.join(known)}",
            revision=target,
        )
    start = known.index(current)
    end = -1 if target == "base" else known.index(target)
    if end >= start:
        raise InvalidInput(
            f"revision {target} is not older than the database's {current}: "
            f"a downgrade goes to one of {', '.join(['base', *known[:start]])}",
            revision=target,
        )
    return known[end + 1 : start + 1][::-1]


def _refuse_gaps(engine: Engine, current: str) -> None:
    from creditbook.adapters.db.repair import missing_steps

    with engine.connect() as conn:
        gaps = missing_steps(conn, current)
    if gaps:
        lacking = "; ".join(f"{gap.revision} ({', '.join(gap.tables)})" for gap in gaps)
        raise SchemaNeedsRepair(
            f"the database is stamped {current} but lacks the tables of {lacking}: those "
            "migrations were empty when it was stamped. Run `creditbook db repair`: it "
            "creates them, upgrades, and checks the result against the head schema",
            revision=current,
            missing=[gap.revision for gap in gaps],
        )


@contextmanager
def _lock_errors(engine: Engine, run: MigrationRun | None = None) -> Iterator[None]:
    """A lock wait past the timeout as ``MigrationLockTimeout``, naming the step and holders."""
    try:
        yield
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":
            raise
        done = len(run.steps) if run else 0
        step = run.path[done] if run and done < len(run.path) else None
        what = f"migration {step}" if step else "the migration"
        raise MigrationLockTimeout(
            f"{what} gave up waiting for a lock ({_first_line(exc.orig)}); "
            f"nothing was changed. {_lock_holders(engine)} Run it again when they are "
            "done, or raise CREDITBOOK_MIGRATION_LOCK_TIMEOUT_SECONDS",
            revision=step,
        ) from None
    except DatabaseUnavailable as exc:
        if engine.dialect.name != "sqlite":
            raise
        raise MigrationLockTimeout(
            f"another connection holds the write lock of {engine.url.database} "
            f"({exc.cause}); nothing was changed. Stop the processes writing to it "
            "(creditbook serve, a sqlite3 shell) and run it again",
        ) from None


def _first_line(exc: BaseException | None) -> str:
    words = str(exc).strip().splitlines()
    return words[0] if words else type(exc).__name__


def _lock_holders(engine: Engine) -> str:
    """The sessions holding locks on this schema's tables, as one sentence."""
    query = text(
        """
        SELECT DISTINCT a.pid, a.state, a.application_name, left(a.query, 100)
          FROM pg_locks l
          JOIN pg_stat_activity a ON a.pid = l.pid
          JOIN pg_class c ON c.oid = l.relation
         WHERE l.granted AND a.pid <> pg_backend_pid()
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND c.relnamespace = current_schema()::regnamespace
         ORDER BY a.pid
        """
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    except Exception:  # the diagnosis must not hide the timeout itself
        return ""
    if not rows:
        return "The session that held it is gone."
    held = "; ".join(
        f"pid {pid} ({application or 'no application name'}, {state}: {query!r})"
        for pid, state, application, query in rows
    )
    return f"Sessions holding locks on its tables: {held}."


def vacuum_if_worth_it(engine: Engine) -> Vacuum | None:
    """VACUUM a SQLite file whose free pages are worth giving back; None when not."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    raw = engine.raw_connection()
    try:
        sqlite = raw.driver_connection
        assert sqlite is not None
        page_size, pages, free = (
            sqlite.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("page_size", "page_count", "freelist_count")
        )
        if free * page_size < VACUUM_FREE_BYTES or free < pages * VACUUM_FREE_SHARE:
            return None
        try:
            sqlite.execute("VACUUM")
        except Exception as exc:  # another connection reads: the space stays free for reuse
            return Vacuum(pages * page_size, pages * page_size, skipped=str(exc))
        after = sqlite.execute("PRAGMA page_count").fetchone()[0] * page_size
        return Vacuum(pages * page_size, after)
    finally:
        raw.close()


def run_in_transaction(engine: Engine, work: Callable[[Connection], Any]) -> Any:
    """``work(conn)`` in one transaction, lock waits reported as ``MigrationLockTimeout``."""
    with _lock_errors(engine), engine.begin() as conn:
        return work(conn)
