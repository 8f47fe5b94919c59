"""The ``creditbook`` command: Typer commands over the library, Rich for output.

Every ``CreditbookError`` becomes one red line on stderr and the error's
exit code; nothing else (no traceback) reaches the user for bad input.
Area modules register their commands on ``app`` (see ``register``).
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from creditbook.bootstrap import open as open_book
from creditbook.domain.book import Balance
from creditbook.domain.errors import AuditFailed, CreditbookError
from creditbook.domain.ledger import Actor, Entry
from creditbook.domain.limits import (
    MAX_CALL_SECONDS,
    MAX_CREDITS,
    MAX_HOLD_TTL_SECONDS,
    MAX_PAGE,
    MAX_QUANTITY,
)
from creditbook.domain.pricing import Call
from creditbook.service.credits import Creditbook

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def _fit_output() -> None:
    """Off a terminal (pipes, logs, tests) give tables room for ids, for grep and programs."""
    if not sys.stdout.isatty():
        width = os.environ.get("COLUMNS", "")
        console.width = err_console.width = int(width) if width.isdigit() else 200


app = typer.Typer(
    name="creditbook",
    help="creditbook: a credits engine. Teams, grants, charges, holds and an audited ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
team_app = typer.Typer(help="Teams.", no_args_is_help=True)
member_app = typer.Typer(help="Team members.", no_args_is_help=True)
app.add_typer(team_app, name="team")
app.add_typer(member_app, name="member")


class State:
    database_url: str | None = None
    catalog: Path | None = None
    _book: Creditbook | None = None

    @classmethod
    def book(cls) -> Creditbook:
        if cls._book is None:
            cls._book = open_book(cls.database_url, catalog=cls.catalog)
        return cls._book


def book() -> Creditbook:
    """The engine for this invocation, opened on first use."""
    return State.book()


@app.callback()
def _options(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="CREDITBOOK_DATABASE_URL",
            help="SQLAlchemy URL; SQLite in the user data directory by default.",
        ),
    ] = None,
    catalog: Annotated[
        Path | None,
        typer.Option("--catalog", envvar="CREDITBOOK_CATALOG", help="Catalog TOML file."),
    ] = None,
) -> None:
    State.database_url = database_url
    State.catalog = catalog
    State._book = None


def actor_from(member: str | None, key: str | None = None, job: str | None = None) -> Actor:
    return Actor(member_id=member, api_key_id=key, job_id=job, operator=None if member else "cli")


MemberOpt = Annotated[str | None, typer.Option("--member", help="Member id to attribute to.")]
KeyOpt = Annotated[str | None, typer.Option("--idempotency-key", help="Retry-safe key.")]


# ---- teams and members ---------------------------------------------------------------


@team_app.command("create")
def team_create(
    name: str,
    time_zone: Annotated[str, typer.Option("--time-zone", help="IANA time zone.")] = "UTC",
) -> None:
    """Create a team; prints its id."""
    team = book().create_team(name, time_zone=time_zone)
    console.print(f"created team [bold]{team.id}[/] ({team.name}, {team.time_zone})")


@member_app.command("add")
def member_add(
    team_id: str,
    email: str,
    role: Annotated[str, typer.Option("--role", help="admin or member.")] = "member",
) -> None:
    """Add a member to a team."""
    member = book().add_member(team_id, email, role)
    console.print(f"added {member.email} as {member.role.value} ([bold]{member.id}[/])")


@member_app.command("list")
def member_list(team_id: str) -> None:
    table = Table("id", "email", "role", "monthly cap", title="Members")
    for m in book().members(team_id):
        table.add_row(
            m.id, m.email, m.role.value, "-" if m.monthly_cap is None else str(m.monthly_cap)
        )
    console.print(table)


# ---- credits ------------------------------------------------------------------------


@app.command("grant")
def grant(
    team_id: str,
    credits: Annotated[int, typer.Argument(max=MAX_CREDITS, help="Credits to give.")],
    category: Annotated[str, typer.Option(help="free or purchased.")] = "free",
    source: Annotated[str, typer.Option(help="gift, adjustment, purchase, plan, trial.")] = "gift",
    scope: Annotated[
        str | None, typer.Option(help="Comma-separated features; all features by default.")
    ] = None,
    expires_at: Annotated[
        datetime | None, typer.Option(help="Expiry (ISO 8601, UTC if no offset).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the ledger).")] = None,
    idempotency_key: KeyOpt = None,
) -> None:
    """Give a team credits."""
    receipt = book().grant(
        team_id,
        credits,
        category=category,
        source=source,
        scope=[s.strip() for s in scope.split(",")] if scope else None,
        expires_at=_aware(expires_at),
        reason=reason,
        actor=Actor(operator="cli"),
        idempotency_key=idempotency_key,
    )
    expiry = receipt.expires_at.isoformat() if receipt.expires_at else "never"
    console.print(
        f"granted {receipt.credits} {receipt.category} credits ([bold]{receipt.grant_id}[/], "
        f"bucket {receipt.bucket}, expires {expiry})"
    )


@app.command("charge")
def charge(
    team_id: str,
    feature: str,
    quantity: Annotated[int, typer.Option(max=MAX_QUANTITY, help="Leads or requests.")] = 1,
    outcome: Annotated[str | None, typer.Option(help="The result; billable ones cost.")] = None,
    duration: Annotated[
        int | None, typer.Option(max=MAX_CALL_SECONDS, help="Call duration in seconds.")
    ] = None,
    answered: Annotated[bool, typer.Option(help="Was the call answered?")] = True,
    destination: Annotated[str | None, typer.Option(help="Call tier or country code.")] = None,
    member: MemberOpt = None,
    idempotency_key: KeyOpt = None,
) -> None:
    """Charge a feature use whose outcome is known."""
    call = Call(duration, answered, destination) if duration is not None else None
    receipt = book().charge(
        team_id,
        feature,
        quantity=quantity,
        outcome=outcome,
        call=call,
        actor=actor_from(member),
        idempotency_key=idempotency_key,
    )
    paid = ", ".join(f"{d.credits} from {d.bucket} ({d.grant_id})" for d in receipt.grants)
    console.print(
        f"charged [bold]{receipt.credits}[/] credits for {receipt.feature} "
        f"({receipt.outcome}) {receipt.charge_id}" + (f": {paid}" if paid else "")
    )


@app.command("hold")
def hold(
    team_id: str,
    feature: str,
    quantity: Annotated[
        int, typer.Option(max=MAX_QUANTITY, help="Leads, requests or call minutes.")
    ] = 1,
    ttl: Annotated[
        int | None, typer.Option(max=MAX_HOLD_TTL_SECONDS, help="Seconds before it is released.")
    ] = None,
    destination: Annotated[str | None, typer.Option(help="Call tier or country code.")] = None,
    member: MemberOpt = None,
    idempotency_key: KeyOpt = None,
) -> None:
    """Reserve credits before doing the work."""
    call = Call(0, True, destination) if destination else None
    receipt = book().hold(
        team_id,
        feature,
        quantity=quantity,
        ttl_seconds=ttl,
        call=call,
        actor=actor_from(member),
        idempotency_key=idempotency_key,
    )
    console.print(
        f"held [bold]{receipt.credits}[/] credits: [bold]{receipt.hold_id}[/] "
        f"(expires {receipt.expires_at.isoformat()})"
    )


@app.command("capture")
def capture(
    team_id: str,
    hold_id: str,
    outcome: Annotated[str | None, typer.Option(help="The result.")] = None,
    quantity: Annotated[
        int | None, typer.Option(max=MAX_QUANTITY, help="Uses to charge (<= held).")
    ] = None,
    duration: Annotated[
        int | None, typer.Option(max=MAX_CALL_SECONDS, help="Call duration in seconds.")
    ] = None,
    answered: Annotated[bool, typer.Option(help="Was the call answered?")] = True,
    idempotency_key: KeyOpt = None,
) -> None:
    """Charge a hold (never more than it holds); the rest returns."""
    call = Call(duration, answered, None) if duration is not None else None
    receipt = book().capture(
        team_id,
        hold_id,
        outcome=outcome,
        quantity=quantity,
        call=call,
        idempotency_key=idempotency_key,
    )
    console.print(
        f"captured [bold]{receipt.credits}[/] credits of {hold_id}; {receipt.returned} returned"
    )


@app.command("release")
def release(team_id: str, hold_id: str, idempotency_key: KeyOpt = None) -> None:
    """Release a hold: every held credit returns."""
    receipt = book().release(team_id, hold_id, idempotency_key=idempotency_key)
    console.print(f"released {receipt.released} credits of {hold_id}")


def balance_table(balance: Balance, title: str = "Balance") -> Table:
    table = Table("bucket", "credits", title=title)
    for bucket, credits in balance.buckets.items():
        table.add_row(bucket, f"{credits:,}")
    table.add_row("[bold]available[/]", f"[bold]{balance.available:,}[/]")
    table.add_row("reserved (held)", f"{balance.reserved:,}")
    for item in balance.expiring:
        table.add_row(
            f"  expires {item.expires_at:%Y-%m-%d %H:%M} UTC", f"{item.credits:,} {item.bucket}"
        )
    return table


@app.command("balance")
def balance(team_id: str) -> None:
    """Available credits by bucket, reserved credits and what expires when."""
    console.print(balance_table(book().balance(team_id)))


def ledger_table(entries: tuple[Entry, ...] | list[Entry], title: str = "Ledger") -> Table:
    table = Table(
        "time (UTC)", "kind", "feature", "outcome", "credits", "grants", "by", title=title
    )
    for e in entries:
        grants = ", ".join(f"{p.account.value}{p.amount:+d}" for p in e.postings if p.amount > 0)
        table.add_row(
            f"{e.created_at:%Y-%m-%d %H:%M:%S}",
            e.kind.value,
            e.feature or "",
            e.outcome or "",
            str(e.credits),
            grants,
            e.actor.describe(),
        )
    return table


@app.command("ledger")
def ledger(
    team_id: str,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_PAGE, help="Entries to show (newest first).")
    ] = 50,
    feature: Annotated[str | None, typer.Option(help="Only this feature.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind of entry.")] = None,
    member: MemberOpt = None,
) -> None:
    """The team's ledger entries, newest first."""
    page = book().ledger(team_id, limit=limit, feature=feature, kind=kind, member_id=member)
    console.print(ledger_table(page.entries))
    if page.next_cursor:
        console.print(f"[dim]more entries before {page.next_cursor}[/]")


@app.command("audit")
def audit(
    team_id: Annotated[str | None, typer.Argument(help="One team; all by default.")] = None,
) -> None:
    """Recompute every balance from the ledger; non-zero exit on any disagreement."""
    report = book().audit(team_id)
    if not report.clean:
        for problem in report.problems:
            err_console.print(f"[red]{problem}[/]")
        raise AuditFailed(f"audit failed: {len(report.problems)} problem(s)")
    console.print(
        f"[green]audit clean[/]: {report.teams} team(s), {report.grants} grant(s), "
        f"{report.entries} entries agree with the ledger"
    )


def _aware(when: datetime | None) -> datetime | None:
    from datetime import UTC

    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def register() -> None:
    """Import the area modules so their commands attach to ``app``."""
    from creditbook.entrypoints.cli import (
        db,  # noqa: F401
        demo,  # noqa: F401
        enrich,  # noqa: F401
        keys,  # noqa: F401
        plans,  # noqa: F401
        purchases,  # noqa: F401
        serve,  # noqa: F401
    )


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: runs the app and turns errors into exit codes.

    Usage errors are Click's (exit 2, with help); ``SystemExit`` passes through.
    """
    register()
    _fit_output()
    try:
        app(args=argv, prog_name="creditbook")
    except CreditbookError as exc:
        err_console.print(f"[red]error[/] ({exc.code}): {exc.message}")
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
