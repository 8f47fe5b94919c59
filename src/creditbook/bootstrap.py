"""The one composition root: wires storage, catalog, clock (and later payments, providers).

``open()`` is what ``creditbook.open`` re-exports; the CLI and the HTTP
service call it too, so every entry point runs on the same wiring.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

from sqlalchemy import Engine

from creditbook.adapters.db import migrate
from creditbook.adapters.db.engine import make_engine
from creditbook.adapters.db.repository import SqlUnitOfWork
from creditbook.adapters.net.guard import OutboundGuard
from creditbook.adapters.payments import PaymentProvider, build_payment_provider
from creditbook.catalog import load_catalog
from creditbook.config import OutboundSettings, Settings
from creditbook.domain.catalog import Catalog
from creditbook.domain.clock import Clock, SystemClock
from creditbook.service.access import AccessService
from creditbook.service.credits import Creditbook
from creditbook.service.plans import Plans
from creditbook.service.purchases import install as install_purchases


def open(
    database_url: str | None = None,
    *,
    catalog: Catalog | str | Path | None = None,
    clock: Clock | None = None,
    engine: Engine | None = None,
    upgrade: bool = True,
    payment_provider: PaymentProvider | None = None,
    outbound: OutboundGuard | None = None,
) -> Creditbook:
    """A ready ``Creditbook`` on ``database_url`` (SQLite in the user data dir by default).

    ``upgrade=True`` applies pending migrations first, so a new file works at once.
    ``outbound`` is the policy for the URLs teams set (webhooks); by default it
    comes from ``CREDITBOOK_ENV`` and ``CREDITBOOK_WEBHOOK_ALLOW_PRIVATE``.
    """
    engine = engine or make_engine(database_url)
    if upgrade and not migrate.is_up_to_date(engine):
        migrate.upgrade(engine)
    resolved = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    bound = engine
    book = Creditbook(lambda: SqlUnitOfWork(bound), resolved, clock or SystemClock(), bound)
    # Registers its catch-up and due steps: period grants are issued on any touch.
    book.plans = Plans(book)
    # Purchases, refunds, auto-recharge and alerts; the provider named by
    # CREDITBOOK_PAYMENT_PROVIDER (manual by default) unless one is given.
    book.purchases = install_purchases(
        book,
        payment_provider
        or build_payment_provider(
            os.environ.get("CREDITBOOK_PAYMENT_PROVIDER", "manual"), os.environ
        ),
        guard=outbound or outbound_guard(),
    )
    # Members' and API keys' monthly caps hold on every spend, whichever entry
    # point makes it: the library, the CLI, the API, the dashboard, a job.
    AccessService(book).install()
    return book


def outbound_guard(settings: OutboundSettings | Settings | None = None) -> OutboundGuard:
    """The outbound-URL guard the settings ask for (https outside development)."""
    settings = settings or OutboundSettings()
    return OutboundGuard(
        allow_private=settings.webhook_allow_private,
        require_https=settings.env != "development",
    )


SERVER_YOUNG_THRESHOLD = 20_000


def settle_gc(young_threshold: int = SERVER_YOUNG_THRESHOLD) -> None:
    """Tune Python's garbage collector for a long-running process, once it has started.

    Everything alive now (modules, the catalog, SQLAlchemy's metadata, an
    app's routes and models) lives as long as the process: ``gc.freeze()``
    takes it out of every later collection, so a full collection no longer
    walks it (it made a charge's p99 under load). The young generation's
    threshold goes from 700 allocations to ``young_threshold``: request
    garbage is still collected, in fewer, larger rounds. ``creditbook serve``
    calls this; call it after start-up when you embed the library in a server.
    """
    gc.freeze()
    first, second, third = gc.get_threshold()
    gc.set_threshold(max(first, young_threshold), second, third)
