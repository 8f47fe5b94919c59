"""``creditbook db repair``: bring a database stamped at any earlier revision to the head schema.

Migrations 0002 to 0006 were first committed empty and filled in later, in
place. A database stamped while they were empty carries their revision but
not their tables (``purchases``, the enrichment tables, ...), so the next
migration that touches one of them fails. Which tables each migration creates
is learnt by running the migrations on a scratch database in memory; a
migration at or below the stamp whose tables are all missing never ran, and
is run now, through Alembic as any upgrade (the stamp is moved to the
revision before it, the migration applied, the stamp put back). Then the
database is upgraded to the head, where ``0014_repair_history`` undoes what
the first version of 0008 did (``grants`` with ``fillfactor = 80``), and the
result is compared with the head schema (``schema_check``): any difference
rolls the whole repair back, so a database is either repaired and identical
to a fresh one, or left as it was.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, inspect

from creditbook.adapters.db import migrate, schema_check
from creditbook.adapters.db.schema_errors import SchemaDrift


@dataclass(frozen=True)
class Gap:
    """A migration at or below the stamp whose tables are missing (all, or ``partial``)."""

    revision: str
    tables: tuple[str, ...]
    partial: bool = False


@dataclass
class RepairReport:
    start: str | None
    rerun: list[Gap] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    vacuum: migrate.Vacuum | None = None


@functools.cache
def tables_created() -> dict[str, tuple[str, ...]]:
    """The tables each migration creates, learnt from a scratch database in memory."""
    from creditbook.adapters.db.engine import make_engine

    created: dict[str, tuple[str, ...]] = {}
    scratch = make_engine("sqlite://")
    try:
        with scratch.begin() as conn:
            before: set[str] = set()
            for revision in migrate.known_revisions():
                migrate.upgrade_on(conn, revision)
                now = set(inspect(conn).get_table_names()) - {migrate.VERSION_TABLE}
                created[revision] = tuple(sorted(now - before))
                before = now
    finally:
        scratch.dispose()
    return created


def missing_steps(conn: Connection, stamp: str) -> list[Gap]:
    """The migrations up to ``stamp`` whose tables the database lacks, oldest first."""
    known = migrate.known_revisions()
    if stamp not in known:
        return []
    present = set(inspect(conn).get_table_names())
    gaps = []
    for revision in known[: known.index(stamp) + 1]:
        tables = tables_created()[revision]
        missing = tuple(t for t in tables if t not in present)
        if missing:
            gaps.append(Gap(revision, missing, partial=len(missing) < len(tables)))
    return gaps


def repair(
    engine: Engine, *, lock_timeout: float | None = migrate.DEFAULT_LOCK_TIMEOUT_SECONDS
) -> RepairReport:
    """Run the missing migrations, upgrade to the head, and prove the result is the head schema.

    ``SchemaDrift`` (nothing changed) when a migration's tables are only partly there,
    or when the repaired schema still differs from the head's.
    """
    status = migrate.revision_status(engine)
    if not status.known or status.state == "unversioned":
        raise status.error()
    expected = schema_check.expected_schema(engine, "head")
    report = RepairReport(status.current)

    def work(conn: Connection) -> None:
        gaps = missing_steps(conn, status.current) if status.current else []
        partial = [gap for gap in gaps if gap.partial]
        if partial:
            lacking = "; ".join(f"{g.revision} ({', '.join(g.tables)})" for g in partial)
            raise SchemaDrift(
                f"cannot repair: some tables of {lacking} are missing while the others of the "
                "same migration exist. Restore a backup, or create them as that migration "
                "does; nothing was changed",
            )
        for gap in gaps:
            down = next(r.down_revision for r in migrate.history() if r.revision == gap.revision)
            migrate.stamp_on(conn, down or "base")
            migrate.upgrade_on(conn, gap.revision, lock_timeout=lock_timeout)
            report.rerun.append(gap)
        if gaps and status.current is not None:
            migrate.stamp_on(conn, status.current)
        report.steps = migrate.upgrade_on(conn, "head", lock_timeout=lock_timeout)
        differences = schema_check.differences(conn, expected, schema_check.snapshot(conn))
        if differences:
            raise SchemaDrift(
                f"the repaired schema still differs from the head's in {len(differences)} "
                "way(s); nothing was changed: " + "; ".join(str(d) for d in differences),
                differences=[str(d) for d in differences],
            )

    migrate.run_in_transaction(engine, work)
    if report.rerun or report.steps:
        report.vacuum = migrate.vacuum_if_worth_it(engine)
    return report
