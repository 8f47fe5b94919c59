"""A database that cannot serve, recognised in one place and raised as ``DatabaseUnavailable``.

The drivers say "the database is not there" in many ways: psycopg's
``OperationalError`` without an SQLSTATE (connection refused, "server closed
the connection unexpectedly", a connect timeout), SQLSTATE class 08
(connection exception), 57P01-57P03 (shutdown, crash shutdown, "the database
system is starting up" or "in recovery mode"), 53300 (too many connections);
SQLite's ``SQLITE_BUSY`` ("database is locked") once its busy timeout ran out;
SQLAlchemy's pool timeout. ``unavailable()`` turns each into a
``DatabaseUnavailable`` and answers None for everything else (a constraint
violation, a deadlock, a syntax error are not outages).

Three places raise it, so nothing above ``adapters/db`` ever looks at a
driver's exception: the engine's ``handle_error`` hook (every statement,
connect, commit and rollback made through SQLAlchemy, see ``engine.py``), the
unit of work (the statements it sends through psycopg directly, and its
COMMIT, whose loss makes the outcome unknown), and the group committer's
loop batch (``loop_batch.py``, psycopg's async connection).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from creditbook.domain.errors import DatabaseUnavailable

# SQLSTATEs of a server that is going away, coming back, or full.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def unavailable(
    exc: BaseException, *, connecting: bool = False, committing: bool = False
) -> DatabaseUnavailable | None:
    """``exc`` as a ``DatabaseUnavailable``, or None when it is not an outage.

    ``connecting``: it was raised while opening a connection (nothing was sent);
    ``committing``: while a COMMIT was on its way (a lost connection then leaves
    the outcome unknown).
    """
    if isinstance(exc, DatabaseUnavailable):
        return exc.committing() if committing else exc
    if isinstance(exc, PoolTimeout):
        return pool_exhausted(exc)
    driver: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    if isinstance(driver, sqlite3.OperationalError):
        if _sqlite_busy(driver):
            # A COMMIT refused as busy leaves the transaction open, then rolled back:
            # nothing was applied, so the outcome is always known here.
            return DatabaseUnavailable(str(driver))
        return None
    if not _psycopg_outage(driver):
        return None
    found = DatabaseUnavailable(_first_line(driver), connection_lost=not connecting)
    return found.committing() if committing else found


def pool_exhausted(exc: PoolTimeout) -> DatabaseUnavailable:
    """Every pooled connection stayed in use past the pool's timeout."""
    return DatabaseUnavailable(f"no pooled connection was free in time: {exc}")


def _sqlite_busy(exc: sqlite3.OperationalError) -> bool:
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str):
        return name.startswith("SQLITE_BUSY")
    return "database is locked" in str(exc)


def _psycopg_outage(exc: BaseException) -> bool:
    # psycopg is imported by the engine of a PostgreSQL URL; when it never was,
    # no error can come from it (and a SQLite-only process does not pay its import).
    psycopg: Any = sys.modules.get("psycopg")
    if psycopg is None or not isinstance(exc, psycopg.OperationalError):
        return False
    if isinstance(exc, psycopg.errors.PipelineAborted):
        return False  # a statement before it failed: that one is the error
    state: str | None = exc.sqlstate
    return state is None or state.startswith("08") or state in _UNAVAILABLE_STATES


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def seen(conn: Connection, exc: BaseException) -> DatabaseUnavailable | None:
    """``unavailable(exc)``, after invalidating ``conn`` when it broke under a driver call
    SQLAlchemy did not make (so neither the pool nor a holder uses it again)."""
    found = unavailable(exc)
    if found is not None and found.connection_lost and not conn.invalidated:
        conn.invalidate(exc if isinstance(exc, Exception) else None)
    return found


@contextmanager
def committing(conn: Connection) -> Iterator[None]:
    """Around a COMMIT: a connection lost inside raises ``DatabaseUnavailable`` with
    the outcome unknown (the COMMIT may have been applied before the answer was lost)."""
    try:
        yield
    except Exception as exc:
        found = seen(conn, exc)
        if found is None:
            raise
        found = found.committing()
        if found is exc:
            raise
        raise found from exc


def abandon(conn: Connection, *, held: bool) -> None:
    """Give up ``conn`` after its BEGIN failed: back to the pool, or left for its holder
    to replace (invalidated) when it is kept across transactions."""
    try:
        if held:
            conn.invalidate()
        else:
            conn.close()
    except Exception:
        conn.invalidate()
