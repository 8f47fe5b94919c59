"""The run: pick rows, execute them in order with their audits, then report and save.

Exit status: 0 when every selected row measured and every audit came back clean;
1 when a row raised or an audit failed (or, with ``--fail-on-targets``, when a target
was missed); 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import pkgutil
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, cast

from rich.console import Console

from . import rows as rows_package
from .core import (
    BenchmarkError,
    PgTarget,
    RowResult,
    RowSpec,
    RunContext,
    registered_rows,
    select_rows,
)
from .machine import calibrate, describe_machine
from .private_pg import private_postgres
from .report import (
    RowOutcome,
    evaluate_limits,
    evaluate_ratios,
    markdown_report,
    outcome_from_json,
    plot_throughput,
    print_report,
    write_json,
)
from .statements import Scenario, count_statements, markdown_table, print_table
from .targets import LIMITS, PLANNED_ROWS, RATIOS

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"


def load_row_modules() -> None:
    """Import every module in ``suite/rows`` so their ``@row`` decorators register."""
    for info in sorted(pkgutil.iter_modules(rows_package.__path__), key=lambda m: m.name):
        importlib.import_module(f"{rows_package.__name__}.{info.name}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def run_row(spec: RowSpec, ctx: RunContext, console: Console) -> RowOutcome:
    """Run one row once and audit it; never raises (the outcome says why)."""
    base = RowOutcome(spec.name, spec.group, spec.baseline, spec.description, None)
    console.print(f"[bold]▶ {spec.name}[/] [dim]({spec.group})[/]")
    ctx.begin_row(spec)
    started = time.monotonic()
    try:
        result = replace(spec.func(ctx), name=spec.name)
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(exc)).strip()
        console.print(f"[bold red]  row failed:[/] {detail}")
        return replace(base, error=detail)
    console.print(
        f"  {result.throughput:,.1f} {result.unit}, p50 {_ms(result.p50_ms)},"
        f" p99 {_ms(result.p99_ms)} [dim]({time.monotonic() - started:.1f}s)[/]"
    )
    hooks = ctx.audits()
    if not hooks and spec.needs_audit:
        problem = "creditbook rows must register an audit hook (@row(audit=) or ctx.add_audit)"
        return replace(base, result=result, audit="failed", audit_problems=(problem,))
    problems: list[str] = []
    for hook in hooks:
        try:
            problems.extend(str(p) for p in hook())
        except Exception as exc:
            problems.append(f"audit hook raised {exc!r}")
    if problems:
        console.print(f"[bold red]  audit failed:[/] {problems}")
        return replace(base, result=result, audit="failed", audit_problems=tuple(problems))
    if hooks:
        console.print("  [green]audit clean[/]")
    return replace(base, result=result, audit="clean" if hooks else "none")


def _median(results: list[RowResult]) -> RowResult:
    """The result with the median throughput; with several, all of them in ``repeats``."""
    chosen = sorted(results, key=lambda r: r.throughput)[(len(results) - 1) // 2]
    if len(results) > 1:
        repeats = [round(r.throughput, 1) for r in results]
        chosen = replace(chosen, extra=chosen.extra | {"repeats": repeats})
    return chosen


def run_rows(
    specs: list[RowSpec], ctx: RunContext, console: Console, repeat: int = 1
) -> tuple[list[RowOutcome], bool]:
    """Run ``specs`` ``repeat`` times in rounds (A B C, A B C, ...), each row's median.

    With repeats the reported result is the one with the median throughput, and every
    round's throughput is kept in ``extra["repeats"]``: on a shared 2-core machine one
    unlucky 10-second window should not decide a ratio.

    Rounds, not each row's repetitions back to back: a ratio compares two rows, and
    on a shared machine whose speed drifts over minutes the rows of one round are
    measured close together. A row that fails
    or whose audit fails in any round is reported as that failure. Interrupted
    (Ctrl-C), it reports what was measured and says so (the second value).
    """
    rounds: dict[str, list[RowOutcome]] = {spec.name: [] for spec in specs}
    interrupted = False
    try:
        for round_number in range(repeat):
            if repeat > 1:
                console.print(f"[bold]round {round_number + 1} of {repeat}[/]")
            for spec in specs:
                done = rounds[spec.name]
                if done and not done[-1].ok:
                    continue  # failed already: its failure is what gets reported
                done.append(run_row(spec, ctx, console))
    except KeyboardInterrupt:
        interrupted = True
    outcomes: list[RowOutcome] = []
    for spec in specs:
        done = rounds[spec.name]
        if not done:
            continue
        failed = [o for o in done if not o.ok]
        if failed or len(done) == 1:
            outcomes.append(failed[0] if failed else done[0])
            continue
        results = [o.result for o in done if o.result is not None]
        outcomes.append(replace(done[0], result=_median(results)))
    return outcomes, interrupted


def plot_title(document: dict[str, Any]) -> str:
    machine = document["machine"]
    pg_info = machine["postgresql"]
    version = str(pg_info.get("server_version", "?")).split()[0]
    return (
        f"{document['started_at'][:10]} · {machine['nproc']} cpus ({machine['cpu_model']}) · "
        f"{document['seconds_per_row']:g}s per row\nPostgreSQL {version},"
        f" fsync={pg_info.get('fsync')}, synchronous_commit={pg_info.get('synchronous_commit')}"
        + (f"\n{calibration}" if (calibration := calibration_text(machine)) else "")
    )


def machine_line(document: dict[str, Any]) -> str:
    """The plot's title on one line: what measured the tables of ``latest.md``."""
    return plot_title(document).replace("\n", " · ")


def calibration_text(machine: dict[str, Any]) -> str:
    """``python task N us, fsync N us`` (and the same at the run's end, when measured);
    empty for result files older than calibration."""
    figures = machine.get("calibration")
    if not figures:
        return ""
    text = f"python task {figures['python_task_us']:g} us, fsync {figures['fsync_4k_us']:g} us"
    end = machine.get("calibration_at_end")
    if end:
        text += f" (at the end: {end['python_task_us']:g} us, {end['fsync_4k_us']:g} us)"
    return text


def latest_markdown(document: dict[str, Any]) -> str:
    """``latest.md``: the tables of the run, then its statements per operation."""
    outcomes = [outcome_from_json(r) for r in document["rows"]]
    ratios = evaluate_ratios(outcomes, RATIOS)
    limits = evaluate_limits(outcomes, LIMITS)
    text = markdown_report(outcomes, ratios, limits, machine_line(document))
    scenarios = [Scenario.from_json(s) for s in document.get("statements") or []]
    if scenarios:
        text += (
            "\n## Statements per operation (pg_stat_statements, a private cluster)\n\n"
            + markdown_table(scenarios)
        )
    return text


def measure_statements(console: Console) -> tuple[list[Scenario], str | None]:
    """The statement count on a private cluster; the error instead when it failed."""
    console.print("[bold]▶ statements per operation[/] [dim](pg_stat_statements)[/]")
    try:
        with private_postgres() as pg:
            scenarios = count_statements(pg)
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(exc)).strip()
        console.print(f"[bold red]  statement count failed:[/] {detail}")
        return [], f"statement count: {detail}"
    console.print("  [green]audit clean[/]")
    return scenarios, None


def replot(source: Path, out: Path, scale: str) -> int:
    document = json.loads(source.read_text())
    outcomes = [outcome_from_json(r) for r in document["rows"]]
    (out / "latest.md").write_text(latest_markdown(document))
    plot_throughput(
        outcomes,
        out / "latest.png",
        scale=cast(Literal["auto", "linear", "log"], scale),
        title=plot_title(document),
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/run",
        description="Run creditbook's benchmark rows against baselines measured in the same run.",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="load duration per row (10)")
    p.add_argument("--rows", action="append", default=[], help="comma-separated exact row names")
    p.add_argument("--only", action="append", default=[], help="glob on row names, e.g. 'pgbench*'")
    p.add_argument("--group", action="append", default=[], help="baseline, creditbook, ...")
    p.add_argument("--list", action="store_true", help="list the rows and exit")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the selected rows N times in rounds, report each row's median (1)",
    )
    p.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    p.add_argument("--pg-port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    p.add_argument("--pg-user", default=os.environ.get("PGUSER", "postgres"))
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--no-save", action="store_true", help="print only; write no files")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--no-statements",
        action="store_true",
        help="skip counting statements per operation (pg_stat_statements, a private cluster)",
    )
    p.add_argument(
        "--replot",
        type=Path,
        metavar="RESULT_JSON",
        help="redraw latest.png/latest.md from a saved result file; runs nothing",
    )
    p.add_argument("--plot-scale", choices=("auto", "linear", "log"), default="auto")
    p.add_argument(
        "--fail-on-targets", action="store_true", help="exit 1 when a measured target is missed"
    )
    return p


def list_rows(console: Console, specs: Sequence[RowSpec]) -> None:
    for spec in specs:
        console.print(f"{spec.name:48} [dim]{spec.group:11}[/] {spec.description}")
    missing = [name for name in PLANNED_ROWS if name not in {s.name for s in specs}]
    for name in missing:
        console.print(f"[dim]{name:48} {'planned':11} {PLANNED_ROWS[name]}[/]")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Piped output (CI logs, tee) would otherwise wrap the tables at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 160)
    if args.seconds <= 0 or args.seconds > 600:
        console.print("[red]--seconds must be within (0, 600][/]")
        return 2
    if not 1 <= args.repeat <= 10:
        console.print("[red]--repeat must be within 1..10[/]")
        return 2
    if args.replot is not None:
        return replot(args.replot, args.results_dir, args.plot_scale)
    load_row_modules()
    specs = registered_rows()
    if args.list:
        list_rows(console, specs)
        return 0
    names = [n.strip() for chunk in args.rows for n in chunk.split(",") if n.strip()]
    try:
        selected = select_rows(specs, names, args.only, args.group)
    except BenchmarkError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    if not selected:
        console.print("[red]no row matches the filters; see --list[/]")
        return 2

    pg = PgTarget(args.pg_host, args.pg_port, args.pg_user)
    started = dt.datetime.now(dt.UTC)
    machine = describe_machine(pg)
    console.print(
        f"[dim]{machine['nproc']} cpus ({machine['cpu_model']}), {machine['mem_total_gib']} GiB,"
        f" PostgreSQL {machine['postgresql'].get('server_version')}"
        f" fsync={machine['postgresql'].get('fsync')}"
        f" synchronous_commit={machine['postgresql'].get('synchronous_commit')},"
        f" Python {machine['python']}, load {machine['loadavg_at_start']},"
        f" {calibration_text(machine)};"
        f" {len(selected)} rows x {args.repeat} x {args.seconds:g}s[/]"
    )
    ctx = RunContext(args.seconds, pg)
    outcomes: list[RowOutcome] = []
    interrupted = False
    try:
        outcomes, interrupted = run_rows(selected, ctx, console, args.repeat)
        if interrupted:
            console.print("[yellow]interrupted: reporting the rows measured so far[/]")
    finally:
        cleanup_errors = ctx.close()
    for err in cleanup_errors:
        console.print(f"[red]{err}[/]")
    scenarios: list[Scenario] = []
    statement_error: str | None = None
    if not args.no_statements and not interrupted:
        scenarios, statement_error = measure_statements(console)

    # Again at the end: a machine whose speed drifted during the run shows it here.
    machine["calibration_at_end"] = calibrate()
    ratio_verdicts = evaluate_ratios(outcomes, RATIOS)
    limit_verdicts = evaluate_limits(outcomes, LIMITS)
    print_report(console, outcomes, ratio_verdicts, limit_verdicts)
    if scenarios:
        print_table(console, scenarios)

    failed = [o.name for o in outcomes if not o.ok]
    missed = [v.label for v in [*ratio_verdicts, *limit_verdicts] if v.status == "missed"]
    document: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds_per_row": args.seconds,
        "repeat": args.repeat,
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "machine": machine,
        "rows": [o.to_json() for o in outcomes],
        "statements": [s.to_json() for s in scenarios],
        "ratios": [v.to_json() for v in ratio_verdicts],
        "limits": [v.to_json() for v in limit_verdicts],
        "failed_rows": failed,
        "missed_targets": missed,
        "cleanup_errors": cleanup_errors,
        "statements_error": statement_error,
        "interrupted": interrupted,
    }
    if not args.no_save:
        out: Path = args.results_dir
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        write_json(out / f"{stamp}.json", document)
        write_json(out / "latest.json", document)
        (out / "latest.md").write_text(latest_markdown(document))
        if not args.no_plot:
            plot_throughput(
                outcomes,
                out / "latest.png",
                scale=cast(Literal["auto", "linear", "log"], args.plot_scale),
                title=plot_title(document),
            )
        console.print(f"[dim]saved {out / f'{stamp}.json'} and latest.json/.md/.png[/]")
    if failed or cleanup_errors or statement_error or interrupted:
        console.print(f"[bold red]run failed: {failed or cleanup_errors or statement_error}[/]")
        return 1
    if missed and args.fail_on_targets:
        console.print(f"[bold red]targets missed: {missed}[/]")
        return 1
    return 0
