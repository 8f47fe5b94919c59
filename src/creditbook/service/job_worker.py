"""The background runner of enrichment jobs in a server process (``creditbook serve``).

``JobWorker`` is a thread with its own event loop: the API's handlers are
synchronous and uvicorn's loop must not wait on the database. Each poll it
pauses the jobs whose runner's lease ran out (``recover_interrupted``), runs
the queued jobs of every process's making, and resumes the jobs of teams that
opted in to ``auto_resume`` once credits are back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from creditbook.service.enrichment import EnrichmentService
from creditbook.service.job_leases import JobStateConflict


class JobWorker:
    """Runs jobs in a background thread with its own event loop (for the HTTP service).

    ``start()`` marks jobs a dead process left running as ``paused``
    (``interrupted``), then runs queued jobs. Every poll it does that again
    for jobs whose runner's lease ran out since (so an orphan is paused within
    the lease plus one poll), runs queued jobs and, for teams that opted in,
    resumes jobs paused for credits that can go on.
    """

    def __init__(self, service: EnrichmentService, *, poll_seconds: float | None = None) -> None:
        self.service = service
        self.poll_seconds = (
            service.options.auto_resume_poll_seconds if poll_seconds is None else poll_seconds
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running: dict[str, asyncio.Future[Any]] = {}
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()

    def start(self) -> JobWorker:
        if self._thread is not None:
            return self
        self.service.recover_interrupted()
        self._thread = threading.Thread(target=self._main, name="creditbook-jobs", daemon=True)
        self._thread.start()
        self._ready.wait(5)
        return self

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            loop.run_until_complete(self._poll())
        finally:
            loop.close()

    async def _poll(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(self.service.recover_interrupted)
                await asyncio.to_thread(self.service.auto_resume_ready)
                for team_id, job_id in await asyncio.to_thread(self.service.queued_jobs):
                    self._start_job(team_id, job_id)
            except Exception:  # a database hiccup must not kill the worker
                await asyncio.sleep(0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.poll_seconds)
        pending = [f for f in self._running.values() if not f.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def _start_job(self, team_id: str, job_id: str) -> None:
        current = self._running.get(job_id)
        if current is not None and not current.done():
            return
        task = asyncio.ensure_future(self._run(team_id, job_id))
        self._running[job_id] = task

    async def _run(self, team_id: str, job_id: str) -> None:
        # JobStateConflict: another worker took it, or it was cancelled meanwhile.
        with contextlib.suppress(JobStateConflict):
            await self.service.run(team_id, job_id)

    def submit(self, team_id: str, job_id: str) -> None:
        """Start a queued job now (thread-safe)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the job worker is not started")
        loop.call_soon_threadsafe(self._start_job, team_id, job_id)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no job runs (tests)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(f.done() for f in list(self._running.values())):
                return True
            time.sleep(0.02)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        self._loop = None
