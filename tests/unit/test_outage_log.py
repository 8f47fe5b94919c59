"""A database outage is summed up in the log, not written once per refused request."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from creditbook.entrypoints.api.logs import (
    JsonFormatter,
    OutageLogSummary,
    install_request_id_factory,
    request_id_var,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    """The JSON lines a handler with the summary filter writes."""

    def __init__(self, summary: OutageLogSummary) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.addFilter(summary)
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lines(clock: Clock) -> Iterator[list[dict[str, object]]]:
    install_request_id_factory()
    handler = Lines(OutageLogSummary(interval_seconds=10.0, clock=clock))
    root = logging.getLogger("creditbook")
    saved = (root.handlers[:], root.level, root.propagate)
    root.handlers, root.propagate = [handler], False
    root.setLevel(logging.INFO)
    yield handler.lines
    root.handlers, root.level, root.propagate = saved[0], saved[1], saved[2]


def _refused(request_id: str) -> None:
    token = request_id_var.set(request_id)
    try:
        logging.getLogger("creditbook.api").warning(
            "request", extra={"status": 503, "code": "database_unavailable", "outage": True}
        )
    finally:
        request_id_var.reset(token)


def test_only_the_first_refused_request_of_an_interval_is_logged(
    lines: list[dict[str, object]], clock: Clock
) -> None:
    for i in range(500):
        clock.now += 0.01
        _refused(f"req_{i}")
    assert [line["request_id"] for line in lines] == ["req_0"]
    assert lines[0]["code"] == "database_unavailable" and "exception" not in lines[0]


def test_the_interval_closes_with_one_summary_line_naming_no_request(
    lines: list[dict[str, object]], clock: Clock
) -> None:
    for i in range(40):
        _refused(f"req_{i}")
    clock.now += 10.5
    _refused("req_next")  # the next interval: the summary first, then its first line
    assert [line["message"] for line in lines] == [
        "request",
        "40 requests refused: database unavailable",
        "request",
    ]
    summary = lines[1]
    assert summary["logger"] == "creditbook.outage" and summary["level"] == "warning"
    assert summary["request_id"] == "-"
    assert (summary["refused"], summary["not_logged"]) == (40, 39)
    assert lines[2]["request_id"] == "req_next"


def test_the_first_line_after_the_outage_brings_the_last_summary(
    lines: list[dict[str, object]], clock: Clock
) -> None:
    for i in range(3):
        _refused(f"req_{i}")
    clock.now += 11
    logging.getLogger("creditbook.api").info("request", extra={"status": 201})
    assert [line["message"] for line in lines] == [
        "request",
        "3 requests refused: database unavailable",
        "request",
    ]
    assert lines[2]["status"] == 201


def test_other_lines_pass_untouched_and_a_lone_refusal_needs_no_summary(
    lines: list[dict[str, object]], clock: Clock
) -> None:
    _refused("req_alone")
    for i in range(5):
        logging.getLogger("creditbook.api").info("request", extra={"status": 200, "n": i})
    clock.now += 60
    logging.getLogger("creditbook.api").info("request", extra={"status": 200, "n": 5})
    assert [line.get("n") for line in lines] == [None, 0, 1, 2, 3, 4, 5]
    assert not any("refused" in str(line["message"]) for line in lines)
