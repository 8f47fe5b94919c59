"""JSON logs with the request id on every line, and outages summed up rather than repeated.

The request id lives in a context variable (``service/request_context.py``)
set by the request middleware; Starlette copies the context into the thread
pool that runs the endpoints, so library code logging from inside a request
carries the same id.

A database outage refuses every request until it ends: ``OutageLogSummary``
lets the first refused request of each interval be logged, counts the
others, and logs "N requests refused: database unavailable" once the
interval is over. ``log_config`` (what ``creditbook serve`` uses) installs it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from creditbook.service.request_context import NO_REQUEST, request_id_var

__all__ = [
    "JsonFormatter",
    "OutageLogSummary",
    "install_request_id_factory",
    "log_config",
    "request_id_var",
]

SUMMARY_LOGGER = "creditbook.outage"

_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "request_id",
    "outage_summary",
}
_installed = False


def install_request_id_factory() -> None:
    """Stamp every log record, of any logger, with the current request id when it is made."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id_var.get()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in data:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class OutageLogSummary(logging.Filter):
    """A handler's filter: at most one line per ``interval`` for requests refused by an outage.

    Records marked ``outage`` (the request lines of ``database_unavailable``
    answers) are rate-limited: the first of an interval passes, the others are
    counted and dropped. The first record of any kind after the interval ends
    is preceded by the summary, "N requests refused: database unavailable"
    (N counts the whole interval), logged on ``creditbook.outage`` with no
    request id. Other records pass untouched.
    """

    def __init__(
        self, interval_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval = interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None  # start of the current interval
        self._refused = 0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "outage_summary", False):
            return True
        outage = bool(getattr(record, "outage", False))
        now = self._clock()
        summary: tuple[int, int, float] | None = None
        with self._lock:
            if self._since is not None and now - self._since >= self.interval:
                if self._dropped:
                    summary = (self._refused, self._dropped, now - self._since)
                self._since, self._refused, self._dropped = None, 0, 0
            passes = True
            if outage:
                self._refused += 1
                if self._since is None:
                    self._since = now
                else:
                    self._dropped += 1
                    passes = False
        if summary is not None:  # outside the lock: it comes back through this filter
            self._log_summary(*summary)
        return passes

    @staticmethod
    def _log_summary(refused: int, dropped: int, seconds: float) -> None:
        logger = logging.getLogger(SUMMARY_LOGGER)
        record = logger.makeRecord(
            logger.name,
            logging.WARNING,
            __file__,
            0,
            "%d requests refused: database unavailable",
            (refused,),
            None,
            extra={
                "outage_summary": True,
                "refused": refused,
                "not_logged": dropped,
                "seconds": round(seconds, 3),
            },
        )
        record.request_id = NO_REQUEST  # not the request whose line came next
        logger.handle(record)


def log_config(level: str = "INFO", outage_interval_seconds: float = 10.0) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` (also uvicorn's ``log_config``): JSON to stderr,
    refused requests of a database outage summed up every ``outage_interval_seconds``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "filters": {
            "outages": {
                "()": f"{__name__}.OutageLogSummary",
                "interval_seconds": outage_interval_seconds,
            }
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["outages"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "creditbook": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            # psycopg warns of the errors it ignores while one is already being raised
            # (a pipeline ended on a lost connection): that one is answered and logged.
            "psycopg": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
        },
    }
