"""Many charges in one request and one transaction: ``POST /v1/charges:batch``.

The body lists up to ``MAX_ITEMS`` charges of the caller's team, each with
its own optional ``idempotency_key``. They run through
``Creditbook.charge_many``: one database transaction, applied in order; an
item that fails (insufficient credits, cap, unknown feature, key conflict)
fails alone and changes nothing. The answer is ``200`` with one result per
item, in order: ``{"status": 201, "body": <charge>}`` or
``{"status": 4xx, "body": <problem details>}``, the same status and body the
item would get from ``POST /v1/charges``. A retried item (same key, same
charge) answers its first receipt, here or through ``POST /v1/charges``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from creditbook.domain.errors import CreditbookError, DatabaseUnavailable
from creditbook.entrypoints.api.deps import KeyFirst, MemberDep, ServicesDep, actor_of
from creditbook.entrypoints.api.logs import request_id_var
from creditbook.entrypoints.api.problems import problem_responses
from creditbook.entrypoints.api.routes_credits import _call
from creditbook.entrypoints.api.schemas import ChargeCreate, ChargeOut
from creditbook.service.requests import MAX_BATCH_ITEMS, MAX_KEY_LENGTH, ChargeRequest

MAX_ITEMS = MAX_BATCH_ITEMS
_RESERVED = {"type", "title", "status", "detail", "code", "instance", "request_id"}

router = APIRouter(
    tags=["credits"], responses=problem_responses(401, 403, 422, 429), route_class=KeyFirst
)


class BatchChargeIn(ChargeCreate):
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description="Makes this item safe to retry (as the Idempotency-Key header of "
        "POST /v1/charges, with which it is interchangeable).",
    )


class ChargeBatchIn(BaseModel):
    charges: list[BatchChargeIn] = Field(min_length=1, max_length=MAX_ITEMS)


class ItemResult(BaseModel):
    status: int = Field(description="201, or the problem's status")
    body: dict[str, Any] = Field(description="the charge, or RFC 9457 problem details")


class ChargeBatchOut(BaseModel):
    results: list[ItemResult]
    succeeded: int
    failed: int


def _problem(exc: CreditbookError, request: Request) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:creditbook:problem:{exc.code}",
        "title": exc.title,
        "status": exc.status,
        "detail": exc.message,
        "code": exc.code,
        "instance": request.url.path,
        "request_id": request_id_var.get(),
    }
    for key, value in exc.details.items():
        if key not in _RESERVED:
            body[key] = value
    encoded: dict[str, Any] = jsonable_encoder(body)
    return encoded


@router.post("/v1/charges:batch", response_model=ChargeBatchOut)
def charge_batch(
    body: ChargeBatchIn, request: Request, svc: ServicesDep, me: MemberDep
) -> ChargeBatchOut:
    """Up to 1,000 charges of the caller's team in one transaction; a result per item."""
    actor = actor_of(me)
    team_id = me.team_id
    items = [
        ChargeRequest(
            team_id, c.feature, c.quantity, c.outcome, _call(c.call), actor, c.idempotency_key
        )
        for c in body.charges
    ]
    outcomes = svc.book.charge_many(me.team_id, items)
    unavailable = [o for o in outcomes if isinstance(o, DatabaseUnavailable)]
    if unavailable and len(unavailable) == len(outcomes):
        raise unavailable[0]  # the batch's one transaction met an outage: 503, as any route
    results: list[ItemResult] = []
    for outcome in outcomes:
        if isinstance(outcome, CreditbookError):
            results.append(ItemResult(status=outcome.status, body=_problem(outcome, request)))
        else:
            results.append(
                ItemResult(status=201, body=jsonable_encoder(ChargeOut.of(outcome).model_dump()))
            )
    ok = sum(1 for r in results if r.status == 201)
    return ChargeBatchOut(results=results, succeeded=ok, failed=len(results) - ok)
