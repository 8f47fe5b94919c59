"""The verified-key cache of the API (``deps.Services``): one database check per key at a time.

When a busy key's entry expires, every request in flight with it misses at once;
each used to run its own check on the thread pool, a latency spike every
``KEY_CACHE_SECONDS``. They now share the check in flight, and a revocation that
lands during a check keeps its answer out of the cache.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, cast

import pytest

from creditbook.domain.team import Role
from creditbook.entrypoints.api.deps import Services
from creditbook.service.access import Principal

PRINCIPAL = Principal("team_a", "mem_a", "key_a", Role.ADMIN)


class SlowAccess:
    """Stands in for ``AccessService.verify``: counts its calls, takes a while, can fail."""

    def __init__(self, delay: float = 0.05, fail: bool = False) -> None:
        self.calls = 0
        self.delay = delay
        self.fail = fail
        self.started = threading.Event()
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal | None:
        with self._lock:
            self.calls += 1
        self.started.set()
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("database down")
        return PRINCIPAL if token == "good" else None


def _services(access: SlowAccess) -> Services:
    return Services(
        book=cast(Any, None),
        access=cast(Any, access),
        settings=cast(Any, None),
        limiter=cast(Any, None),
        exempt_keys=frozenset(),
    )


def test_concurrent_misses_of_one_key_share_one_check() -> None:
    access = SlowAccess()
    svc = _services(access)

    async def burst() -> list[Principal | None]:
        return await asyncio.gather(*(svc.verify("h_good", "good") for _ in range(32)))

    answers = asyncio.run(burst())

    assert answers == [PRINCIPAL] * 32
    assert access.calls == 1
    assert svc.cached("h_good") == PRINCIPAL
    assert asyncio.run(svc.verify("h_bad", "bad")) is None  # another key: its own check
    assert access.calls == 2
    assert svc.cached("h_bad") is None


def test_a_revocation_during_a_check_keeps_its_answer_out_of_the_cache() -> None:
    access = SlowAccess(delay=0.2)
    svc = _services(access)

    async def revoke_meanwhile() -> None:
        check = asyncio.ensure_future(svc.verify("h_good", "good"))
        await asyncio.to_thread(access.started.wait, 5)
        svc.forget_keys()  # e.g. the key was revoked through this process
        later = asyncio.ensure_future(svc.verify("h_good", "good"))
        await asyncio.sleep(0.05)
        assert access.calls == 2  # a request after the revocation does not join the old check
        assert await check == PRINCIPAL  # answered as of before the revocation...
        assert svc.cached("h_good") is None  # ...and kept out of the cache
        assert await later == PRINCIPAL  # the new check (this stub never revokes)

    asyncio.run(revoke_meanwhile())
    assert svc.cached("h_good") == PRINCIPAL


def test_a_failed_check_fails_every_waiter_and_the_next_request_retries() -> None:
    access = SlowAccess(fail=True)
    svc = _services(access)

    async def burst() -> list[Any]:
        return await asyncio.gather(
            *(svc.verify("h_good", "good") for _ in range(8)), return_exceptions=True
        )

    answers = asyncio.run(burst())

    assert all(isinstance(a, RuntimeError) for a in answers)
    assert access.calls == 1
    access.fail = False
    assert asyncio.run(svc.verify("h_good", "good")) == PRINCIPAL
    assert access.calls == 2


def test_a_waiter_cancelled_does_not_cancel_the_others() -> None:
    access = SlowAccess(delay=0.2)
    svc = _services(access)

    async def one_leaves() -> Principal | None:
        leaving = asyncio.ensure_future(svc.verify("h_good", "good"))
        staying = asyncio.ensure_future(svc.verify("h_good", "good"))
        await asyncio.sleep(0.05)
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        return await staying

    assert asyncio.run(one_leaves()) == PRINCIPAL
    assert access.calls == 1
