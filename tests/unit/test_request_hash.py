"""The request hash stored with every idempotency key must never change between releases.

A retry sent after an upgrade is compared with the hash stored before it: a hash
written differently would answer 409 idempotency_conflict to an honest retry.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from creditbook.service.requests import request_hash

REQUEST: dict[str, Any] = {
    "feature": "email_finder",
    "quantity": 1,
    "outcome": "deliverable",
    "call": None,
    "actor": {"member": "mem_1", "key": "key_1", "job": None, "operator": None},
    "memo": "café ✓",
    "at": datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
}


def test_the_hash_of_a_known_request_is_the_one_stored_by_earlier_releases() -> None:
    expected = "311b19be6c11f79d1e11a97bf44cf91a2bb3a173a9b9b0877eca38eb4579a40c"
    assert request_hash("charge", REQUEST) == expected


def _first_release_hash(operation: str, request: dict[str, Any]) -> str:
    canonical = json.dumps({"op": operation, **request}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.text(min_size=1), st.dictionaries(st.text().filter(lambda k: k != "op"), values))
def test_every_request_hashes_as_the_first_release_did(
    operation: str, request: dict[str, Any]
) -> None:
    assert request_hash(operation, request) == _first_release_hash(operation, request)
