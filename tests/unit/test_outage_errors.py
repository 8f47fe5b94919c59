"""Which driver errors are a database outage, and whether a request may have committed."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from psycopg import errors as pg_errors
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from creditbook.adapters.db.engine import _OutageQueuePool
from creditbook.adapters.db.outage import unavailable
from creditbook.domain.errors import CreditbookError, DatabaseUnavailable


def _wrapped(driver_error: Exception) -> OperationalError:
    """As SQLAlchemy hands a driver's error on."""
    return OperationalError("SELECT 1", {}, driver_error)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("connection failed: Connection refused"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        pg_errors.ConnectionTimeout("connection timeout expired"),
        pg_errors.lookup("57P03")("the database system is starting up"),
        pg_errors.lookup("57P03")("the database system is in recovery mode"),
        pg_errors.AdminShutdown("terminating connection due to administrator command"),
        pg_errors.CrashShutdown("terminating connection because of crash of another process"),
        pg_errors.TooManyConnections("sorry, too many clients already"),
        pg_errors.lookup("08006")("connection failure"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_postgresql_that_cannot_serve_is_database_unavailable(error: Exception) -> None:
    for raised in (error, _wrapped(error)):
        found = unavailable(raised)
        assert isinstance(found, DatabaseUnavailable)
        assert (found.code, found.status) == ("database_unavailable", 503)
        assert found.outcome == "not_applied"
        assert found.cause == str(error).splitlines()[0]


@pytest.mark.parametrize(
    "error",
    [
        pg_errors.DeadlockDetected("deadlock detected"),
        pg_errors.SerializationFailure("could not serialize access"),
        pg_errors.QueryCanceled("canceling statement due to statement timeout"),
        pg_errors.PipelineAborted("pipeline aborted"),
        pg_errors.UniqueViolation("duplicate key value"),
        pg_errors.UndefinedTable("relation does not exist"),
        sqlite3.OperationalError("no such table: teams"),
        IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
        RuntimeError("a bug"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_error_that_is_not_an_outage_is_left_alone(error: Exception) -> None:
    assert unavailable(error) is None


def test_a_sqlite_file_still_locked_after_its_timeout_is_unavailable_and_never_uncertain() -> None:
    locked = sqlite3.OperationalError("database is locked")
    for committing in (False, True):
        found = unavailable(_wrapped(locked), committing=committing)
        assert isinstance(found, DatabaseUnavailable)
        assert found.outcome == "not_applied"  # a busy COMMIT is refused, not applied
        assert not found.connection_lost


def test_a_connection_lost_while_committing_leaves_the_outcome_unknown() -> None:
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    found = unavailable(lost, committing=True)
    assert found is not None and found.outcome == "unknown" and found.connection_lost
    assert "same idempotency key" in found.message and "may have taken effect" in found.message
    assert found.to_dict()["outcome"] == "unknown"


def test_a_connection_that_never_opened_changed_nothing_even_at_commit_time() -> None:
    refused = psycopg.OperationalError("connection failed: Connection refused")
    found = unavailable(refused, connecting=True)
    assert found is not None and not found.connection_lost
    assert found.committing().outcome == "not_applied"


def test_the_answer_carries_no_driver_text_only_the_log_does() -> None:
    refused = psycopg.OperationalError('connection to server at "10.1.2.3", port 5432 failed')
    found = unavailable(refused)
    assert found is not None
    assert "10.1.2.3" not in found.message and "10.1.2.3" not in str(found.to_dict())
    assert "10.1.2.3" in found.cause
    assert isinstance(found, CreditbookError) and found.exit_code == 9


def test_a_pool_whose_connections_all_stay_in_use_past_its_timeout_is_unavailable() -> None:
    def creator() -> sqlite3.Connection:
        return sqlite3.connect(":memory:", check_same_thread=False)

    pool = _OutageQueuePool(creator, pool_size=1, max_overflow=0, timeout=0.05)
    held = pool.connect()
    with pytest.raises(DatabaseUnavailable) as raised:
        pool.connect()
    assert "no pooled connection was free" in raised.value.cause
    assert isinstance(raised.value.__cause__, PoolTimeout)
    held.close()
    pool.connect().close()  # one is free again
    assert unavailable(PoolTimeout("QueuePool limit reached")) is not None
