"""The team's ledger (cursor pages) and usage reports (JSON and CSV).

An admin sees the whole team; a member sees their own entries and usage
(asking for another member's answers 403).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from creditbook.domain.errors import Forbidden
from creditbook.entrypoints.api.deps import MemberDep, ServicesDep
from creditbook.entrypoints.api.problems import problem_responses
from creditbook.entrypoints.api.schemas import (
    EntryOut,
    Instant,
    LedgerOut,
    UsageOut,
    UsageRowOut,
)
from creditbook.service.access import Principal
from creditbook.service.usage import UsageReport, usage

router = APIRouter(tags=["history"], responses=problem_responses(401, 403, 404, 422, 429))
IdQuery = Annotated[str | None, Query(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
FeatureQuery = Annotated[
    str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
]
Kind = Literal["grant", "hold", "capture", "release", "charge", "attempt", "expire", "revoke"]
GroupBy = Literal["feature", "member", "api_key", "job", "day"]
From = Annotated[Instant | None, Query(alias="from", description="inclusive, ISO 8601")]
To = Annotated[Instant | None, Query(alias="to", description="exclusive, ISO 8601")]


def _member_scope(me: Principal, asked: str | None) -> str | None:
    if me.is_admin:
        return asked
    if asked is not None and asked != me.member_id:
        raise Forbidden("a member sees only their own history; an admin sees the whole team")
    return me.member_id


@router.get("/v1/ledger", response_model=LedgerOut)
def ledger(
    svc: ServicesDep,
    me: MemberDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: IdQuery = None,
    feature: FeatureQuery = None,
    member: IdQuery = None,
    kind: Kind | None = None,
    since: From = None,
    until: To = None,
) -> LedgerOut:
    """Ledger entries, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""
    page = svc.book.ledger(
        me.team_id,
        limit=limit,
        cursor=cursor,
        feature=feature,
        member_id=_member_scope(me, member),
        kind=kind,
        since=since,
        until=until,
    )
    return LedgerOut(entries=[EntryOut.of(e) for e in page.entries], next_cursor=page.next_cursor)


def _report(
    svc: ServicesDep, me: Principal, group_by: str, since: object, until: object, member: str | None
) -> UsageReport:
    return usage(
        svc.book.kernel,
        me.team_id,
        group_by=group_by,
        since=since,  # type: ignore[arg-type]
        until=until,  # type: ignore[arg-type]
        member_id=_member_scope(me, member),
    )


@router.get("/v1/usage", response_model=UsageOut, response_model_by_alias=True)
def usage_report(
    svc: ServicesDep,
    me: MemberDep,
    group_by: GroupBy = "feature",
    since: From = None,
    until: To = None,
    member: IdQuery = None,
) -> UsageOut:
    """Credits spent, uses and non-billable attempts by feature, member, API key, job or day.

    Defaults to the current calendar month in the team's time zone.
    """
    r = _report(svc, me, group_by, since, until, member)
    return UsageOut(
        group_by=r.group_by,
        time_zone=r.time_zone,
        from_=r.since,
        to=r.until,
        total_credits=r.total_credits,
        rows=[
            UsageRowOut(key=x.key, credits=x.credits, uses=x.uses, attempts=x.attempts)
            for x in r.rows
        ],
    )


@router.get(
    "/v1/usage.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def usage_csv(
    svc: ServicesDep,
    me: MemberDep,
    group_by: GroupBy = "feature",
    since: From = None,
    until: To = None,
    member: IdQuery = None,
) -> Response:
    """The usage report as CSV: ``<group_by>,credits,uses,attempts``."""
    r = _report(svc, me, group_by, since, until, member)
    return Response(
        r.to_csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="usage-{r.group_by}.csv"'},
    )
