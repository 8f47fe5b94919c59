"""``creditbook enrich`` and ``creditbook jobs``: bulk enrichment from the terminal.

``enrich`` reads leads from CSV or JSON, shows the estimate, runs the job in
this process with a Rich progress bar, and says why it stopped. A paused job
(out of credits, its credit limit, an estimate) goes on with ``jobs resume``;
a job whose process was killed is resumed the same way, and charges nothing
twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from creditbook.domain.limits import MAX_CREDITS, MAX_JOB_LEADS
from creditbook.entrypoints.cli.app import app, book, console
from creditbook.service.enrichment import (
    EnrichmentJob,
    EnrichmentService,
    JobProgress,
    enrichment_for,
)
from creditbook.service.leads import read_leads

jobs_app = typer.Typer(
    help="Enrichment jobs: status, resume, cancel, results.", no_args_is_help=True
)
app.add_typer(jobs_app, name="jobs")


def service() -> EnrichmentService:
    return enrichment_for(book())


def run_with_progress(
    svc: EnrichmentService, team_id: str, job_id: str, out: Console | None = None
) -> EnrichmentJob:
    """Run a queued job here, with a progress bar of processed items, finds and credits."""
    out = out or console
    job = svc.get_job(team_id, job_id)
    with Progress(
        TextColumn("[bold]enriching[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("found [green]{task.fields[found]}[/]"),
        TextColumn("credits [yellow]{task.fields[credits]}[/]"),
        TimeElapsedColumn(),
        console=out,
    ) as bar:
        task = bar.add_task(
            "job", total=job.total, completed=job.processed, found=job.found, credits=0
        )

        def update(p: JobProgress) -> None:
            bar.update(task, completed=p.processed, found=p.found, credits=p.credits_spent)

        return svc.run_sync(team_id, job_id, progress=update)


def describe(job: EnrichmentJob, out: Console | None = None) -> None:
    """The job's state in a few lines, with what to do next."""
    out = out or console
    color = {"completed": "green", "paused": "yellow", "cancelled": "red"}.get(job.status, "cyan")
    out.print(
        f"job [bold]{job.id}[/]: [{color}]{job.status}[/]"
        + (f" ({job.pause_reason})" if job.pause_reason else "")
        + f"; {job.processed}/{job.total} processed, {job.found} found, "
        f"[bold]{job.credits_spent}[/] credits spent"
    )
    est = job.estimate
    line = f"  estimate: at most {est.max_credits} credits"
    if est.expected_credits is not None:
        rates = ", ".join(f"{f} {r:.0%}" for f, r in est.billable_rates.items())
        line += f", expected {est.expected_credits} (sample of {est.sample_size}: {rates})"
    out.print(line)
    if job.errors_count:
        out.print(f"  {job.errors_count} row error(s), e.g.:")
        for err in job.errors[:5]:
            out.print(f"    lead {err.lead_index} {err.feature}: {err.code} {err.message}")
    if job.status == "paused":
        if job.pause_reason == "insufficient_credits":
            out.print(
                f"  [yellow]out of credits[/]: {job.credits_needed} more credits to be sure to "
                f"finish; buy credits, then `creditbook jobs resume {job.id}`"
            )
        elif job.pause_reason == "credit_limit":
            out.print(
                f"  the job's credit limit is reached ({job.credits_needed} more needed); "
                f"`creditbook jobs resume {job.id} --credit-limit N`"
            )
        else:
            out.print(f"  resume with `creditbook jobs resume {job.id}`")


@app.command("enrich")
def enrich(
    team_id: str,
    leads_file: Annotated[Path, typer.Argument(help="Leads as CSV (with a header) or JSON.")],
    features: Annotated[
        str, typer.Option("--features", help="Comma-separated, e.g. email_finder,phone_finder.")
    ] = "email_finder",
    member: Annotated[
        str | None, typer.Option("--member", help="Member the charges are attributed to.")
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample", max=MAX_JOB_LEADS, help="Enrich N leads first to estimate the rest."
        ),
    ] = None,
    estimate_only: Annotated[
        bool, typer.Option("--estimate-only", help="Spend nothing beyond the sample.")
    ] = False,
    credit_limit: Annotated[
        int | None,
        typer.Option("--credit-limit", max=MAX_CREDITS, help="Stop after spending this much."),
    ] = None,
    provider: Annotated[
        str | None, typer.Option("--provider", help="Provider set: default or sandbox.")
    ] = None,
) -> None:
    """Enrich leads: estimate, then hold, look up, capture only what is found."""
    svc = service()
    job = svc.create_job(
        team_id,
        read_leads(leads_file),
        [f.strip() for f in features.split(",") if f.strip()],
        member_id=member,
        provider=provider,
        sample_size=sample,
        estimate_only=estimate_only,
        credit_limit=credit_limit,
    )
    console.print(
        f"job [bold]{job.id}[/]: {job.leads} leads x {len(job.features)} feature(s), "
        f"at most [bold]{job.estimate.max_credits}[/] credits"
    )
    if job.status == "queued":
        job = run_with_progress(svc, team_id, job.id)
    describe(job)


@jobs_app.command("status")
def status(job_id: str) -> None:
    """Where a job is: processed, found, credits, why it paused."""
    describe(service().find_job(job_id))


@jobs_app.command("resume")
def resume(
    job_id: str,
    credit_limit: Annotated[
        int | None,
        typer.Option("--credit-limit", max=MAX_CREDITS, help="A new credit limit for the job."),
    ] = None,
) -> None:
    """Resume a paused (or killed) job here; nothing already charged is charged again.

    A job still running elsewhere, or killed less than a lease ago, is refused with
    how long to wait (exit 5)."""
    svc = service()
    job = svc.find_job(job_id)
    job = svc.resume(job.team_id, job_id, credit_limit=credit_limit)
    if job.status == "queued":
        job = run_with_progress(svc, job.team_id, job_id)
    describe(job)


@jobs_app.command("recover")
def recover() -> None:
    """Pause the running jobs whose process is gone (no heartbeat for a lease; from cron
    when no `creditbook serve` runs, which does this by itself)."""
    recovered = service().recover_interrupted()
    for job_id in recovered:
        console.print(
            f"job [bold]{job_id}[/]: paused (interrupted); `creditbook jobs resume {job_id}`"
        )
    console.print(f"{len(recovered)} orphaned job(s) paused")


@jobs_app.command("cancel")
def cancel(job_id: str) -> None:
    """Cancel a job: what is left is not enriched; what was found stays charged."""
    svc = service()
    job = svc.find_job(job_id)
    describe(svc.cancel(job.team_id, job_id))


@jobs_app.command("results")
def results(
    job_id: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the CSV here (stdout if absent).")
    ] = None,
) -> None:
    """The results as CSV: one row per lead, status/value/credits per feature."""
    svc = service()
    job = svc.find_job(job_id)
    text = svc.results_csv(job.team_id, job_id)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {job.leads} rows to {output}")


@jobs_app.command("list")
def list_jobs(team_id: str) -> None:
    """The team's latest jobs."""
    table = Table("id", "status", "processed", "found", "credits", title="Enrichment jobs")
    for job in service().list_jobs(team_id):
        table.add_row(
            job.id,
            job.status + (f" ({job.pause_reason})" if job.pause_reason else ""),
            f"{job.processed}/{job.total}",
            str(job.found),
            str(job.credits_spent),
        )
    console.print(table)
