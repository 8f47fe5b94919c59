"""``creditbook db ...``: the database's schema, its upgrades, checks and backups.

    creditbook db current                 the database's revision, and the head's
    creditbook db history                 every migration, the database's marked
    creditbook db check [--revision R]    the live schema against the one the code expects
    creditbook db upgrade [REVISION] [--backup PATH]
    creditbook db downgrade REVISION [--yes] [--backup PATH | --no-backup]
    creditbook db repair [--backup PATH | --no-backup]
    creditbook db backup PATH
    creditbook db restore PATH [--yes] [--backup PATH | --no-backup]

Every change runs in one transaction. ``downgrade``, ``repair`` and ``restore``
write a backup first (beside a SQLite file, or in the current directory for
PostgreSQL, unless ``--backup`` names it); ``downgrade`` and ``restore`` ask
before they start unless ``--yes``. Migrations wait at most
``CREDITBOOK_MIGRATION_LOCK_TIMEOUT_SECONDS`` for a lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Engine

from creditbook.adapters.db import backup as backups
from creditbook.adapters.db import migrate
from creditbook.adapters.db.schema_errors import SchemaDrift
from creditbook.config import MigrationSettings
from creditbook.domain.errors import InvalidInput
from creditbook.entrypoints.cli.app import State, app, console, err_console

db_app = typer.Typer(help="Database schema: upgrades, checks, backups.", no_args_is_help=True)
app.add_typer(db_app, name="db")

Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
BackupPath = Annotated[
    Path | None,
    typer.Option("--backup", help="Write the backup taken first here (a new file)."),
]
NoBackup = Annotated[
    bool, typer.Option("--no-backup", help="Take no backup first (you have your own).")
]


def _lock_timeout() -> float:
    return MigrationSettings().migration_lock_timeout_seconds


def _engine() -> Engine:
    from creditbook.adapters.db.engine import make_engine

    # SQLite: waiting for another process's write lock is bounded like a lock on PostgreSQL.
    return make_engine(State.database_url, busy_timeout=_lock_timeout())


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _titles() -> dict[str, str]:
    return {r.revision: r.title.replace("``", "`") for r in migrate.history()}


def _backup_first(engine: Engine, path: Path | None, revision: str | None) -> None:
    target = path or backups.default_path(engine, revision)
    made = backups.backup(engine, target)
    console.print(
        f"backup written: [bold]{made.path}[/] (revision {made.revision}, {made.size:,} bytes)"
    )


def _print_run(run: migrate.MigrationRun, verb: str) -> None:
    if not run.steps:
        console.print(f"database at revision [bold]{run.end}[/]: nothing to do")
        return
    console.print(f"{verb} {run.start or 'an empty database'} -> [bold]{run.end or 'base'}[/]")
    titles = _titles()
    for step in run.steps:
        console.print(f"  {step:<26} {titles.get(step, '')}")
    if run.vacuum is not None:
        if run.vacuum.skipped:
            console.print(f"VACUUM skipped ({run.vacuum.skipped}): the free pages stay for reuse")
        else:
            console.print(
                f"VACUUM: {run.vacuum.before / 2**20:,.1f} MiB -> "
                f"{run.vacuum.after / 2**20:,.1f} MiB"
            )


@db_app.command("current")
def current() -> None:
    """The database's revision and where it stands against this version's head."""
    status = migrate.revision_status(_engine())
    problem = status.problem()
    where = {"current": "(head)", "behind": "(behind)", "ahead": "(unknown to this version)"}
    console.print(f"{status.current or 'none'} {where.get(status.state, '')}".rstrip())
    if problem:
        console.print(problem)


@db_app.command("history")
def history() -> None:
    """Every migration, oldest first; the database's own is marked."""
    current_revision = migrate.revision_status(_engine()).current
    table = Table("", "revision", "what it does", title="Migrations")
    head = migrate.head_revision()
    for r in migrate.history():
        mark = ">" if r.revision == current_revision else ""
        name = r.revision + (" (head)" if r.revision == head else "")
        table.add_row(mark, name, r.title.replace("``", "`"))
    console.print(table)


@db_app.command("check")
def check(
    revision: Annotated[
        str, typer.Option("--revision", help="Compare with this revision's schema.")
    ] = "head",
) -> None:
    """Compare the live schema with what the migrations build; non-zero exit on any difference."""
    from creditbook.adapters.db import schema_check

    engine = _engine()
    target = migrate.head_revision() if revision == "head" else revision
    if target not in migrate.known_revisions():
        raise InvalidInput(
            f"unknown revision {revision!r}; this version knows "
            f"{', '.join(migrate.known_revisions())}",
            revision=revision,
        )
    actual, differences = schema_check.check(engine, target)
    console.print(f"database {_where(engine)}: revision {actual.revision or 'none'}")
    if not differences:
        console.print(f"[green]identical[/] to the schema of {target}: {actual.summary()}")
        return
    for difference in differences:
        console.print(f"  {difference}")
    status = migrate.revision_status(engine)
    hint = f"; {status.problem()}" if status.state != "current" and target == status.head else ""
    raise SchemaDrift(
        f"{len(differences)} difference(s) from the schema of {target}{hint}",
        differences=[str(d) for d in differences],
    )


@db_app.command("upgrade")
def upgrade(
    revision: Annotated[str, typer.Argument(help="Up to this revision.")] = "head",
    backup: BackupPath = None,
) -> None:
    """Apply the pending migrations in one transaction (creating the tables of a new database)."""
    engine = _engine()
    if backup is not None:
        _backup_first(engine, backup, migrate.revision_status(engine).current)
    _print_run(migrate.upgrade(engine, revision, lock_timeout=_lock_timeout()), "upgraded")


@db_app.command("downgrade")
def downgrade(
    revision: Annotated[str, typer.Argument(help="Down to this revision (base: all).")],
    yes: Yes = False,
    backup: BackupPath = None,
    no_backup: NoBackup = False,
) -> None:
    """Undo the migrations after REVISION in one transaction, after a backup."""
    engine = _engine()
    status = migrate.revision_status(engine)
    if not status.known:
        raise status.error()
    steps = migrate.downgrade_path(status.current, revision)
    titles = _titles()
    console.print(f"downgrade {_where(engine)} from {status.current} to {revision} undoes:")
    for step in steps:
        console.print(f"  {step:<26} {titles.get(step, '')}")
    _confirm_and_back_up(engine, status.current, yes, backup, no_backup, "Downgrade?")
    run = migrate.downgrade(engine, revision, lock_timeout=_lock_timeout())
    _print_run(run, "downgraded")


@db_app.command("repair")
def repair(backup: BackupPath = None, no_backup: NoBackup = False) -> None:
    """Bring a database stamped at any earlier revision to the head schema, checked."""
    from creditbook.adapters.db import repair as repairs

    engine = _engine()
    status = migrate.revision_status(engine)
    if not status.known:
        raise status.error()
    if not no_backup and status.has_tables:
        _backup_first(engine, backup, status.current)
    report = repairs.repair(engine, lock_timeout=_lock_timeout())
    for gap in report.rerun:
        console.print(f"ran {gap.revision}, whose tables were missing: {', '.join(gap.tables)}")
    titles = _titles()
    if report.steps:
        console.print(f"upgraded {report.start} -> [bold]{migrate.head_revision()}[/]")
        for step in report.steps:
            console.print(f"  {step:<26} {titles.get(step, '')}")
    console.print(f"[green]identical[/] to the schema of {migrate.head_revision()}")


@db_app.command("backup")
def backup(path: Annotated[Path, typer.Argument(help="A new file.")]) -> None:
    """Copy the whole database to PATH while it keeps serving."""
    engine = _engine()
    made = backups.backup(engine, path)
    console.print(
        f"backup of {_where(engine)} written: [bold]{made.path}[/] "
        f"(revision {made.revision}, {made.size:,} bytes)"
    )


@db_app.command("restore")
def restore(
    path: Annotated[Path, typer.Argument(help="A file written by `creditbook db backup`.")],
    yes: Yes = False,
    backup: BackupPath = None,
    no_backup: NoBackup = False,
) -> None:
    """Make the database exactly the backup at PATH (what it holds now is replaced)."""
    engine = _engine()
    found = backups.describe(engine, path) if path.is_file() else None
    if found is None:
        raise InvalidInput(f"no backup at {path}", path=str(path))
    status = migrate.revision_status(engine)
    console.print(
        f"restore {found.path} (revision {found.revision}) over {_where(engine)} "
        f"(revision {status.current or 'none'}): everything written since the backup is lost"
    )
    keep = no_backup or not status.has_tables
    _confirm_and_back_up(engine, status.current, yes, backup, keep, "Restore?")
    restored = backups.restore(engine, path, lock_timeout=_lock_timeout())
    console.print(f"restored: database at revision [bold]{restored.revision}[/]")
    after = migrate.revision_status(engine)
    if after.state != "current":
        console.print(after.problem())


def _confirm_and_back_up(
    engine: Engine,
    revision: str | None,
    yes: bool,
    path: Path | None,
    no_backup: bool,
    question: str,
) -> None:
    if no_backup:
        console.print("no backup first (--no-backup)")
    else:
        target = path or backups.default_path(engine, revision)
        console.print(f"a backup is written first: {target}")
    if not yes and not typer.confirm(question, default=False):
        err_console.print("nothing was changed")
        raise typer.Exit(1)
    if not no_backup:
        _backup_first(engine, target, revision)
