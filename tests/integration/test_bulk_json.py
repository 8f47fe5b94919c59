"""The JSON arrays the PostgreSQL bulk statements read (``json_rows``): what they accept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from creditbook.adapters.db.repository import json_rows


def test_rows_round_trip_with_nested_documents_and_aware_instants() -> None:
    at = datetime(2026, 11, 25, 10, 30, 0, 123456, tzinfo=UTC)
    rows = [
        {"id": "e1", "credits": 5, "closed": False, "at": at, "receipt": {"a": [1, "x"]}},
        {"id": "e2", "credits": -(2**40), "closed": True, "at": None, "receipt": {}},
    ]

    text = json_rows(rows)

    assert json.loads(text) == [
        {**rows[0], "at": "2026-11-25T10:30:00.123456+00:00"},
        {**rows[1], "at": None},
    ]
    # the same text as isoformat(): PostgreSQL reads it as the same instant
    other_zone = at.astimezone(timezone(timedelta(hours=-5)))
    assert json.loads(json_rows([{"at": other_zone}]))[0]["at"] == other_zone.isoformat()


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        json_rows([{"at": datetime(2026, 11, 25, 10, 30)}])


def test_an_unknown_type_is_refused_not_stringified() -> None:
    with pytest.raises(TypeError, match="cannot write set"):
        json_rows([{"features": {"email_finder"}}])
