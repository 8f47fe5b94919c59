"""``creditbook credits ...``: buy credits, list and refund purchases, alerts and their delivery.

    creditbook credits buy TEAM --package 1k --member ADMIN_ID
    creditbook credits buy TEAM --credits 1234 --member ADMIN_ID
    creditbook credits purchases TEAM [--csv]
    creditbook credits refund TEAM PURCHASE_ID [--member ADMIN_ID]
    creditbook credits alerts TEAM
    creditbook credits deliver-alerts
    creditbook credits sweep [--stalled-minutes 15] [--abandoned-hours 24]

The payment provider is the configured one (``CREDITBOOK_PAYMENT_PROVIDER``,
``manual`` by default). A refund without ``--member`` is made as the operator.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from creditbook.domain.ledger import Actor
from creditbook.domain.limits import MAX_CREDITS, MAX_SWEEP_MINUTES
from creditbook.entrypoints.cli.app import KeyOpt, app, book, console
from creditbook.service.purchases import Purchase

credits_app = typer.Typer(help="Buy credits, purchases, refunds and alerts.", no_args_is_help=True)
app.add_typer(credits_app, name="credits")


def _show(purchase: Purchase, verb: str) -> None:
    console.print(
        f"{verb} [bold]{purchase.id}[/]: {purchase.credits:,} credits for "
        f"{purchase.amount.amount} {purchase.currency} via {purchase.provider}, "
        f"status [bold]{purchase.status}[/]"
        + (f" ({purchase.failure_message})" if purchase.failure_message else "")
    )


@credits_app.command("buy")
def buy(
    team_id: str,
    member: Annotated[str, typer.Option("--member", help="Id of the admin who buys.")],
    package: Annotated[str | None, typer.Option("--package", help="Package name, e.g. 1k.")] = None,
    credits: Annotated[
        int | None, typer.Option("--credits", max=MAX_CREDITS, help="A custom amount.")
    ] = None,
    payment_method: Annotated[
        str | None, typer.Option("--payment-method", help="Provider payment method (pm_...).")
    ] = None,
    idempotency_key: KeyOpt = None,
) -> None:
    """Buy a package or a custom number of credits (team admins only)."""
    purchase = book().purchases.buy(
        team_id,
        credits=credits,
        package=package,
        actor=Actor(member_id=member),
        idempotency_key=idempotency_key,
        payment_method=payment_method,
    )
    _show(purchase, "purchase")


@credits_app.command("purchases")
def purchases(
    team_id: str,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
) -> None:
    """The team's purchases, newest first."""
    service = book().purchases
    if as_csv:
        typer.echo(service.export_csv(team_id), nl=False)
        return
    table = Table(
        "id", "created", "kind", "credits", "amount", "status", "refunded", title="Purchases"
    )
    for p in service.list(team_id):
        table.add_row(
            p.id,
            f"{p.created_at:%Y-%m-%d %H:%M}",
            p.kind,
            f"{p.credits:,}",
            f"{p.amount.amount} {p.currency}",
            p.status,
            f"{p.refunded_credits:,} / {p.refunded_amount.amount}" if p.refunded_credits else "",
        )
    console.print(table)


@credits_app.command("refund")
def refund(
    team_id: str,
    purchase_id: str,
    member: Annotated[
        str | None, typer.Option("--member", help="Admin id; the operator when omitted.")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    idempotency_key: KeyOpt = None,
) -> None:
    """Take back what is left of a purchase's credits and refund that part of its price."""
    actor = Actor(member_id=member) if member else Actor(operator="cli")
    purchase = book().purchases.refund(
        team_id, purchase_id, actor=actor, idempotency_key=idempotency_key, reason=reason
    )
    console.print(
        f"refunded {purchase.refunded_credits:,} credits ({purchase.refunded_amount}) "
        f"of [bold]{purchase.id}[/]"
        + (" - money refund pending, run again to retry" if purchase.refund_pending else "")
    )


@credits_app.command("alerts")
def alerts(
    team_id: str,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
) -> None:
    """The team's alerts (low balance, depleted, purchases...) and their delivery."""
    table = Table("id", "created", "kind", "details", "delivery", title="Alerts")
    for n in book().notifications.list(team_id, limit=limit):
        details = ", ".join(f"{k}={v}" for k, v in n.payload.items())
        table.add_row(n.id, f"{n.created_at:%Y-%m-%d %H:%M}", n.kind, details, n.status)
    console.print(table)


@credits_app.command("deliver-alerts")
def deliver_alerts(
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
) -> None:
    """Post due alerts to the teams' webhooks once (for a scheduler)."""
    report = book().notifications.deliver_due(limit=limit)
    console.print(
        f"delivered {report.delivered}, retrying {report.retrying}, "
        f"failed {report.failed}, in-app only {report.skipped}"
    )


@credits_app.command("sweep")
def sweep(
    stalled_minutes: Annotated[
        int,
        typer.Option(
            "--stalled-minutes", min=1, max=MAX_SWEEP_MINUTES, help="Ask again or fail after this."
        ),
    ] = 15,
    abandoned_hours: Annotated[
        int,
        typer.Option(
            "--abandoned-hours",
            min=1,
            max=MAX_SWEEP_MINUTES // 60,
            help="Fail a started, unpaid purchase.",
        ),
    ] = 24,
) -> None:
    """Settle purchases left pending (for a scheduler, every few minutes)."""
    report = book().purchases.sweep_pending(
        stalled_after=timedelta(minutes=stalled_minutes),
        abandoned_after=timedelta(hours=abandoned_hours),
    )
    console.print(
        f"asked the provider again for {len(report.retried)}, failed {len(report.failed)}"
    )
    for purchase_id in report.retried + report.failed:
        console.print(f"  {purchase_id}")
