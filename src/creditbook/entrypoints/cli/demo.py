"""``creditbook demo``: a guided tour on the default catalog.

Creates a demo team, gives it this month's free credits and a purchase,
uses every feature once (billable and not), holds and captures, shows the
balance by bucket and the ledger, runs a 200-lead sandbox enrichment job
with a progress bar, and ends with a clean audit. With ``--serve`` it then
seeds a dashboard demo team (an admin and a member, 90 days of usage, a
finished and a paused enrichment job), prints the dashboard URL and the two
keys, and serves the API and the dashboard until interrupted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from creditbook.config import Settings
from creditbook.domain.ledger import Actor
from creditbook.domain.pricing import Call
from creditbook.entrypoints.cli.app import (
    State,
    app,
    balance_table,
    book,
    console,
    ledger_table,
)


@app.command("demo")
def demo(
    serve: Annotated[
        bool, typer.Option("--serve", help="Then serve the dashboard on a demo team.")
    ] = False,
    host: Annotated[str, typer.Option(help="Interface to bind with --serve.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65_535, help="TCP port with --serve.")] = 8000,
) -> None:
    """Create a demo team, spend credits on each feature, print balance and ledger."""
    settings = None
    if serve:  # refused settings stop the demo before the tour, not after it
        settings = Settings().served_at(host, port)
        settings.check_served()
    _tour()
    if settings is not None:
        _serve_dashboard(settings, host, port)


def _tour() -> None:
    engine = book()
    now = datetime.now(UTC)
    team = engine.create_team("Demo team", time_zone="Europe/Paris")
    admin = engine.add_member(team.id, "ada@demo.example", "admin")
    member = engine.add_member(team.id, "max@demo.example", "member")
    console.rule(f"[bold]creditbook demo[/]: team {team.id}")
    engine.grant(
        team.id,
        1000,
        category="free",
        source="plan",
        bucket="subscription",
        expires_at=now + timedelta(days=30),
        reason="this month's plan credits",
        actor=Actor(operator="demo"),
    )
    engine.grant(
        team.id,
        400,
        category="free",
        source="allowance",
        scope=["calling"],
        expires_at=now + timedelta(days=30),
        reason="calling allowance",
        actor=Actor(operator="demo"),
    )
    engine.grant(
        team.id,
        500,
        category="purchased",
        source="purchase",
        reason="500 credits bought",
        actor=Actor(member_id=admin.id),
    )
    by_member = Actor(member_id=member.id)
    steps = [
        ("email_finder", {"outcome": "deliverable"}),
        ("email_finder", {"outcome": "risky"}),
        ("email_finder", {"outcome": "undeliverable"}),
        ("linkedin_enrichment", {"outcome": "found"}),
        ("phone_finder", {"outcome": "found"}),
        ("phone_finder", {"outcome": "not_found"}),
        ("ai_variable", {"outcome": "succeeded"}),
        ("calling", {"call": Call(185, True, "US")}),
        ("calling", {"call": Call(40, False, "US")}),
    ]
    for feature, kwargs in steps:
        receipt = engine.charge(team.id, feature, actor=by_member, **kwargs)  # type: ignore[arg-type]
        console.print(
            f"  {feature:<20} {receipt.outcome:<14} [bold]{receipt.credits:>3}[/] credits"
        )
    held = engine.hold(team.id, "phone_finder", quantity=3, actor=by_member)
    captured = engine.capture(team.id, held.hold_id, quantity=1)
    console.print(
        f"  hold {held.credits} for 3 phone lookups, 1 found: captured {captured.credits}, "
        f"{captured.returned} returned"
    )
    console.print(balance_table(engine.balance(team.id), title=f"Balance of {team.name}"))
    console.print(ledger_table(engine.ledger(team.id, limit=30).entries))
    _enrichment_demo(team.id, member.id)
    report = engine.audit(team.id)
    status = "[green]clean[/]" if report.clean else f"[red]{len(report.problems)} problems[/]"
    console.print(f"audit: {status} ({report.entries} entries)")


def _enrichment_demo(team_id: str, member_id: str) -> None:
    """A 200-lead sandbox enrichment job with a progress bar (issue 6)."""
    from creditbook.entrypoints.cli.enrich import describe, run_with_progress
    from creditbook.service.enrichment import enrichment_for
    from creditbook.service.leads import sample_leads

    console.rule("[bold]bulk enrichment[/]: 200 sandbox leads")
    svc = enrichment_for(book())
    job = svc.create_job(
        team_id,
        sample_leads(200),
        ["email_finder", "linkedin_enrichment"],
        member_id=member_id,
        provider="sandbox",
    )
    describe(run_with_progress(svc, team_id, job.id))


def _serve_dashboard(settings: Settings, host: str, port: int) -> None:
    """Seed the dashboard's demo team, print how to sign in, serve until Ctrl-C."""
    import uvicorn

    from creditbook.adapters.db.engine import default_database_url
    from creditbook.entrypoints.api import create_app
    from creditbook.entrypoints.api.logs import log_config
    from creditbook.entrypoints.cli.serve import warn_if_weak_operator_key
    from creditbook.entrypoints.web.demo import seed_demo

    warn_if_weak_operator_key(settings)
    url = State.database_url or default_database_url()
    console.rule("[bold]dashboard[/]: a demo team with 90 days of history")
    team = seed_demo(url)
    base = settings.origin
    console.print(
        f"Dashboard: [bold]{base}/dashboard/[/]   API docs: {base}/docs\n"
        f"  admin  {team.admin_email}: [bold]{team.admin_key}[/]\n"
        f"  member {team.member_email}: [bold]{team.member_key}[/]\n"
        "Paste a key on the sign-in page. Ctrl-C stops the server.",
        soft_wrap=True,
    )
    uvicorn.run(
        create_app(book(), settings),
        host=host,
        port=port,
        log_config=log_config("WARNING"),
        access_log=False,
    )
