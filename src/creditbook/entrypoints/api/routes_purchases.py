"""Buying credits, refunds, payment webhooks, alerts and billing settings over HTTP.

``POST /v1/purchases`` is open to any team key so that a member gets the
library's own 403 (which names the team's admins); only admins get through.
Refunds are for a team admin (``/v1/purchases/{id}/refund``) or the operator
(``/v1/teams/{team}/purchases/{id}/refund``). ``POST /v1/webhooks/stripe``
has no API key: the raw body goes to the provider's signature check, and a
forged or stale signature answers 400 with nothing done.

On startup the router starts the notification delivery worker (set
``CREDITBOOK_NOTIFY_WORKER=0`` to run it elsewhere, e.g. ``creditbook alerts
deliver`` from a scheduler).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from creditbook.domain.errors import Forbidden
from creditbook.domain.limits import MAX_COOLDOWN_SECONDS, MAX_CREDITS
from creditbook.entrypoints.api.deps import (
    AdminDep,
    IdempotencyKey,
    MemberDep,
    OperatorDep,
    ServicesDep,
    actor_of,
)
from creditbook.entrypoints.api.problems import problem_responses
from creditbook.service.notifications import Notification, NotificationWorker
from creditbook.service.purchases import BillingSettings, Purchase, PurchaseService

PurchaseId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
TeamId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
_NO_NUL = r"^[^\x00]*$"
_TOKEN = r"^[A-Za-z0-9_.:-]+$"


@asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """Run the notification delivery worker while the app runs (merged into the app's)."""
    worker: NotificationWorker | None = None
    services = getattr(app.state, "services", None)
    enabled = os.environ.get("CREDITBOOK_NOTIFY_WORKER", "1").strip().lower()
    if services is not None and enabled not in ("0", "false", "no"):
        worker = NotificationWorker(services.book.notifications, interval=2.0).start()
    try:
        yield
    finally:
        if worker is not None:
            worker.stop()


router = APIRouter(
    tags=["purchases"],
    responses=problem_responses(401, 403, 404, 422, 429),
    lifespan=_lifespan,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PurchaseCreate(Strict):
    credits: int | None = Field(
        None, ge=1, le=MAX_CREDITS, description="a custom number of credits"
    )
    package: str | None = Field(
        None, min_length=1, max_length=32, pattern=_NO_NUL, description="a package name, e.g. 1k"
    )
    payment_method: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        pattern=_TOKEN,
        description="a provider payment method to charge at once (Stripe: pm_...)",
    )


class PurchaseBody(BaseModel):
    id: str
    kind: str
    credits: int
    amount: str = Field(description="decimal string, e.g. '100.00'")
    currency: str
    status: str
    provider: str
    provider_reference: str | None
    package: str | None
    grant_id: str | None
    refunded_credits: int
    refunded_amount: str
    refund_reference: str | None
    refund_pending: bool
    failure_message: str | None
    created_at: str
    completed_at: str | None
    client_secret: str | None = Field(
        None, description="only when a card payment awaits the browser (Stripe.js)"
    )

    @classmethod
    def of(cls, purchase: Purchase) -> PurchaseBody:
        data = purchase.to_dict()
        return cls(**{k: data[k] for k in cls.model_fields})


class PurchaseOut(BaseModel):
    purchase: PurchaseBody


class PurchaseList(BaseModel):
    purchases: list[PurchaseBody]


class RefundIn(Strict):
    reason: str | None = Field(None, min_length=1, max_length=500, pattern=_NO_NUL)


class NotificationBody(BaseModel):
    id: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: str
    delivered_at: str | None
    last_error: str | None = Field(
        description="why the last delivery attempt failed; a destination the outbound-URL "
        "guard refused says so, nothing was sent to it"
    )

    @classmethod
    def of(cls, n: Notification) -> NotificationBody:
        data = n.to_dict()
        return cls(**{k: data[k] for k in cls.model_fields})


class NotificationList(BaseModel):
    notifications: list[NotificationBody]


class AutoRechargeIn(Strict):
    enabled: bool | None = None
    threshold: int | None = Field(None, ge=0, le=MAX_CREDITS)
    credits: int | None = Field(None, ge=1, le=MAX_CREDITS)
    payment_method: str | None = Field(None, min_length=1, max_length=255, pattern=_TOKEN)
    cooldown_seconds: int | None = Field(None, ge=0, le=MAX_COOLDOWN_SECONDS)


class SettingsIn(Strict):
    low_balance_threshold: int | None = Field(None, ge=0, le=MAX_CREDITS)
    webhook_url: str | None = Field(None, max_length=2000, pattern=r"^https?://[^\x00-\x20]+$")
    webhook_secret: str | None = Field(None, min_length=16, max_length=200, pattern=_TOKEN)
    auto_recharge: AutoRechargeIn | None = None


class SettingsOut(BaseModel):
    settings: dict[str, Any]


class WebhookAck(BaseModel):
    received: bool
    event_id: str
    outcome: str


def _purchases(svc: Any) -> PurchaseService:
    service: PurchaseService = svc.book.purchases
    return service


@router.post(
    "/v1/purchases",
    status_code=status.HTTP_201_CREATED,
    response_model=PurchaseOut,
    responses=problem_responses(409, 502),
)
def buy(
    body: PurchaseCreate, svc: ServicesDep, me: MemberDep, idempotency_key: IdempotencyKey = None
) -> PurchaseOut:
    """Buy a package or a custom number of credits (team admins only).

    ``manual`` completes at once; ``stripe`` answers ``pending`` and grants the
    credits when Stripe's signed webhook confirms the payment.
    """
    if me.is_service:  # the library checks the role of the key's member, not the key
        raise Forbidden("a service key spends and settles holds; buying needs a team admin's key")
    purchase = _purchases(svc).buy(
        me.team_id,
        credits=body.credits,
        package=body.package,
        actor=actor_of(me),
        idempotency_key=idempotency_key,
        payment_method=body.payment_method,
    )
    return PurchaseOut(purchase=PurchaseBody.of(purchase))


@router.get("/v1/purchases", response_model=PurchaseList)
def list_purchases(
    svc: ServicesDep,
    me: MemberDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    status_filter: Annotated[
        str | None, Query(alias="status", pattern="^(pending|completed|failed|refunded)$")
    ] = None,
) -> PurchaseList:
    """The team's purchases, newest first."""
    found = _purchases(svc).list(me.team_id, limit=limit, status=status_filter)
    return PurchaseList(purchases=[PurchaseBody.of(p) for p in found])


@router.get(
    "/v1/purchases/export.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
def export_purchases(svc: ServicesDep, me: MemberDep) -> Response:
    """Every purchase of the team as CSV."""
    return Response(
        _purchases(svc).export_csv(me.team_id),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="purchases.csv"'},
    )


@router.get("/v1/purchases/{purchase_id}", response_model=PurchaseOut)
def get_purchase(purchase_id: PurchaseId, svc: ServicesDep, me: MemberDep) -> PurchaseOut:
    """One purchase: credits, price, status, provider reference, refunds."""
    return PurchaseOut(purchase=PurchaseBody.of(_purchases(svc).get(me.team_id, purchase_id)))


@router.post(
    "/v1/purchases/{purchase_id}/refund",
    response_model=PurchaseOut,
    responses=problem_responses(409, 502),
)
def refund(
    purchase_id: PurchaseId,
    svc: ServicesDep,
    me: AdminDep,
    body: RefundIn | None = None,
    idempotency_key: IdempotencyKey = None,
) -> PurchaseOut:
    """Take back the unspent credits of a purchase and refund their price (admins)."""
    purchase = _purchases(svc).refund(
        me.team_id,
        purchase_id,
        actor=actor_of(me),
        idempotency_key=idempotency_key,
        reason=body.reason if body else None,
    )
    return PurchaseOut(purchase=PurchaseBody.of(purchase))


@router.post(
    "/v1/teams/{team_id}/purchases/{purchase_id}/refund",
    response_model=PurchaseOut,
    responses=problem_responses(409, 502),
)
def operator_refund(
    team_id: TeamId,
    purchase_id: PurchaseId,
    svc: ServicesDep,
    who: OperatorDep,
    body: RefundIn | None = None,
    idempotency_key: IdempotencyKey = None,
) -> PurchaseOut:
    """The operator refunds a team's purchase (same rules as an admin's refund)."""
    purchase = _purchases(svc).refund(
        team_id,
        purchase_id,
        actor=who.actor,
        idempotency_key=idempotency_key,
        reason=body.reason if body else None,
    )
    return PurchaseOut(purchase=PurchaseBody.of(purchase))


@router.post(
    "/v1/webhooks/stripe",
    response_model=WebhookAck,
    tags=["webhooks"],
    responses=problem_responses(400),
)
async def stripe_webhook(
    request: Request,
    svc: ServicesDep,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookAck:
    """Stripe's signed payment notifications; each event acts once, retries do nothing."""
    payload = await request.body()
    from starlette.concurrency import run_in_threadpool

    outcome = await run_in_threadpool(
        _purchases(svc).handle_webhook, payload, stripe_signature or ""
    )
    return WebhookAck(received=True, event_id=outcome.event_id, outcome=outcome.outcome)


@router.get("/v1/notifications", response_model=NotificationList, tags=["alerts"])
def list_notifications(
    svc: ServicesDep,
    me: AdminDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    kind: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = None,
) -> NotificationList:
    """The team's alerts, newest first, with their webhook delivery status (admins)."""
    found = svc.book.notifications.list(me.team_id, limit=limit, kind=kind)
    return NotificationList(notifications=[NotificationBody.of(n) for n in found])


@router.get("/v1/settings", response_model=SettingsOut, tags=["settings"])
def get_settings(svc: ServicesDep, me: AdminDep) -> SettingsOut:
    """Low-balance threshold, alert webhook and auto-recharge (admins)."""
    return SettingsOut(settings=_purchases(svc).settings(me.team_id).to_dict())


@router.put("/v1/settings", response_model=SettingsOut, tags=["settings"])
def put_settings(body: SettingsIn, svc: ServicesDep, me: AdminDep) -> SettingsOut:
    """Change the fields given; a webhook URL without a secret gets one, shown once."""
    changes: dict[str, Any] = {
        k: getattr(body, k) for k in body.model_fields_set if k != "auto_recharge"
    }
    if body.auto_recharge is not None:
        for name in body.auto_recharge.model_fields_set:
            changes[f"auto_recharge_{name}"] = getattr(body.auto_recharge, name)
        if changes.get("auto_recharge_enabled") is None:
            changes.pop("auto_recharge_enabled", None)
        if changes.get("auto_recharge_cooldown_seconds") is None:
            changes.pop("auto_recharge_cooldown_seconds", None)
    found: BillingSettings = _purchases(svc).update_settings(
        me.team_id, actor=actor_of(me), **changes
    )
    return SettingsOut(settings=found.to_dict())
