"""creditbook's benchmark harness: rows measured against baselines in the same run.

Add a row by dropping a module into ``suite/rows/`` (see its package docstring)::

    from suite import RowResult, RunContext, row

    @row("library hot team c8", group="creditbook")
    def library_hot_team_c8(ctx: RunContext) -> RowResult:
        ...
        ctx.add_audit(lambda: check_books(...))  # creditbook rows must audit
        return load.to_row("library hot team c8", "charges/s")

Names used by the targets (ratios, limits) are constants in ``suite.targets``.
"""

from __future__ import annotations

from .core import (
    BASELINE,
    CREDITBOOK,
    AuditHook,
    BenchmarkError,
    PgTarget,
    RowResult,
    RowSpec,
    RunContext,
    registered_rows,
    row,
)
from .load import LoadResult, Zipf, percentile, run_workers
from .wrk import lua_string, run_wrk, wrk_post_script

__all__ = [
    "BASELINE",
    "CREDITBOOK",
    "AuditHook",
    "BenchmarkError",
    "LoadResult",
    "PgTarget",
    "RowResult",
    "RowSpec",
    "RunContext",
    "Zipf",
    "lua_string",
    "percentile",
    "registered_rows",
    "row",
    "run_workers",
    "run_wrk",
    "wrk_post_script",
]
