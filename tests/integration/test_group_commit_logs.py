"""Every log line about a batch names the requests of that batch, never another request's.

The committer (a task of the event loop, or its thread) has no request id of
its own: its lines carry ``request_id`` "-" and the batch's ids in
``request_ids``. A batch failure is injected by making the batch's read
raise once; the commands then run again, as they do after any such failure.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

import creditbook
from creditbook.adapters.db import loop_batch
from creditbook.adapters.db.repository import SqlUnitOfWork
from creditbook.entrypoints.api.logs import install_request_id_factory, request_id_var

FEATURE, OUTCOME = "email_finder", "deliverable"  # 5 credits


def _team(book: creditbook.Creditbook) -> str:
    team = book.create_team("Logs").id
    book.grant(team, 100, category="purchased", source="purchase")
    return team


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


@pytest.mark.postgres
def test_a_loop_batch_that_failed_is_logged_with_its_own_requests_not_the_first_ones(
    pg_session_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    install_request_id_factory()
    book = creditbook.open(pg_session_url)
    book.enable_group_commit(on_loop=True)
    team = _team(book)
    real_read = loop_batch.read_batch
    failures: list[int] = []

    async def read_failing_once(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise RuntimeError("injected")
        return await real_read(*args, **kwargs)

    async def request(request_id: str, key: str) -> object:
        request_id_var.set(request_id)  # what the HTTP middleware does, in this task only
        return await book.charge_async(team, FEATURE, outcome=OUTCOME, idempotency_key=key)

    async def scenario() -> None:
        await asyncio.create_task(request("req_first", "k0"))  # starts the committer task
        monkeypatch.setattr(loop_batch, "read_batch", read_failing_once)
        batch = [asyncio.create_task(request(f"req_{i}", f"k{i}")) for i in (1, 2, 3)]
        await asyncio.gather(*batch)

    try:
        with caplog.at_level(logging.DEBUG, logger="creditbook"):
            asyncio.run(scenario())
        (line,) = _lines(caplog, "failed on the loop")
        assert vars(line)["request_id"] == "-"  # not "req_first", whose task started it
        assert sorted(vars(line)["request_ids"]) == ["req_1", "req_2", "req_3"]
        assert "RuntimeError: injected" in line.getMessage() and line.exc_info is None
        assert not [r for r in caplog.records if vars(r).get("request_id") == "req_first"]
        assert book.balance(team).available == 100 - 4 * 5  # the thread ran the batch
    finally:
        book.disable_group_commit()
        assert book.engine is not None
        book.engine.dispose()


def test_a_thread_batch_names_its_requests_in_its_failure_and_its_after_commit_lines(
    book: creditbook.Creditbook, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    install_request_id_factory()
    team = _team(book)
    group = book.enable_group_commit()
    real_read = SqlUnitOfWork.read_batch
    failures: list[int] = []

    def read_failing_once(self: SqlUnitOfWork, *args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise RuntimeError("injected")
        return real_read(self, *args, **kwargs)

    def failing_hook(team_id: str) -> None:
        raise RuntimeError("hook failed")

    def request(request_id: str) -> None:
        request_id_var.set(request_id)
        book.charge(team, FEATURE, outcome=OUTCOME)

    monkeypatch.setattr(SqlUnitOfWork, "read_batch", read_failing_once)
    book.after_commit_hooks.append(failing_hook)
    try:
        with caplog.at_level(logging.DEBUG, logger="creditbook"), group.paused():
            threads = [threading.Thread(target=request, args=(f"req_{i}",)) for i in range(3)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while group.queued() < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
        for t in threads:
            t.join(30)
    finally:
        book.after_commit_hooks.remove(failing_hook)
        book.disable_group_commit()
    (failed,) = _lines(caplog, "running its commands alone")
    assert "RuntimeError: injected" in failed.getMessage() and failed.exc_info is None
    assert vars(failed)["request_id"] == "-"
    assert sorted(vars(failed)["request_ids"]) == ["req_0", "req_1", "req_2"]
    hooks = _lines(caplog, "after-commit hook failed")
    assert hooks and all(vars(r)["request_id"] == "-" for r in hooks)
    assert sorted(i for r in hooks for i in vars(r)["request_ids"]) == ["req_0", "req_1", "req_2"]
    assert book.balance(team).available == 100 - 3 * 5
