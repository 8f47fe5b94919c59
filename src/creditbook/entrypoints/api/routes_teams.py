"""Operator endpoints: create teams, change their plan, seats and status, grant credits."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status

from creditbook.domain.errors import Conflict
from creditbook.entrypoints.api.deps import IdempotencyKey, OperatorDep, ServicesDep
from creditbook.entrypoints.api.problems import problem_responses
from creditbook.entrypoints.api.schemas import (
    GrantCreate,
    GrantOut,
    MemberOut,
    TeamCreate,
    TeamCreated,
    TeamOut,
    TeamPatch,
)
from creditbook.service.credits import Creditbook

router = APIRouter(
    prefix="/v1/teams",
    tags=["operator"],
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
TeamId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]


class PlansUnavailable(Conflict):
    code = "plans_unavailable"
    title = "Plans are not available"


class NotSubscribed(Conflict):
    code = "not_subscribed"
    title = "The team has no subscription"


def _plans(book: Creditbook) -> Any:
    # ``creditbook.open`` attaches the Plans service as ``book.plans``.
    plans = getattr(book, "plans", None)
    if plans is None:
        raise PlansUnavailable(
            "plans and seats are managed by the subscriptions service, "
            "which is not configured on this server"
        )
    return plans


def _team_out(svc: ServicesDep, team_id: str) -> TeamOut:
    team = svc.book.get_team(team_id)
    plans = getattr(svc.book, "plans", None)
    sub = plans.subscription(team_id) if plans is not None else None
    return TeamOut.of(
        team,
        svc.access.team_status(team_id),
        plan=sub.plan if sub else None,
        seats=sub.seats if sub else None,
        subscription_status=sub.status.value if sub else None,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TeamCreated)
def create_team(body: TeamCreate, svc: ServicesDep, who: OperatorDep) -> TeamCreated:
    """Create a team with its first admin (and its plan); the admin's key is shown once."""
    plans = None
    if body.plan is not None:
        plans = _plans(svc.book)
        svc.book.catalog.plan(body.plan)  # unknown_plan before anything is written
    team, admin, key = svc.access.create_team(
        body.name, time_zone=body.time_zone, admin_email=body.admin_email
    )
    if plans is not None:
        plans.subscribe(team.id, body.plan, seats=body.seats, actor=who.actor)
    return TeamCreated(
        team=_team_out(svc, team.id), admin=MemberOut.of(admin), admin_api_key=key.api_key
    )


@router.get("/{team_id}", response_model=TeamOut)
def get_team(team_id: TeamId, svc: ServicesDep, _: OperatorDep) -> TeamOut:
    return _team_out(svc, team_id)


@router.patch("/{team_id}", response_model=TeamOut)
def update_team(team_id: TeamId, body: TeamPatch, svc: ServicesDep, who: OperatorDep) -> TeamOut:
    """Change a team's plan, seats or status.

    ``plan`` subscribes a team without a subscription, else changes its plan
    (upgrades at once, downgrades at the next period); ``status``:
    ``suspended`` refuses every key of the team, ``cancelled`` cancels the
    subscription (free grants stop at the end of the period), ``active``
    lifts a suspension and reactivates a cancelled subscription.
    """
    svc.book.get_team(team_id)
    if body.plan is not None or body.seats is not None or body.status is not None:
        plans = getattr(svc.book, "plans", None)
        sub = plans.subscription(team_id) if plans is not None else None
        if body.plan is not None:
            plans = _plans(svc.book)
            if sub is None:
                plans.subscribe(team_id, body.plan, seats=body.seats or 1, actor=who.actor)
            else:
                plans.change_plan(team_id, body.plan, actor=who.actor)
        if body.seats is not None and (sub is not None or body.plan is None):
            if sub is None:
                raise NotSubscribed(f"team {team_id!r} has no subscription: set a plan first")
            _plans(svc.book).change_seats(team_id, body.seats, actor=who.actor)
        if body.status == "cancelled":
            if sub is None:
                raise NotSubscribed(f"team {team_id!r} has no subscription to cancel")
            _plans(svc.book).cancel(team_id, actor=who.actor)
        elif body.status == "active" and sub is not None and sub.status.value == "cancelled":
            _plans(svc.book).reactivate(team_id, actor=who.actor)
        if body.status in ("active", "suspended"):
            svc.access.set_team_status(team_id, body.status)
    return _team_out(svc, team_id)


@router.post("/{team_id}/grants", status_code=status.HTTP_201_CREATED, response_model=GrantOut)
def grant(
    team_id: TeamId,
    body: GrantCreate,
    svc: ServicesDep,
    who: OperatorDep,
    idempotency_key: IdempotencyKey = None,
) -> GrantOut:
    """Give a team credits (a gift or an adjustment)."""
    if body.scope is not None:
        for feature in body.scope:
            svc.book.catalog.feature(feature)
    receipt = svc.book.grant(
        team_id,
        body.credits,
        category=body.category,
        source=body.source,
        scope=body.scope,
        expires_at=body.expires_at,
        reason=body.reason,
        actor=who.actor,
        idempotency_key=idempotency_key,
    )
    return GrantOut.of(receipt)
