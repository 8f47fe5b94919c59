"""``creditbook serve``: the HTTP API under uvicorn; ``creditbook idempotency purge``.

The server logs JSON lines (with each request's id) to stderr. Settings come
from ``CREDITBOOK_*`` variables (operator key, rate limits, ...);
``--database-url`` overrides ``CREDITBOOK_DATABASE_URL``. Without
``CREDITBOOK_PUBLIC_URL`` (refused in production) the public URL is the
address served, ``http://HOST:PORT``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from creditbook.config import Settings
from creditbook.domain.limits import MAX_RETENTION_DAYS
from creditbook.entrypoints.cli.app import State, app, book, console, err_console
from creditbook.service.access import AccessService

idempotency_app = typer.Typer(help="Idempotency keys.", no_args_is_help=True)
app.add_typer(idempotency_app, name="idempotency")


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65_535, help="TCP port.")] = 8000,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="SQLAlchemy URL (overrides the global option)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run the HTTP API (docs at /docs, schema at /openapi.json)."""
    import uvicorn

    from creditbook.adapters.db import migrate
    from creditbook.adapters.db.engine import make_engine
    from creditbook.bootstrap import open as open_book
    from creditbook.bootstrap import outbound_guard, settle_gc
    from creditbook.entrypoints.api import create_app
    from creditbook.entrypoints.api.logs import log_config

    settings = Settings().served_at(host, port)
    settings.check_served()  # before the database is opened
    warn_if_weak_operator_key(settings)
    url = database_url or State.database_url or settings.database_url
    engine = make_engine(
        url,
        busy_timeout=settings.database_busy_timeout_seconds,
        connect_timeout=settings.database_connect_timeout_seconds,
    )
    migrate.require_head(engine, create_new=True)  # refuses a database behind or ahead
    engine_book = open_book(
        engine=engine,
        catalog=State.catalog or settings.catalog,
        outbound=outbound_guard(settings),
        upgrade=False,
    )
    if settings.group_commit:
        # Replaces the committer CREDITBOOK_GROUP_COMMIT=1 may have started in open().
        engine_book.enable_group_commit(on_loop=settings.group_commit_on_loop)
    application = create_app(engine_book, settings)
    settle_gc()  # what exists now lives as long as the server: see its docstring
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_config=log_config(log_level.upper(), settings.outage_log_interval_seconds),
        access_log=False,
    )


def warn_if_weak_operator_key(settings: Settings) -> None:
    """Development serves with a short operator key, but says so (elsewhere it is refused)."""
    if settings.env == "development" and settings.operator_key and settings.weak_operator_key:
        err_console.print(
            "[yellow]warning[/]: CREDITBOOK_OPERATOR_KEY is shorter than 32 characters; "
            "served only because CREDITBOOK_ENV=development (any other env refuses it)"
        )


@idempotency_app.command("purge")
def purge(
    older_than_days: Annotated[
        int,
        typer.Option(
            min=30, max=MAX_RETENTION_DAYS, help="Delete keys older than this (at least 30 days)."
        ),
    ] = 30,
) -> None:
    """Delete idempotency keys older than N days (they are kept at least 30)."""
    removed = AccessService(book().kernel).purge_idempotency_keys(timedelta(days=older_than_days))
    console.print(f"removed {removed} idempotency keys older than {older_than_days} days")
