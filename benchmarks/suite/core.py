"""The harness's vocabulary: a row's result, the row registry and the run context.

A benchmark *row* is a plain function ``fn(ctx: RunContext) -> RowResult`` registered
with ``@row("name", group=...)``. Rows run one after another in registration order (the
order of the modules in ``suite/rows``, then of the decorators inside each), so the
baselines a ratio compares against are measured in the same run on the same PostgreSQL.

Rows in the ``creditbook`` group must register at least one *audit hook* (a callable
returning a list of problems, empty when clean), either with ``@row(..., audit=fn)`` or at
run time with ``ctx.add_audit(fn)``. The runner calls every hook right after the row; a
row without a hook, or a hook reporting a problem, fails the run: a fast number from a
row that broke the books is worthless.
"""

from __future__ import annotations

import fnmatch
import socket
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

T = TypeVar("T")

AuditHook = Callable[[], Sequence[str]]
"""Returns the problems it found; an empty sequence means the books are clean."""

BASELINE = "baseline"
CREDITBOOK = "creditbook"


class BenchmarkError(Exception):
    """A row could not produce a trustworthy measurement (tool failed, output unparsable)."""


@dataclass(frozen=True)
class RowResult:
    """One measured row. ``throughput`` is ``ops / seconds`` in ``unit`` (e.g. "tx/s")."""

    name: str
    unit: str
    ops: int
    seconds: float
    throughput: float
    p50_ms: float | None
    p99_ms: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


RowFunc = Callable[["RunContext"], RowResult]


@dataclass(frozen=True)
class RowSpec:
    """A registered row: its function plus what the report needs to know about it."""

    name: str
    group: str
    func: RowFunc
    description: str
    baseline: bool
    audit: AuditHook | None = None

    @property
    def needs_audit(self) -> bool:
        return self.group == CREDITBOOK


_REGISTRY: dict[str, RowSpec] = {}


def row(
    name: str,
    *,
    group: str,
    description: str = "",
    baseline: bool | None = None,
    audit: AuditHook | None = None,
) -> Callable[[RowFunc], RowFunc]:
    """Register ``fn`` as the row ``name``.

    ``baseline`` defaults to ``group == "baseline"``; baseline rows are drawn in another
    colour and are what ratios divide by. ``description`` defaults to the docstring's
    first line.
    """

    def register(fn: RowFunc) -> RowFunc:
        if name in _REGISTRY:
            raise ValueError(f"benchmark row {name!r} is registered twice; row names are unique")
        doc = (getattr(fn, "__doc__", None) or "").strip().splitlines()
        _REGISTRY[name] = RowSpec(
            name=name,
            group=group,
            func=fn,
            description=description or (doc[0] if doc else ""),
            baseline=(group == BASELINE) if baseline is None else baseline,
            audit=audit,
        )
        return fn

    return register


def registered_rows() -> list[RowSpec]:
    return list(_REGISTRY.values())


def unregister(name: str) -> None:
    """Remove a row (tests register throwaway rows and clean up after themselves)."""
    _REGISTRY.pop(name, None)


def select_rows(
    rows: Sequence[RowSpec],
    names: Iterable[str] = (),
    globs: Iterable[str] = (),
    groups: Iterable[str] = (),
) -> list[RowSpec]:
    """Rows matching any exact name, any glob or any group, in registry order.

    With no filter at all every row is selected. An exact name that matches no row is an
    error (a typo should not silently run nothing).
    """
    names, globs, groups = list(names), list(globs), list(groups)
    known = {r.name for r in rows}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BenchmarkError(
            f"unknown row(s) {unknown}; list the valid names with --list "
            "(use --only with a glob for partial names)"
        )
    if not (names or globs or groups):
        return list(rows)
    return [
        r
        for r in rows
        if r.name in names
        or r.group in groups
        or any(fnmatch.fnmatchcase(r.name, g) for g in globs)
    ]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server a row or a count starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class PgTarget:
    """Where the PostgreSQL under test listens (loopback only)."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"

    def conninfo(self, dbname: str) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def sqlalchemy_url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"


class RunContext:
    """What a row gets: the time budget, the database, a scratch dir, fixtures, audits.

    Fixtures are shared by every row of the run (e.g. one pgbench database initialised
    once) and torn down in reverse order by ``close()``, which the runner always calls.
    """

    def __init__(self, seconds: float, pg: PgTarget, workdir: Path | None = None) -> None:
        self.seconds = seconds
        self.pg = pg
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cb-bench-")
            workdir = Path(self._tmp.name)
        self.workdir = workdir
        self.row_name = ""
        self._audits: list[AuditHook] = []
        self._fixtures: dict[str, object] = {}
        self._cleanups: list[Callable[[], None]] = []

    def begin_row(self, spec: RowSpec) -> None:
        self.row_name = spec.name
        self._audits = [spec.audit] if spec.audit is not None else []

    def add_audit(self, hook: AuditHook) -> None:
        """Register a check that runs right after the current row."""
        self._audits.append(hook)

    def audits(self) -> list[AuditHook]:
        return list(self._audits)

    def row_dir(self) -> Path:
        """A fresh directory for the current row's files (logs, scripts)."""
        slug = "".join(c if c.isalnum() else "-" for c in self.row_name) or "row"
        path = Path(tempfile.mkdtemp(prefix=f"{slug}-", dir=self.workdir))
        return path

    def fixture(
        self, key: str, factory: Callable[[], T], cleanup: Callable[[T], None] | None = None
    ) -> T:
        """The run-wide value for ``key``, made by ``factory`` on first use."""
        if key not in self._fixtures:
            value = factory()
            self._fixtures[key] = value
            if cleanup is not None:
                self._cleanups.append(lambda: cleanup(value))
        return cast(T, self._fixtures[key])

    def close(self) -> list[str]:
        """Tear fixtures down (newest first); returns the errors instead of raising."""
        errors: list[str] = []
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except Exception as exc:  # a failed teardown must not hide the others
                errors.append(f"fixture cleanup failed: {exc!r}")
        self._fixtures.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return errors
