"""Who runs an enrichment job: its lease, the refusals it causes, and keeping it alive.

A running job belongs to one runner (a ``run_...`` token in ``runner``) for as
long as the runner's lease lasts: ``heartbeat_at`` plus the lease length
(``EnrichmentOptions.stale_after``, from ``CREDITBOOK_JOB_ORPHAN_SECONDS``,
60 s by default). The runner renews the heartbeat every third of the lease,
also while its provider calls are in flight, so a live runner never looks
dead; a runner killed with the process stops renewing, and once its lease has
run out the job is an orphan: a resume takes it over, and the server's
periodic check (``EnrichmentService.recover_interrupted``) pauses it with the
reason ``interrupted``. Taking, renewing and ending a lease are
compare-and-set statements (``adapters/db/job_leases.py``): of two processes
that try to take the same job, one does.

A caller who asks for a job that is still owned gets ``JobStillOwned``
(``job_still_owned``, 409) with the seconds until the lease runs out in
``retry_after``: the HTTP API sends them as ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import ClassVar

from creditbook.domain.errors import Conflict

log = logging.getLogger("creditbook.enrichment")


class JobStateConflict(Conflict):
    """The job is not in a state that allows what was asked (resume a completed job...)."""

    code: ClassVar[str] = "job_state_conflict"
    title: ClassVar[str] = "Enrichment job state does not allow this"


class JobStillOwned(JobStateConflict):
    """The job is running and its runner's lease has not run out: it may be alive."""

    code: ClassVar[str] = "job_still_owned"
    title: ClassVar[str] = "Enrichment job still owned by its runner"


def still_owned(
    job_id: str, heartbeat_at: datetime | None, now: datetime, lease: timedelta
) -> JobStillOwned:
    """The refusal for a job whose runner renewed its lease at ``heartbeat_at``."""
    beat = heartbeat_at or now
    wait = max(1, math.ceil((beat + lease - now).total_seconds()))
    age = max(0, math.floor((now - beat).total_seconds()))
    lease_seconds = math.ceil(lease.total_seconds())
    return JobStillOwned(
        f"job {job_id} is running: its runner renewed its lease {age} s ago. If that "
        f"process is gone, the job can be taken over in {wait} s (a lease lasts "
        f"{lease_seconds} s, CREDITBOOK_JOB_ORPHAN_SECONDS); try again then",
        job_id=job_id,
        status="running",
        retry_after=wait,
        lease_seconds=lease_seconds,
    )


def renew_every(lease: timedelta) -> float:
    """How often a runner renews its lease: three chances before it runs out."""
    return max(lease.total_seconds() / 3, 0.05)


async def keep_lease(renew: Callable[[], bool], every: float) -> None:
    """Call ``renew`` (in a thread) every ``every`` seconds until it says the lease is lost
    or the task is cancelled. A failed renewal (the database is away) is tried again at
    the next tick: the runner's own steps renew the lease too."""
    while True:
        await asyncio.sleep(every)
        kept = True
        with contextlib.suppress(Exception):
            kept = await asyncio.to_thread(renew)
        if not kept:
            log.warning("an enrichment runner lost its lease; it stops at its next step")
            return
