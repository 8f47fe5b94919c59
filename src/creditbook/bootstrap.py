"""The one composition root: wires storage, catalog, clock (and later payments, providers).

``open()`` is what ``creditbook.open`` re-exports; the CLI and the HTTP
service call it too, so every entry point runs on the same wiring.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from creditbook.adapters.db import migrate
from creditbook.adapters.db.engine import make_engine
from creditbook.adapters.db.repository import SqlUnitOfWork
from creditbook.catalog import load_catalog
from creditbook.domain.catalog import Catalog
from creditbook.domain.clock import Clock, SystemClock
from creditbook.service.credits import Creditbook


def open(
    database_url: str | None = None,
    *,
    catalog: Catalog | str | Path | None = None,
    clock: Clock | None = None,
    engine: Engine | None = None,
    upgrade: bool = True,
) -> Creditbook:
    """A ready ``Creditbook`` on ``database_url`` (SQLite in the user data dir by default).

    ``upgrade=True`` applies pending migrations first, so a new file works at once.
    """
    engine = engine or make_engine(database_url)
    if upgrade and not migrate.is_up_to_date(engine):
        migrate.upgrade(engine)
    resolved = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    bound = engine
    return Creditbook(lambda: SqlUnitOfWork(bound), resolved, clock or SystemClock(), bound)
