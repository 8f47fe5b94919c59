"""Load generation for in-process rows: percentiles, a Zipf sampler, timed worker pools.

The library rows (charges on one hot team, or spread over 10,000 teams) drive creditbook
from N threads or processes for T seconds each and need per-operation latencies; this
module is that driver, free of numpy so the harness stays light.
"""

from __future__ import annotations

import bisect
import math
import multiprocessing
import random
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .core import BenchmarkError, RowResult

Op = Callable[[], object]
OpFactory = Callable[[int], Op]
"""Called once per worker with its index (inside the worker, so open connections there)."""


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when there are none."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Zipf:
    """Zipf(s) over ``n`` items: item k (0-based) is drawn with probability ∝ 1/(k+1)**s.

    Sampling is a bisect into a precomputed CDF, driven by a seeded ``random.Random`` so
    two runs with the same seed draw the same sequence. Item 0 is the hottest.
    """

    def __init__(self, n: int, s: float = 1.0, seed: int = 0) -> None:
        if n < 1:
            raise ValueError(f"Zipf needs at least one item, got n={n}")
        if s < 0:
            raise ValueError(f"Zipf exponent s must be >= 0, got {s}")
        self.n = n
        self.s = s
        self._rng = random.Random(seed)
        cdf: list[float] = []
        total = 0.0
        for k in range(1, n + 1):
            total += 1.0 / k**s
            cdf.append(total)
        self._cdf = [c / total for c in cdf]
        self._cdf[-1] = 1.0  # guard against rounding leaving the last bucket unreachable

    def probability(self, k: int) -> float:
        """The probability of drawing item ``k``."""
        if not 0 <= k < self.n:
            raise ValueError(f"item must be within 0..{self.n - 1}, got {k}")
        return self._cdf[k] - (self._cdf[k - 1] if k else 0.0)

    def sample(self) -> int:
        return bisect.bisect_left(self._cdf, self._rng.random())

    def samples(self, count: int) -> list[int]:
        return [self.sample() for _ in range(count)]


@dataclass
class WorkerTally:
    """What one worker did during the measured window."""

    ops: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    first_error: str | None = None


@dataclass(frozen=True)
class LoadResult:
    """Totals over all workers of one timed load."""

    workers: int
    mode: str
    ops: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    first_error: str | None

    @property
    def throughput(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def raise_on_errors(self) -> None:
        if self.errors:
            raise BenchmarkError(
                f"{self.errors} of {self.ops + self.errors} operations raised; "
                f"first: {self.first_error}"
            )

    def to_row(self, name: str, unit: str, extra: dict[str, Any] | None = None) -> RowResult:
        """A RowResult counting only successful operations."""
        return RowResult(
            name=name,
            unit=unit,
            ops=self.ops,
            seconds=self.seconds,
            throughput=self.throughput,
            p50_ms=percentile(self.latencies_ms, 50),
            p99_ms=percentile(self.latencies_ms, 99),
            extra={"workers": self.workers, "mode": self.mode, "errors": self.errors}
            | (extra or {}),
        )


def _work(op: Op, seconds: float, max_ops: int | None) -> WorkerTally:
    tally = WorkerTally()
    clock = time.perf_counter
    start = clock()
    deadline = start + seconds
    lat = tally.latencies_ms
    while True:
        t0 = clock()
        if t0 >= deadline or (max_ops is not None and tally.ops + tally.errors >= max_ops):
            break
        try:
            op()
        except Exception:
            tally.errors += 1
            if tally.first_error is None:
                tally.first_error = traceback.format_exc(limit=3)
            continue
        t1 = clock()
        tally.ops += 1
        lat.append((t1 - t0) * 1000.0)
    tally.elapsed = clock() - start
    return tally


_PEER_SETUP_FAILED = "another worker's setup failed"


def _setup_failed(index: int) -> WorkerTally:
    return WorkerTally(errors=1, first_error=f"worker {index} setup: {traceback.format_exc()}")


def _process_main(
    make_op: OpFactory,
    index: int,
    seconds: float,
    max_ops: int | None,
    barrier: Any,
    results: Any,
) -> None:
    try:
        op = make_op(index)
    except Exception:
        barrier.abort()
        results.put((index, _setup_failed(index)))
        return
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        results.put((index, WorkerTally(errors=1, first_error=_PEER_SETUP_FAILED)))
        return
    results.put((index, _work(op, seconds, max_ops)))


def run_workers(
    make_op: OpFactory,
    workers: int,
    seconds: float,
    *,
    mode: Literal["thread", "process"] = "thread",
    max_ops_per_worker: int | None = None,
    join_timeout: float = 60.0,
) -> LoadResult:
    """Run ``workers`` workers, each calling its op in a loop for ``seconds``.

    Every worker first builds its op with ``make_op(index)`` (setup is not timed), then all
    start together at a barrier. Each op call is timed; an op that raises counts as an
    error, not an op. ``mode="process"`` forks, so ``make_op`` may be a closure, but it
    must open connections itself (inside the child) rather than inherit them. The load is
    bounded by time and, optionally, by ``max_ops_per_worker``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    tallies: list[WorkerTally] = []
    if mode == "thread":
        barrier = threading.Barrier(workers)
        out: list[WorkerTally | None] = [None] * workers

        def thread_main(index: int) -> None:
            try:
                op = make_op(index)
            except Exception:
                barrier.abort()
                out[index] = _setup_failed(index)
                return
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                out[index] = WorkerTally(errors=1, first_error=_PEER_SETUP_FAILED)
                return
            out[index] = _work(op, seconds, max_ops_per_worker)

        threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(join_timeout + seconds)
        tallies = [t or WorkerTally(errors=1, first_error="worker did not finish") for t in out]
    elif mode == "process":
        ctx = multiprocessing.get_context("fork")
        pbarrier = ctx.Barrier(workers)
        results = ctx.Queue()
        procs = [
            ctx.Process(
                target=_process_main,
                args=(make_op, i, seconds, max_ops_per_worker, pbarrier, results),
            )
            for i in range(workers)
        ]
        for p in procs:
            p.start()
        got: dict[int, WorkerTally] = {}
        # Drain before join: a child blocks on exit until its queued result is read.
        deadline = time.monotonic() + seconds + join_timeout
        while len(got) < workers and time.monotonic() < deadline:
            try:
                index, tally = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                break
            got[index] = tally
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
        tallies = [
            got.get(i, WorkerTally(errors=1, first_error="worker did not finish"))
            for i in range(workers)
        ]
    else:
        raise ValueError(f"mode must be 'thread' or 'process', got {mode!r}")

    latencies: list[float] = []
    for tally in tallies:
        latencies.extend(tally.latencies_ms)
    return LoadResult(
        workers=workers,
        mode=mode,
        ops=sum(w.ops for w in tallies),
        errors=sum(w.errors for w in tallies),
        seconds=max((w.elapsed for w in tallies), default=0.0),
        latencies_ms=latencies,
        # The worker whose setup raised says why; the others only say they were stopped.
        first_error=next(
            (w.first_error for w in tallies if w.first_error not in (None, _PEER_SETUP_FAILED)),
            next((w.first_error for w in tallies if w.first_error), None),
        ),
    )
