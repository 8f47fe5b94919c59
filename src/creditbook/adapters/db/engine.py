"""Database engines for SQLite (default, one file) and PostgreSQL (psycopg 3).

SQLite runs in WAL mode, and every transaction starts with ``BEGIN
IMMEDIATE`` so a writer takes the database lock before it reads the
balance: two processes can never both read the same credits as free.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import QueuePool, StaticPool


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


def make_engine(url: str | None = None, *, pool_size: int = 10, echo: bool = False) -> Engine:
    url = normalize_url(url or default_database_url())
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo=echo, pool_size=pool_size)
    return _ping_when_idle(
        create_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size, future=True)
    )


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


def _sqlite_engine(url: str, *, echo: bool, pool_size: int = 10) -> Engine:
    parsed = make_url(url)
    memory = parsed.database in (None, "", ":memory:")
    if not memory and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"timeout": 30, "isolation_level": None, "check_same_thread": False}
    if memory:
        # A memory database lives in its one connection: share it across threads.
        return _sqlite_events(
            create_engine(url, echo=echo, connect_args=connect_args, poolclass=StaticPool),
            memory=True,
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
    )


def _sqlite_events(engine: Engine, *, memory: bool) -> Engine:

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed charge survives a power loss, not only a crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
