"""The whole schema: every table module imported onto one ``metadata``.

Alembic's environment and the schema tests read ``metadata`` from here, so
a table defined in any area module is part of the schema.
"""

from __future__ import annotations

from creditbook.adapters.db import (
    tables,
    tables_access,
    tables_enrichment,
    tables_purchases,
    tables_subscriptions,
    tables_web,
)

metadata = tables.metadata

__all__ = [
    "metadata",
    "tables",
    "tables_access",
    "tables_enrichment",
    "tables_purchases",
    "tables_subscriptions",
    "tables_web",
]
