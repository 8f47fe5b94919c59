"""Turning a run into something to read: ratio/limit verdicts, a Rich table, JSON, a plot.

``evaluate_ratios`` and ``evaluate_limits`` are pure so they can be tested without a run;
the plot imports matplotlib lazily (Agg backend) so the parsers' tests never need it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from .core import RowResult
from .targets import Limit, Ratio

Status = Literal["met", "missed", "info", "n/a"]


@dataclass(frozen=True)
class RowOutcome:
    """A row as the run saw it: its result, or the error that stopped it, and its audit."""

    name: str
    group: str
    baseline: bool
    description: str
    result: RowResult | None
    error: str | None = None
    audit: Literal["clean", "failed", "none"] = "none"
    audit_problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.result is not None and self.error is None and self.audit != "failed"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "baseline": self.baseline,
            "description": self.description,
            "result": self.result.to_json() if self.result else None,
            "error": self.error,
            "audit": self.audit,
            "audit_problems": list(self.audit_problems),
        }


def outcome_from_json(data: dict[str, Any]) -> RowOutcome:
    """The inverse of ``RowOutcome.to_json`` (for redrawing a saved run)."""
    result = data.get("result")
    return RowOutcome(
        name=data["name"],
        group=data["group"],
        baseline=data["baseline"],
        description=data.get("description", ""),
        result=RowResult(**result) if result else None,
        error=data.get("error"),
        audit=data.get("audit", "none"),
        audit_problems=tuple(data.get("audit_problems", ())),
    )


@dataclass(frozen=True)
class Verdict:
    label: str
    value: float | None
    target: str
    status: Status
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": self.value,
            "target": self.target,
            "status": self.status,
            "source": self.source,
        }


def _results(outcomes: Sequence[RowOutcome]) -> dict[str, RowResult]:
    return {o.name: o.result for o in outcomes if o.ok and o.result is not None}


def evaluate_ratios(outcomes: Sequence[RowOutcome], ratios: Sequence[Ratio]) -> list[Verdict]:
    """One verdict per ratio; "n/a" when either row is missing from this run."""
    results = _results(outcomes)
    verdicts: list[Verdict] = []
    for r in ratios:
        num, den = results.get(r.numerator), results.get(r.denominator)
        target = f">= {r.minimum:g}x" if r.minimum is not None else ""
        if num is None or den is None or den.throughput <= 0:
            verdicts.append(Verdict(r.label, None, target, "n/a", r.source))
            continue
        value = r.scale * num.throughput / den.throughput
        status: Status = "info" if r.minimum is None else "met" if value >= r.minimum else "missed"
        verdicts.append(Verdict(r.label, value, target, status, r.source))
    return verdicts


def evaluate_limits(outcomes: Sequence[RowOutcome], limits: Sequence[Limit]) -> list[Verdict]:
    results = _results(outcomes)
    verdicts: list[Verdict] = []
    for lim in limits:
        res = results.get(lim.row)
        bound = f">= {lim.minimum:g}" if lim.minimum is not None else f"< {lim.maximum:g}"
        value: float | None = getattr(res, lim.metric) if res is not None else None
        if value is None:
            verdicts.append(Verdict(lim.label, None, bound, "n/a", lim.source))
            continue
        ok = (lim.minimum is None or value >= lim.minimum) and (
            lim.maximum is None or value < lim.maximum
        )
        verdicts.append(Verdict(lim.label, value, bound, "met" if ok else "missed", lim.source))
    return verdicts


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


_STATUS_STYLE = {"met": "green", "missed": "bold red", "info": "cyan", "n/a": "dim"}


def print_report(
    console: Console,
    outcomes: Sequence[RowOutcome],
    ratios: Sequence[Verdict],
    limits: Sequence[Verdict],
) -> None:
    rows = Table(title="Benchmark rows", title_justify="left")
    for col, justify in (
        ("row", "left"),
        ("group", "left"),
        ("throughput", "right"),
        ("unit", "left"),
        ("ops", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("audit", "left"),
    ):
        rows.add_column(col, justify=justify)  # type: ignore[arg-type]
    for o in outcomes:
        audit = {"clean": "[green]clean[/]", "failed": "[bold red]FAILED[/]", "none": "-"}[o.audit]
        if o.result is None:
            first = (o.error or "").splitlines()[0][:120]
            rows.add_row(o.name, o.group, f"[bold red]error: {first}[/]", "", "", "", "", audit)
            continue
        r = o.result
        rows.add_row(
            o.name,
            o.group,
            _fmt(r.throughput),
            r.unit,
            f"{r.ops:,}",
            _fmt(r.p50_ms, 3),
            _fmt(r.p99_ms, 3),
            audit,
        )
    console.print(rows)
    for title, verdicts in (("Ratios (throughput / throughput)", ratios), ("Limits", limits)):
        table = Table(title=title, title_justify="left")
        for col in ("", "value", "target", "status"):
            table.add_column(col)
        for v in verdicts:
            style = _STATUS_STYLE[v.status]
            table.add_row(
                v.label,
                _fmt(v.value, 3),
                v.target,
                f"[{style}]{v.status}[/]",
            )
        console.print(table)
    for o in outcomes:
        for problem in o.audit_problems:
            console.print(f"[bold red]audit {o.name}:[/] {problem}")


def markdown_report(
    outcomes: Sequence[RowOutcome],
    ratios: Sequence[Verdict],
    limits: Sequence[Verdict],
    machine: str = "",
) -> str:
    """The same tables as Markdown, for pasting into benchmarks/README.md; ``machine``,
    when given, is a line above them saying what measured them."""
    lines = [f"Machine: {machine}", ""] if machine else []
    lines += [
        "| row | throughput | unit | p50 ms | p99 ms | audit |",
        "| --- | ---: | --- | ---: | ---: | --- |",
    ]
    for o in outcomes:
        if o.result is None:
            first = (o.error or "").splitlines()[0][:120]
            lines.append(f"| {o.name} | error: {first} | | | | {o.audit} |")
            continue
        r = o.result
        audit = "-" if o.audit == "none" else o.audit
        lines.append(
            f"| {o.name} | {_fmt(r.throughput)} | {r.unit} | {_fmt(r.p50_ms, 3)} "
            f"| {_fmt(r.p99_ms, 3)} | {audit} |"
        )
    lines += ["", "| ratio / limit | value | target | status |", "| --- | ---: | --- | --- |"]
    for v in [*ratios, *limits]:
        lines.append(f"| {v.label} | {_fmt(v.value, 3)} | {v.target} | {v.status} |")
    return "\n".join(lines) + "\n"


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")


def plot_throughput(
    outcomes: Sequence[RowOutcome],
    path: Path,
    *,
    scale: Literal["auto", "linear", "log"] = "auto",
    title: str = "",
) -> Path | None:
    """Horizontal bars of throughput per row; baselines grey-blue, creditbook orange."""
    measured = [o for o in outcomes if o.ok and o.result is not None]
    if not measured:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    values = [o.result.throughput for o in measured if o.result is not None]
    labels = [o.name for o in measured]
    units = [o.result.unit for o in measured if o.result is not None]
    colours = ["#5b7aa6" if o.baseline else "#e07b24" for o in measured]
    use_log = scale == "log" or (
        scale == "auto" and min(values) > 0 and max(values) / min(values) > 20
    )
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(measured) + 2.0))
    positions = list(range(len(measured)))[::-1]
    ax.barh(positions, values, color=colours)
    ax.set_yticks(positions, labels)
    ax.set_xlabel("throughput (ops/s, unit per row)" + (" — log scale" if use_log else ""))
    if use_log:
        ax.set_xscale("log")
    top = max(values)
    if use_log:
        ax.set_xlim(left=min(values) / 3, right=top * 8)
    else:
        ax.set_xlim(right=top * 1.25)
    for y, v, u in zip(positions, values, units, strict=True):
        ax.text(v, y, f"  {v:,.0f} {u}", va="center", fontsize=8)
    fig.legend(
        handles=[
            Patch(color="#5b7aa6", label="baseline (PostgreSQL alone)"),
            Patch(color="#e07b24", label="creditbook"),
        ],
        loc="lower center",
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    if not use_log:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:,.0f}"))
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
