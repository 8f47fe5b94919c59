"""The one composition root: wires storage, catalog, clock, the kernel, its services, payments.

``open()`` is what ``creditbook.open`` re-exports; the CLI and the HTTP
service call it too, so every entry point runs on the same wiring.
``assemble()`` wires an engine on any unit-of-work factory (the way to build
a ``Creditbook`` by hand). ``sweep_worker`` is what each spawned process of
``tick(processes=N)`` runs.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from creditbook.adapters.db import migrate
from creditbook.adapters.db.engine import make_engine
from creditbook.adapters.db.repository import SqlUnitOfWork
from creditbook.adapters.net.guard import OutboundGuard
from creditbook.adapters.payments import PaymentProvider, build_payment_provider
from creditbook.catalog import load_catalog
from creditbook.config import EngineSettings, OutboundSettings, Settings
from creditbook.domain.catalog import Catalog
from creditbook.domain.clock import Clock, FrozenClock, SystemClock
from creditbook.service.access import AccessService
from creditbook.service.credits import Creditbook
from creditbook.service.kernel import Kernel
from creditbook.service.plans import Plans
from creditbook.service.purchases import install as install_purchases
from creditbook.service.spending import Spending
from creditbook.service.sweep import sweep_batches
from creditbook.service.teams import Teams


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
    The payment provider is the one ``CREDITBOOK_PAYMENT_PROVIDER`` names (manual
    by default) unless one is given. ``outbound`` is the policy for the URLs teams
    set (webhooks); by default it comes from ``CREDITBOOK_ENV`` and
    ``CREDITBOOK_WEBHOOK_ALLOW_PRIVATE``. ``CREDITBOOK_GROUP_COMMIT=1`` turns group
    commit on (``Creditbook.enable_group_commit``).
    """
    engine = engine or make_engine(database_url)
    if upgrade and not migrate.is_up_to_date(engine):
        migrate.upgrade(engine)
    resolved = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    settings = EngineSettings()
    bound = engine
    book = assemble(
        lambda: SqlUnitOfWork(bound),
        resolved,
        clock or SystemClock(),
        engine=bound,
        payment_provider=payment_provider
        or build_payment_provider(settings.payment_provider, settings.payment_settings()),
        outbound=outbound or outbound_guard(),
    )
    if settings.group_commit:
        book.enable_group_commit()
    return book


def assemble(
    uow: Callable[[], SqlUnitOfWork],
    catalog: Catalog,
    clock: Clock,
    *,
    engine: Engine | None = None,
    payment_provider: PaymentProvider | None = None,
    outbound: OutboundGuard | None = None,
) -> Creditbook:
    """Wire a ``Creditbook`` on ``uow``: the kernel, then each service over it, in order.

    Plans register their catch-up and due steps (period grants are issued on
    any touch); purchases their alert and auto-recharge guard and hooks (the
    manual provider unless one is given); access its cap guard, so members'
    and keys' monthly caps hold on every spend, whichever entry point makes it.
    """
    kernel = Kernel(uow, catalog, clock)
    spending = Spending(kernel)
    teams = Teams(kernel)
    plans = Plans(kernel, spending)
    purchases = install_purchases(kernel, payment_provider, guard=outbound)
    access = AccessService(kernel, teams).install()
    return Creditbook(
        kernel,
        plans=plans,
        purchases=purchases,
        access=access,
        engine=engine,
        sweep_worker=sweep_worker,
    )


def sweep_worker(
    index: int,
    url: str,
    catalog: Catalog,
    now: datetime,
    batch_size: int,
    send_ids: bool,
    reports: Any,
) -> None:
    """One sweeping process of ``tick(processes=N)``: reports each batch, then ``done``."""
    try:
        book = open(url, catalog=catalog, clock=FrozenClock(now), upgrade=False)
        try:
            sweep_batches(
                book.kernel,
                now,
                batch_size,
                lambda ids: reports.put(("batch", index, len(ids), ids if send_ids else [])),
            )
        finally:
            if book.engine is not None:
                book.engine.dispose()
    except BaseException as exc:
        reports.put(("error", index, 0, [f"{type(exc).__name__}: {exc}"]))
        return
    reports.put(("done", index, 0, []))


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
