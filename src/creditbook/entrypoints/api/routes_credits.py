"""Balance, charges and holds of the caller's team (any team key).

Each POST that moves credits passes ``Idempotency-Key`` to the library,
which stores the receipt with the key and answers it again on a retry: the
same body gives the same status and body with no second effect. The library
hashes the parameters it receives, which are the parsed body (defaults
filled in) and the calling key, so the same body always hashes the same.

A member's key reads, captures and releases only the holds its member
placed (any other answers 404, as a hold of another team); admins' and
service keys settle any hold of the team. A capture or release is booked to
the hold's owner whoever settles it (``Creditbook.capture``).

Charges, holds, captures and releases are ``async``: they await the library's
``*_async`` calls, which with group commit on wait for their batch without
holding a thread (see ``Kernel.run_async``). Each route builds the request
type of its operation (``service/requests.py``), as the library does. Reads stay plain
``def`` and run on FastAPI's thread pool.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, status

from creditbook.domain.pricing import Call
from creditbook.entrypoints.api.deps import (
    SPEND_OPENAPI,
    KeyFirst,
    MemberDep,
    ServicesDep,
    actor_of,
    spender,
)
from creditbook.entrypoints.api.problems import problem_responses
from creditbook.entrypoints.api.schemas import (
    CallIn,
    CaptureIn,
    ChargeCreate,
    ChargeOut,
    CreditsOut,
    HoldCreate,
    HoldOut,
    HoldState,
    LemlistCredits,
    ReleaseOut,
)
from creditbook.service.receipts import ChargeReceipt, HoldReceipt, ReleaseReceipt
from creditbook.service.requests import (
    CaptureRequest,
    ChargeRequest,
    HoldRequest,
    ReleaseRequest,
)

# KeyFirst: the key is checked before a body is read (an anonymous spend is refused unread).
router = APIRouter(
    tags=["credits"], responses=problem_responses(401, 403, 404, 422, 429), route_class=KeyFirst
)
SPEND = problem_responses(402, 409)
# What every spend route declares besides its own answer: its errors, its key and header.
SPEND_ROUTE: dict[str, Any] = {"responses": SPEND, "openapi_extra": SPEND_OPENAPI}
HoldId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]


def _call(call: CallIn | None) -> Call | None:
    if call is None:
        return None
    return Call(
        duration_seconds=call.duration_seconds,
        answered=call.answered,
        destination=call.destination,
    )


@router.get("/v1/credits", response_model=CreditsOut)
def credits(svc: ServicesDep, me: MemberDep) -> CreditsOut:
    """Available and reserved credits, by bucket, and what expires when."""
    return CreditsOut.of(svc.book.balance(me.team_id))


@router.get("/api/team/credits", response_model=LemlistCredits, tags=["lemlist"])
def lemlist_credits(svc: ServicesDep, me: MemberDep) -> LemlistCredits:
    """lemlist-compatible balance: ``{credits, details: {remaining: {...}}}``."""
    return LemlistCredits.of(svc.book.balance(me.team_id))


@router.post(
    "/v1/charges",
    status_code=status.HTTP_201_CREATED,
    response_model=ChargeOut,
    **SPEND_ROUTE,
)
async def charge(body: ChargeCreate, request: Request) -> ChargeOut:
    """Charge a use whose outcome is known; a non-billable outcome costs 0 credits."""
    who = await spender(request)
    svc, me = who.svc, who.me
    spend = ChargeRequest(
        me.team_id,
        body.feature,
        body.quantity,
        body.outcome,
        _call(body.call),
        actor_of(me),
        who.idempotency_key,
    )
    receipt: ChargeReceipt = await svc.book.run_async(spend)
    return ChargeOut.of(receipt)


@router.post(
    "/v1/holds",
    status_code=status.HTTP_201_CREATED,
    response_model=HoldOut,
    **SPEND_ROUTE,
)
async def hold(body: HoldCreate, request: Request) -> HoldOut:
    """Reserve the most the work can cost before doing it; capture or release it after."""
    who = await spender(request)
    svc, me = who.svc, who.me
    spend = HoldRequest(
        me.team_id,
        body.feature,
        body.quantity,
        body.ttl_seconds,
        _call(body.call),
        actor_of(me),
        who.idempotency_key,
    )
    receipt: HoldReceipt = await svc.book.run_async(spend)
    return HoldOut.of(receipt)


@router.get("/v1/holds/{hold_id}", response_model=HoldState)
def get_hold(hold_id: HoldId, svc: ServicesDep, me: MemberDep) -> HoldState:
    """A hold and its state: a member reads only the holds it placed."""
    h = svc.book.get_hold(me.team_id, hold_id, placed_by=me.confined_to)
    return HoldState(
        hold_id=h.id,
        feature=h.feature,
        credits=h.amount,
        captured=h.captured,
        quantity=h.quantity,
        status=h.status.value,
        created_at=h.created_at,
        expires_at=h.expires_at,
        member_id=h.actor.member_id,
    )


@router.post(
    "/v1/holds/{hold_id}/capture",
    status_code=status.HTTP_201_CREATED,
    response_model=ChargeOut,
    **SPEND_ROUTE,
)
async def capture(hold_id: HoldId, request: Request, body: CaptureIn | None = None) -> ChargeOut:
    """Charge what the held work cost (at most the held amount); the rest returns.

    Booked to the hold's owner whoever settles it. A member's key captures only
    the holds its member placed (any other: 404); admins and service keys, any.
    """
    who = await spender(request)
    svc, me = who.svc, who.me
    body = body or CaptureIn()
    spend = CaptureRequest(
        me.team_id,
        hold_id,
        body.outcome,
        body.quantity,
        _call(body.call),
        actor_of(me),
        me.confined_to,
        who.idempotency_key,
    )
    receipt: ChargeReceipt = await svc.book.run_async(spend)
    return ChargeOut.of(receipt)


@router.post(
    "/v1/holds/{hold_id}/release",
    response_model=ReleaseOut,
    **SPEND_ROUTE,
)
async def release(hold_id: HoldId, request: Request) -> ReleaseOut:
    """Give back every credit the hold reserved (who may: as for a capture)."""
    who = await spender(request)
    svc, me = who.svc, who.me
    spend = ReleaseRequest(me.team_id, hold_id, actor_of(me), me.confined_to, who.idempotency_key)
    r: ReleaseReceipt = await svc.book.run_async(spend)
    return ReleaseOut(hold_id=r.hold_id, released=r.released, status=r.status)
