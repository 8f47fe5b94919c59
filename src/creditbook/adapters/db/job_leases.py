"""The SQL of enrichment job leases: every change of a job's runner is a compare-and-set.

A running job's lease is its ``runner`` token and its ``heartbeat_at``: the
runner owns the job until ``heartbeat_at + lease``. Each statement here is one
``UPDATE ... WHERE`` whose condition is the expected state, and reports whether
it matched a row, so two processes that act on the same job at the same moment
cannot both succeed: the database evaluates the condition against the row as
it is when the update runs (PostgreSQL re-checks it after waiting for a
concurrent writer; SQLite has one writer at a time).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, or_, select, update

from creditbook.adapters.db.tables_enrichment import enrichment_jobs

_j = enrichment_jobs


def _expired(before: datetime) -> ColumnElement[bool]:
    return or_(_j.c.heartbeat_at.is_(None), _j.c.heartbeat_at <= before)


def _job(team_id: str, job_id: str) -> ColumnElement[bool]:
    return and_(_j.c.team_id == team_id, _j.c.id == job_id)


def _set(conn: Connection, where: ColumnElement[bool], values: Mapping[str, Any]) -> bool:
    return conn.execute(update(_j).where(where).values(**values)).rowcount == 1


def take_lease(
    conn: Connection,
    team_id: str,
    job_id: str,
    *,
    token: str,
    now: datetime,
    expired_before: datetime,
    values: Mapping[str, Any],
) -> bool:
    """Make ``token`` the job's runner if the job is queued, or running on a lease that
    ended at ``expired_before`` or earlier; False if someone else holds it."""
    runnable = or_(
        _j.c.status == "queued", and_(_j.c.status == "running", _expired(expired_before))
    )
    return _set(
        conn,
        and_(_job(team_id, job_id), runnable),
        {**values, "status": "running", "runner": token, "heartbeat_at": now},
    )


def renew_lease(conn: Connection, team_id: str, job_id: str, *, token: str, now: datetime) -> bool:
    """Move the heartbeat of a job ``token`` still runs; False once it lost the job."""
    owned = and_(_job(team_id, job_id), _j.c.status == "running", _j.c.runner == token)
    return _set(conn, owned, {"heartbeat_at": now})


def end_expired_lease(
    conn: Connection,
    team_id: str,
    job_id: str,
    *,
    expired_before: datetime,
    values: Mapping[str, Any],
) -> bool:
    """Take a running job whose lease ended at ``expired_before`` or earlier from its
    runner, writing ``values`` (a pause, or back to the queue); False if it is alive."""
    orphaned = and_(_job(team_id, job_id), _j.c.status == "running", _expired(expired_before))
    return _set(conn, orphaned, {**values, "runner": None})


def orphaned_jobs(conn: Connection, *, expired_before: datetime) -> list[tuple[str, str]]:
    """(team, job) of every running job whose lease ended at ``expired_before`` or earlier."""
    rows = conn.execute(
        select(_j.c.team_id, _j.c.id)
        .where(_j.c.status == "running", _expired(expired_before))
        .order_by(_j.c.team_id, _j.c.id)
    )
    return [(r.team_id, r.id) for r in rows]
