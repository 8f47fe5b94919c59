"""On SQLite the group-commit path writes entries, postings and receipts with the
driver's executemany, skipping SQLAlchemy's bind processing. The stored rows must
be exactly what SQLAlchemy would have written: same text for instants (they are
compared and sorted in SQL), same JSON, and read back as the same entries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import insert

import creditbook
from creditbook.adapters.db.repository import (
    SqlUnitOfWork,
    entry_to_row,
    sqlite_time,
)
from creditbook.adapters.db.tables import idempotency_keys, ledger_entries, ledger_postings
from creditbook.domain.ledger import Account, Actor, Entry, EntryKind, Posting

# An instant given in another offset: both paths must store it as UTC.
AT = datetime(2026, 3, 1, 10, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))


def _entry(entry_id: str = "ent_01", meta: dict[str, str] | None = None) -> Entry:
    return Entry(
        id=entry_id,
        team_id="team_a",
        kind=EntryKind.CHARGE,
        created_at=AT,
        postings=(
            Posting("grt_1", Account.AVAILABLE, -5),
            Posting("grt_1", Account.USED, 5),
        ),
        credits=5,
        actor=Actor(member_id="mem_1", api_key_id="key_1", job_id=None, operator=None),
        feature="email_finder",
        quantity=1,
        outcome="deliverable",
        unit_cost=5,
        multiplier=1,
        idempotency_key="k-1",
        memo="a memo with ünïcode",
        meta={"source": "api", "note": "relancé"} if meta is None else meta,
    )


def _receipt() -> dict[str, Any]:
    return {
        "team_id": "team_a",
        "key": "k-1",
        "request_hash": "a" * 64,
        "operation": "charge",
        "response": {"credits": 5, "memo": "numéro", "grants": [{"id": "grt_1", "credits": 5}]},
        "created_at": AT,
    }


def _rows(uow: SqlUnitOfWork, table: str, order: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in uow.conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY {order}")]


def _open(tmp_path: Path, name: str) -> creditbook.Creditbook:
    return creditbook.open(f"sqlite:///{tmp_path / name}")


def test_raw_rows_are_the_rows_sqlalchemy_writes(tmp_path: Path) -> None:
    by_sqlalchemy, by_driver = _open(tmp_path, "a.db"), _open(tmp_path, "b.db")
    # The second entry's meta is empty: the driver path writes its text without the encoder.
    entries = [_entry(), _entry("ent_02", meta={})]
    with by_sqlalchemy.uow() as uow:
        uow.conn.execute(insert(ledger_entries), [entry_to_row(e) for e in entries])
        uow.conn.execute(
            insert(ledger_postings),
            [
                {
                    "team_id": entry.team_id,
                    "entry_id": entry.id,
                    "seq": seq,
                    "grant_id": p.grant_id,
                    "account": p.account.value,
                    "amount": p.amount,
                }
                for entry in entries
                for seq, p in enumerate(entry.postings)
            ],
        )
        uow.conn.execute(insert(idempotency_keys), [_receipt()])
        uow.commit()
    with by_driver.uow() as uow:
        uow.insert_entries(entries)
        uow.put_idempotency_many([_receipt()])
        uow.commit()

    with by_sqlalchemy.uow() as a, by_driver.uow() as b:
        for table, order in (
            ("ledger_entries", "id"),
            ("ledger_postings", "entry_id, seq"),
            ("idempotency_keys", "key"),
        ):
            want, got = _rows(a, table, order), _rows(b, table, order)
            least = 1 if table == "idempotency_keys" else 2
            assert len(want) == len(got) >= least
            for w, g in zip(want, got, strict=True):
                # JSON may differ in spacing and escapes only (the driver path writes
                # orjson's compact UTF-8); everything else byte for byte.
                assert [_decoded(x) for x in w] == [_decoded(x) for x in g], table
        assert _rows(b, "ledger_entries", "id")[0][3] == "2026-03-01 08:30:05.123456"
        assert _rows(b, "ledger_entries", "id")[1][-1] == "{}"
        assert a.list_entries("team_a", limit=10) == b.list_entries("team_a", limit=10)
        assert b.list_entries("team_a", limit=10)[0].created_at == AT


def _decoded(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        return json.loads(value)
    return value


def test_sqlite_time_refuses_a_naive_instant_and_writes_utc() -> None:
    assert sqlite_time(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01 00:00:00.000000"
    assert sqlite_time(None) is None
    try:
        sqlite_time(datetime(2026, 1, 1))
    except ValueError as exc:
        assert "naive" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("a naive datetime was accepted")
