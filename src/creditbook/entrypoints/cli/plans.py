"""CLI commands for plans, seats and periods: ``team plan|seats|cancel|reactivate|trial|show``,
``gift`` and ``tick``. Each is a thin call to ``book().plans`` or ``book().tick``.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from creditbook.domain.ledger import Actor
from creditbook.domain.limits import MAX_CREDITS, MAX_SEATS, MAX_TICK_BATCH, MAX_TICK_PROCESSES
from creditbook.entrypoints.cli.app import (
    KeyOpt,
    app,
    balance_table,
    book,
    console,
    team_app,
)
from creditbook.service.plans import SubscriptionReceipt
from creditbook.service.sweep import count_due


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC" if at is not None else "-"


def _aware(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _show(receipt: SubscriptionReceipt, verb: str) -> None:
    console.print(
        f"{verb}: team [bold]{receipt.team_id}[/] on [bold]{receipt.plan}[/], "
        f"{receipt.seats} seat(s), {receipt.status}"
    )
    if receipt.period_start is not None:
        console.print(
            f"  period {_when(receipt.period_start)} -> {_when(receipt.period_end)} "
            f"({receipt.time_zone})"
        )
    if receipt.granted:
        console.print(f"  granted {receipt.granted:,} credits")
    if receipt.pending_plan:
        console.print(f"  {receipt.pending_plan} from {_when(receipt.next_boundary)}")
    if receipt.cancel_at is not None:
        console.print(f"  free grants stop at {_when(receipt.cancel_at)}")
    elif receipt.next_boundary is not None:
        console.print(f"  next period grants at {_when(receipt.next_boundary)}")
    if receipt.trial_ends_at is not None:
        console.print(f"  trial ends {_when(receipt.trial_ends_at)}")


def _actor() -> Actor:
    return Actor(operator=_operator())


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in some containers
        return "cli"


@team_app.command("plan")
def team_plan(
    team_id: str,
    plan: str,
    seats: Annotated[int, typer.Option("--seats", max=MAX_SEATS, help="Seats (1-10,000).")] = 1,
    anchor: Annotated[
        datetime | None,
        typer.Option(help="Start of period 0 for a new subscription (ISO 8601; default now)."),
    ] = None,
    time_zone: Annotated[
        str | None, typer.Option("--time-zone", help="IANA zone for a new subscription.")
    ] = None,
    idempotency_key: KeyOpt = None,
) -> None:
    """Subscribe a team to a plan, or change its plan (upgrade now, downgrade next period)."""
    receipt = book().plans.subscribe(
        team_id,
        plan,
        seats=seats,
        anchor=_aware(anchor),
        time_zone=time_zone,
        actor=_actor(),
        idempotency_key=idempotency_key,
    )
    _show(receipt, "plan")


@team_app.command("seats")
def team_seats(
    team_id: str,
    seats: Annotated[int, typer.Argument(max=MAX_SEATS, help="Seats (1-10,000).")],
    idempotency_key: KeyOpt = None,
) -> None:
    """Set a team's seats; added seats get their allowance for the rest of the period."""
    _show(
        book().plans.change_seats(team_id, seats, actor=_actor(), idempotency_key=idempotency_key),
        "seats",
    )


@team_app.command("cancel")
def team_cancel(team_id: str, idempotency_key: KeyOpt = None) -> None:
    """Cancel: free grants stop after this period; purchased credits stay."""
    _show(
        book().plans.cancel(team_id, actor=_actor(), idempotency_key=idempotency_key), "cancelled"
    )


@team_app.command("reactivate")
def team_reactivate(
    team_id: str,
    plan: Annotated[str | None, typer.Option(help="Plan for the new term.")] = None,
    idempotency_key: KeyOpt = None,
) -> None:
    """Undo a cancellation, or start a new term now."""
    receipt = book().plans.reactivate(
        team_id, plan=plan, actor=_actor(), idempotency_key=idempotency_key
    )
    _show(receipt, "reactivated")


@team_app.command("trial")
def team_trial(
    team_id: str,
    plan: Annotated[str | None, typer.Option(help="Trial plan (default: the catalog's).")] = None,
    idempotency_key: KeyOpt = None,
) -> None:
    """Grant the free trial (once per team, ever)."""
    _show(
        book().plans.start_trial(
            team_id, plan=plan, actor=_actor(), idempotency_key=idempotency_key
        ),
        "trial",
    )


@team_app.command("show")
def team_show(team_id: str) -> None:
    """A team's subscription and balance."""
    engine = book()
    sub = engine.plans.subscription(team_id)
    if sub is None:
        console.print(f"team [bold]{team_id}[/] has no subscription")
    else:
        status = sub.status.value + (f", stops {_when(sub.cancel_at)}" if sub.cancel_at else "")
        console.print(
            f"team [bold]{team_id}[/]: [bold]{sub.plan}[/], {sub.seats} seat(s), {status}; "
            f"periods from {_when(sub.anchor)} in {sub.time_zone}"
            + (f"; {sub.pending_plan} next period" if sub.pending_plan else "")
        )
    console.print(balance_table(engine.balance(team_id)))


@app.command("gift")
def gift(
    team_id: str,
    credits: Annotated[int, typer.Argument(max=MAX_CREDITS, help="Credits to give.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the ledger).")],
    category: Annotated[str, typer.Option(help="free or purchased.")] = "free",
    scope: Annotated[
        str | None, typer.Option(help="Comma-separated features; all features by default.")
    ] = None,
    expires_at: Annotated[
        datetime | None, typer.Option(help="Expiry (ISO 8601, UTC if no offset); never if unset.")
    ] = None,
    adjustment: Annotated[
        bool, typer.Option("--adjustment", help="Record as an adjustment, not a gift.")
    ] = False,
    operator: Annotated[
        str | None, typer.Option(help="Who gives it (default: cli:<user name>).")
    ] = None,
    idempotency_key: KeyOpt = None,
) -> None:
    """Give a team credits as the operator, with a reason kept in the ledger."""
    receipt = book().plans.gift(
        team_id,
        credits,
        reason=reason,
        operator=operator or _operator(),
        category=category,
        scope=[s.strip() for s in scope.split(",") if s.strip()] if scope else None,
        expires_at=_aware(expires_at),
        adjustment=adjustment,
        idempotency_key=idempotency_key,
    )
    expiry = _when(receipt.expires_at) if receipt.expires_at else "never"
    console.print(
        f"gave {receipt.credits:,} {receipt.category} credits to {team_id} "
        f"([bold]{receipt.grant_id}[/], bucket {receipt.bucket}, expires {expiry})"
    )


@app.command("tick")
def tick(
    batch_size: Annotated[
        int, typer.Option(help="Teams per transaction.", min=1, max=MAX_TICK_BATCH)
    ] = 500,
    processes: Annotated[
        int,
        typer.Option(
            help="Sweeping processes running at once (PostgreSQL; SQLite runs 1).",
            min=1,
            max=MAX_TICK_PROCESSES,
        ),
    ] = 1,
) -> None:
    """Bring every team with something due (period boundaries, expiries) up to date."""
    engine = book()
    if processes > 1 and not engine.parallel_tick_supported():
        console.print(
            f"[yellow]{processes} processes asked, running 1: SQLite allows one writer at a "
            "time (parallel sweeping needs PostgreSQL)[/]"
        )
        processes = 1
    total = count_due(engine.kernel)
    with Progress(
        TextColumn("sweeping due teams"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("tick", total=total)
        done = engine.tick(
            on_team=lambda _t: progress.advance(task), batch_size=batch_size, processes=processes
        )
    console.print(f"{done:,} team(s) brought up to date")
