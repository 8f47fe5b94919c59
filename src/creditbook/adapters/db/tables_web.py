"""Tables of the web area, defined on the shared metadata."""

from __future__ import annotations

from creditbook.adapters.db.tables import metadata

__all__ = ["metadata"]
