"""The spend requests keep the idempotency hashes stored before them, and one set of limits.

The golden hashes below were computed by the request dicts creditbook built
before the request types existed (``_charge_parts`` & co.): a retry sent
after an upgrade must match the hash stored with its key.
"""

from __future__ import annotations

import pytest

from creditbook import Actor, Call, load_catalog
from creditbook.domain.ledger import SYSTEM
from creditbook.entrypoints.api import schemas
from creditbook.entrypoints.api.routes_batch import BatchChargeIn, ChargeBatchIn
from creditbook.service.requests import (
    MAX_BATCH_ITEMS,
    MAX_HOLD_TTL_SECONDS,
    MAX_KEY_LENGTH,
    MAX_QUANTITY,
    CaptureRequest,
    ChargeItem,
    ChargeRequest,
    HoldRequest,
    ReleaseRequest,
    SpendRequest,
    request_hash,
)

ALICE = Actor(member_id="mem_1", api_key_id="key_1")
CALL = Call(duration_seconds=61, answered=True, destination="FR")

GOLDEN: list[tuple[SpendRequest, str]] = [
    (
        ChargeRequest("t", "email_finder", 2, "deliverable", None, ALICE, "k"),
        "adbdf8b0b7dcda04360f488a7aec85fc9e9dec5eb0fd90d835b3798b346c4133",
    ),
    (
        ChargeRequest("t", "calling", 1, None, CALL, SYSTEM, "k"),
        "de1313fd96d4e95dd4f1781c0d55fcdf4f73ca400af59769ca7eb5a1069c6407",
    ),
    (
        HoldRequest("t", "phone_finder", 3, 600, None, ALICE, "k"),
        "5a578956a8972ad5691aa5948ac5b3840c5ee895d48da82095513c766cbcabaa",
    ),
    (
        CaptureRequest("t", "hold_1", "found", 2, None, ALICE, "mem_1", "k"),
        "94603028c3ccd5cd8de9015128d9deff41dfd3033e6d9c1ea5b038448f0a077c",
    ),
    (
        CaptureRequest("t", "hold_1", idempotency_key="k"),
        "2ce59dec6d8fc4b814cba9b8a5fe892524006b0dd057ce04132bc96b2593d64f",
    ),
    (
        ReleaseRequest("t", "hold_1", ALICE, None, "k"),
        "304542d78164ad5dfaced3559f123427bc713deb14f03ff04157a85f458c867b",
    ),
    (
        ReleaseRequest("t", "hold_1", idempotency_key="k"),
        "de5b32d4248375207c00a6b53f608b97e58b06fef94bc3d822c04a5960f1e5c6",
    ),
]


@pytest.mark.parametrize(("request_", "stored"), GOLDEN, ids=lambda v: getattr(v, "operation", ""))
def test_each_request_hashes_as_the_hash_stored_before_the_request_types(
    request_: SpendRequest, stored: str
) -> None:
    assert request_hash(request_.operation, request_.canonical()) == stored
    assert request_.command().digest == stored


def test_who_may_settle_a_hold_is_not_part_of_its_hash() -> None:
    mine = CaptureRequest("t", "hold_1", placed_by="mem_1", idempotency_key="k")
    anyone = CaptureRequest("t", "hold_1", idempotency_key="k")
    assert mine.command().digest == anyone.command().digest


def test_a_request_without_a_key_is_not_hashed() -> None:
    assert ChargeRequest("t", "email_finder").command().digest == ""


def test_a_batch_item_is_the_charge_request_of_its_team() -> None:
    item = ChargeItem("email_finder", 2, "deliverable", None, ALICE, "k")
    assert item.request("t") == GOLDEN[0][0]


def test_the_api_schemas_state_the_limits_the_library_declares() -> None:
    catalog = load_catalog()
    assert catalog.limits.max_quantity == MAX_QUANTITY
    assert MAX_HOLD_TTL_SECONDS == catalog.limits.max_hold_ttl_seconds == 86_400
    hold = schemas.HoldCreate.model_json_schema()["properties"]
    assert hold["ttl_seconds"]["anyOf"][0]["maximum"] == MAX_HOLD_TTL_SECONDS
    assert hold["quantity"]["maximum"] == MAX_QUANTITY
    assert schemas.ChargeCreate.model_json_schema()["properties"]["quantity"]["maximum"] == (
        MAX_QUANTITY
    )
    key = BatchChargeIn.model_json_schema()["properties"]["idempotency_key"]["anyOf"][0]
    assert key["maxLength"] == MAX_KEY_LENGTH == 255
    charges = ChargeBatchIn.model_json_schema()["properties"]["charges"]
    assert charges["maxItems"] == MAX_BATCH_ITEMS == 1000
