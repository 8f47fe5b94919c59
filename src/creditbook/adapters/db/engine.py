"""Database engines for SQLite (default, one file) and PostgreSQL (psycopg 3).

SQLite runs in WAL mode, and every transaction starts with ``BEGIN
IMMEDIATE`` so a writer takes the database lock before it reads the
balance: two processes can never both read the same credits as free.

Every engine raises ``DatabaseUnavailable`` for a database that cannot serve
(see ``outage.py``): a PostgreSQL that refuses or drops connections, a
SQLite file still locked after ``busy_timeout`` seconds, a pool with no free
connection after its timeout. A PostgreSQL connect gives up after
``connect_timeout`` seconds (libpq's default waits forever).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool, StaticPool

from creditbook.adapters.db.outage import pool_exhausted, unavailable

# The defaults of ``make_engine`` (``creditbook serve`` takes them from its settings).
BUSY_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10


def default_database_url() -> str:
    data_dir = Path(platformdirs.user_data_dir("creditbook"))
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'creditbook.db'}"


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use psycopg 3 for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(
    url: str | None = None,
    *,
    pool_size: int = 10,
    echo: bool = False,
    busy_timeout: float = BUSY_TIMEOUT_SECONDS,
    connect_timeout: int = CONNECT_TIMEOUT_SECONDS,
) -> Engine:
    """An engine for ``url``; ``busy_timeout`` (SQLite) and ``connect_timeout``
    (PostgreSQL, unless the URL sets its own) in seconds."""
    url = normalize_url(url or default_database_url())
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _outages_raised(
            _sqlite_engine(url, echo=echo, pool_size=pool_size, busy_timeout=busy_timeout)
        )
    if "connect_timeout" not in parsed.query:
        # In the URL, not connect_args: the group committer's async connection
        # (loop_batch.connect) is opened from the same URL.
        parsed = parsed.update_query_dict({"connect_timeout": str(connect_timeout)})
    return _outages_raised(
        _ping_when_idle(
            create_engine(
                parsed,
                echo=echo,
                pool_size=pool_size,
                max_overflow=pool_size,
                poolclass=_OutageQueuePool,
                future=True,
            )
        )
    )


class _OutageQueuePool(QueuePool):
    """A ``QueuePool`` whose timeout (every connection in use for ``timeout`` seconds)
    is a ``DatabaseUnavailable``, like a database that does not answer."""

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except PoolTimeout as exc:
            raise pool_exhausted(exc) from exc


def _outages_raised(engine: Engine) -> Engine:
    """Every error of ``engine`` that is an outage is raised as ``DatabaseUnavailable``."""

    @event.listens_for(engine, "handle_error")
    def _on_error(ctx: ExceptionContext) -> BaseException | None:
        if ctx.is_pre_ping:
            return None  # the pool decides to reconnect from the driver's own error
        found = unavailable(ctx.original_exception, connecting=ctx.connection is None)
        if found is not None and ctx.connection is not None and not ctx.is_disconnect:
            # A connection that answered "shutting down" is no better than a dead one.
            ctx.is_disconnect = found.connection_lost
        return found

    return engine


# A pooled connection is pinged before use only when it sat idle this long (a
# duration in seconds). SQLAlchemy's ``pool_pre_ping`` pings at every checkout: one
# more round trip for every transaction, for a connection that was in use a moment
# ago. A server restart or an idle-connection timeout hits connections that waited;
# one that fails in the window is still invalidated and replaced at its first error.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> Engine:
    """Pessimistic disconnect handling, as SQLAlchemy documents it, for idle connections."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # The pool drops this connection and checks out a new one.
            raise DisconnectionError("pooled connection is gone") from exc

    return engine


def _sqlite_engine(
    url: str, *, echo: bool, pool_size: int = 10, busy_timeout: float = BUSY_TIMEOUT_SECONDS
) -> Engine:
    parsed = make_url(url)
    memory = parsed.database in (None, "", ":memory:")
    if not memory and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"timeout": busy_timeout, "isolation_level": None, "check_same_thread": False}
    if memory:
        # A memory database lives in its one connection: share it across threads.
        return _sqlite_events(
            create_engine(url, echo=echo, connect_args=connect_args, poolclass=StaticPool),
            memory=True,
            busy_timeout=busy_timeout,
        )
    # A file database keeps its connections: opening one and running the PRAGMAs
    # cost more than a whole small transaction. No overflow limit, so a burst of
    # threads never waits on the pool (as with one connection per transaction);
    # SQLite's own lock, taken by BEGIN IMMEDIATE, still serializes the writers.
    return _sqlite_events(
        create_engine(
            url,
            echo=echo,
            connect_args=connect_args,
            poolclass=QueuePool,
            pool_size=pool_size,
            max_overflow=-1,
        ),
        memory=False,
        busy_timeout=busy_timeout,
    )


def _sqlite_events(
    engine: Engine, *, memory: bool, busy_timeout: float = BUSY_TIMEOUT_SECONDS
) -> Engine:

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed charge survives a power loss, not only a crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={round(busy_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
