"""``creditbook key ...`` and ``creditbook member cap``: API keys and monthly caps, for operators.

    creditbook key issue TEAM MEMBER_ID [--label crm] [--monthly-cap 500] [--service]
    creditbook key list TEAM [--member MEMBER_ID]
    creditbook key cap TEAM KEY_ID 500        (or --none to remove the cap)
    creditbook key revoke TEAM KEY_ID
    creditbook member cap TEAM MEMBER_ID 500  (or --none)

A new key is printed once and never stored; only its hash is. A cap bounds
what is spent per cap month (the team's billing period, else the calendar
month in its time zone), active holds included. A service key (``--service``)
is for the platform's own code: it spends, settles any hold and sees every
enrichment job of its team, and reaches no admin endpoint.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from creditbook.domain.errors import InvalidInput
from creditbook.domain.limits import MAX_CREDITS
from creditbook.entrypoints.cli.app import app, book, console, member_app
from creditbook.service.access import AccessService, KeyInfo, KeyKind

key_app = typer.Typer(help="API keys and their monthly caps.", no_args_is_help=True)
app.add_typer(key_app, name="key")

NoCap = Annotated[bool, typer.Option("--none", help="Remove the cap.")]


def _access() -> AccessService:
    return AccessService(book().kernel)


def _cap_value(credits: int | None, none: bool) -> int | None:
    """The cap the command line asks for: ``credits``, or None with ``--none``; one of the two."""
    if none == (credits is not None):
        raise InvalidInput(
            "give a cap in credits (0 or more), or --none to remove the cap", field="monthly_cap"
        )
    return credits


def _cap_text(cap: int | None) -> str:
    return "no cap" if cap is None else f"{cap:,} credits a month"


@key_app.command("issue")
def issue(
    team_id: str,
    member_id: str,
    label: Annotated[str | None, typer.Option("--label", help="What the key is for.")] = None,
    monthly_cap: Annotated[
        int | None,
        typer.Option(
            "--monthly-cap", max=MAX_CREDITS, help="Credits spent through the key a month."
        ),
    ] = None,
    service: Annotated[
        bool,
        typer.Option(
            "--service",
            help="A service key, for the platform's code: spends and settles any hold of the "
            "team, sees every job, is no admin.",
        ),
    ] = False,
) -> None:
    """A new API key for a member, printed once."""
    kind = KeyKind.SERVICE if service else KeyKind.PERSONAL
    key = _access().issue_key(team_id, member_id, label=label, monthly_cap=monthly_cap, kind=kind)
    console.print(
        f"issued {kind.value} key [bold]{key.key_id}[/] for {key.member_id}, "
        f"{_cap_text(monthly_cap)}"
    )
    console.print(f"api key (shown once, store it now): {key.api_key}", soft_wrap=True)


@key_app.command("list")
def list_keys(
    team_id: str,
    member: Annotated[str | None, typer.Option("--member", help="Only this member's keys.")] = None,
) -> None:
    """The team's API keys, their caps and what was spent through them this month."""
    access = _access()
    table = Table(
        "key",
        "member",
        "kind",
        "label",
        "monthly cap",
        "spent this month",
        "revoked",
        title="API keys",
    )
    for k in access.list_keys(team_id, member):
        spent = access.key_usage_this_month(team_id, k.key_id)
        table.add_row(
            k.key_id,
            k.member_id,
            k.kind.value,
            k.label or "",
            "-" if k.monthly_cap is None else f"{k.monthly_cap:,}",
            f"{spent:,}",
            k.revoked_at.isoformat() if k.revoked_at else "",
        )
    console.print(table)


@key_app.command("cap")
def cap_key(
    team_id: str,
    key_id: str,
    credits: Annotated[
        int | None, typer.Argument(max=MAX_CREDITS, help="Credits a month (0 or more).")
    ] = None,
    none: NoCap = False,
) -> None:
    """Set or remove the monthly cap of an API key."""
    key: KeyInfo = _access().set_key_cap(team_id, key_id, _cap_value(credits, none))
    console.print(f"key [bold]{key.key_id}[/]: {_cap_text(key.monthly_cap)}")


@key_app.command("revoke")
def revoke(team_id: str, key_id: str) -> None:
    """Revoke an API key: it stops working at once."""
    key = _access().revoke_key(team_id, key_id)
    console.print(f"revoked [bold]{key.key_id}[/] at {key.revoked_at}")


@member_app.command("cap")
def cap_member(
    team_id: str,
    member_id: str,
    credits: Annotated[
        int | None, typer.Argument(max=MAX_CREDITS, help="Credits a month (0 or more).")
    ] = None,
    none: NoCap = False,
) -> None:
    """Set or remove a member's monthly cap."""
    member = _access().update_member(team_id, member_id, monthly_cap=_cap_value(credits, none))
    console.print(f"{member.email}: {_cap_text(member.monthly_cap)}")
