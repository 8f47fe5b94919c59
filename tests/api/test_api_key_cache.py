"""The verified-key cache of the API (``deps.Services``): one database check per key at a time.

When a busy key's entry expires, every request in flight with it misses at once;
each running its own check on the thread pool would make a latency spike every
``KEY_CACHE_SECONDS``. They share the check in flight, and a revocation that
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

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal | None:
        with self._lock:
            self.calls += 1
        time.sleep(0.05)
        if self.fail:
            raise RuntimeError("database down")
        return PRINCIPAL if token == "good" else None


class GatedAccess:
    """Stands in for ``AccessService.verify``: each call waits for the test to open its gate.

    The order in which checks answer is then the test's, not the thread pool's
    (with fixed delays, a loaded machine let the second check answer first).
    """

    def __init__(self, calls: int) -> None:
        self.calls = 0
        self.entered = threading.Semaphore(0)
        self.gates = [threading.Event() for _ in range(calls)]
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal | None:
        with self._lock:
            number = self.calls
            self.calls += 1
        self.entered.release()
        self.gates[number].wait(5)
        return PRINCIPAL

    async def a_check_entered(self) -> bool:
        """Whether another call entered ``verify`` within 5 s (awaited off the loop)."""
        return await asyncio.to_thread(self.entered.acquire, True, 5)


def _services(access: SlowAccess | GatedAccess) -> Services:
    return Services(
        book=cast(Any, None),
        access=cast(Any, access),
        settings=cast(Any, None),
        limits=cast(Any, None),
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
    access = GatedAccess(calls=2)
    svc = _services(access)

    async def revoke_meanwhile() -> None:
        check = asyncio.ensure_future(svc.verify("h_good", "good"))
        assert await access.a_check_entered()
        svc.forget_keys()  # e.g. the key was revoked through this process
        later = asyncio.ensure_future(svc.verify("h_good", "good"))
        # A request after the revocation does not join the old check: it starts its own.
        assert await access.a_check_entered()
        access.gates[0].set()
        assert await check == PRINCIPAL  # answered as of before the revocation...
        assert svc.cached("h_good") is None  # ...and kept out of the cache
        access.gates[1].set()
        assert await later == PRINCIPAL  # the new check (this stub never revokes)

    asyncio.run(revoke_meanwhile())
    assert access.calls == 2
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
    access = GatedAccess(calls=1)
    svc = _services(access)

    async def one_leaves() -> Principal | None:
        leaving = asyncio.ensure_future(svc.verify("h_good", "good"))
        staying = asyncio.ensure_future(svc.verify("h_good", "good"))
        assert await access.a_check_entered()
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        access.gates[0].set()
        return await staying

    assert asyncio.run(one_leaves()) == PRINCIPAL
    assert access.calls == 1
