"""Whole-table SELECTs run on sqlite3 directly, decoded as SQLAlchemy would decode them.

The group committer reads a batch's teams, idempotency keys, grants and
settings before applying it. On SQLite each of those reads went through
SQLAlchemy Core: building the statement, its cache key, the execution context
and the row processing cost 60 to 250 microseconds per statement, about 470 per
batch, whatever the batch's size: a third of the time of a batch of 8 charges.
A ``SqliteSelect`` keeps one statement text per table and decodes each column
from the table's own types (``UTCDateTime``, ``Boolean``, ``JSON``), so its rows
hold the same values a SQLAlchemy ``select`` returns (see test_sqlite_reads).
"""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Table

from creditbook.adapters.db.tables import UTCDateTime

Decoder = Callable[[Any], Any]


def _instant(text: Any) -> datetime | None:
    # SQLite keeps naive UTC text (see UTCDateTime.process_bind_param).
    if text is None:
        return None
    value = datetime.fromisoformat(text) if isinstance(text, str) else text
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _document(text: Any) -> Any:
    return None if text is None else json.loads(text)


def _decoder(column_type: Any) -> Decoder | None:
    """How a raw sqlite3 value of ``column_type`` becomes SQLAlchemy's value (None: as is)."""
    if isinstance(column_type, UTCDateTime):
        return _instant
    if isinstance(column_type, Boolean):
        return _flag
    if isinstance(column_type, JSON):
        return _document
    return None


def placeholders(count: int) -> str:
    """``?, ?, ...`` for an ``IN`` list of ``count`` values."""
    return ", ".join("?" * count)


class SqliteSelect:
    """``SELECT <columns> FROM <table> WHERE ...`` on the sqlite3 connection, typed rows out.

    Rows are named tuples (attribute access like SQLAlchemy's ``Row``) in
    ``columns`` order, or every column of the table in its order.
    """

    def __init__(self, table: Table, columns: Sequence[str] | None = None) -> None:
        names = list(columns) if columns is not None else [c.name for c in table.columns]
        self.columns = tuple(names)
        self.row_type: Any = namedtuple(f"{table.name}_row", names)  # type: ignore[misc]
        self._decoders = [
            (index, decode)
            for index, name in enumerate(names)
            if (decode := _decoder(table.c[name].type)) is not None
        ]
        quoted = ", ".join(f'"{name}"' for name in names)
        self._select = f'SELECT {quoted} FROM "{table.name}" WHERE '

    def rows(self, raw: Any, where: str, params: Sequence[Any]) -> list[Any]:
        """The rows matching ``where`` (SQL with ``?`` parameters), decoded."""
        found = raw.execute(self._select + where, params).fetchall()
        if not self._decoders:
            return [self.row_type._make(r) for r in found]
        out = []
        make = self.row_type._make
        decoders = self._decoders
        for r in found:
            values = list(r)
            for index, decode in decoders:
                values[index] = decode(values[index])
            out.append(make(values))
        return out
