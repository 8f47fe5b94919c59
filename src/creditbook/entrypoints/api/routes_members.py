"""Members of the caller's team and their API keys, with their monthly caps.

Changes need an admin key; so does reading keys, which name who holds them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from creditbook.entrypoints.api.deps import AdminDep, MemberDep, ServicesDep
from creditbook.entrypoints.api.problems import problem_responses
from creditbook.entrypoints.api.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyDetail,
    ApiKeyOut,
    ApiKeyPatch,
    MemberCreate,
    MemberCreated,
    MemberDetail,
    MemberOut,
    MemberPatch,
    MembersOut,
)
from creditbook.service.access import AccessService, KeyInfo

router = APIRouter(tags=["members"], responses=problem_responses(401, 403, 404, 409, 422, 429))
MemberId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
KeyId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]


def _key_detail(access: AccessService, k: KeyInfo) -> ApiKeyDetail:
    spent = access.key_usage_this_month(k.team_id, k.key_id)
    return ApiKeyDetail(**ApiKeyOut.of(k).model_dump(), spent_this_month=spent)


@router.post("/v1/members", status_code=status.HTTP_201_CREATED, response_model=MemberCreated)
def add_member(body: MemberCreate, svc: ServicesDep, me: AdminDep) -> MemberCreated:
    """Add a member (admin); their API key is shown once."""
    member, key = svc.access.add_member(
        me.team_id, body.email, body.role, monthly_cap=body.monthly_cap
    )
    return MemberCreated(member=MemberOut.of(member), api_key=key.api_key)


@router.get("/v1/members", response_model=MembersOut)
def list_members(svc: ServicesDep, me: MemberDep) -> MembersOut:
    return MembersOut(members=[MemberOut.of(m) for m in svc.book.members(me.team_id)])


@router.get("/v1/members/{member_id}", response_model=MemberDetail)
def get_member(member_id: MemberId, svc: ServicesDep, me: MemberDep) -> MemberDetail:
    """A member and what they spent this cap month."""
    member = svc.access.get_member(me.team_id, member_id)
    spent = svc.access.usage_this_month(me.team_id, member_id)
    return MemberDetail(**MemberOut.of(member).model_dump(), spent_this_month=spent)


@router.patch("/v1/members/{member_id}", response_model=MemberOut)
def update_member(
    member_id: MemberId, body: MemberPatch, svc: ServicesDep, me: AdminDep
) -> MemberOut:
    """Change a member's role or monthly cap (admin); ``monthly_cap: null`` removes the cap."""
    if "monthly_cap" in body.model_fields_set:
        member = svc.access.update_member(
            me.team_id, member_id, role=body.role, monthly_cap=body.monthly_cap
        )
    else:
        member = svc.access.update_member(me.team_id, member_id, role=body.role)
    return MemberOut.of(member)


@router.delete("/v1/members/{member_id}", response_model=MemberOut)
def remove_member(member_id: MemberId, svc: ServicesDep, me: AdminDep) -> MemberOut:
    """Remove a member (admin): deactivated, every key revoked; their history stays."""
    member = svc.access.remove_member(me.team_id, member_id)
    return MemberOut.of(member)


@router.get("/v1/members/{member_id}/api-keys", response_model=list[ApiKeyOut])
def list_keys(member_id: MemberId, svc: ServicesDep, me: AdminDep) -> list[ApiKeyOut]:
    svc.access.get_member(me.team_id, member_id)
    return [ApiKeyOut.of(k) for k in svc.access.list_keys(me.team_id, member_id)]


@router.post(
    "/v1/members/{member_id}/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
)
def issue_key(
    member_id: MemberId, svc: ServicesDep, me: AdminDep, body: ApiKeyCreate | None = None
) -> ApiKeyCreated:
    """A new API key for a member (admin), shown once: rotate, then revoke the old one.

    ``monthly_cap`` caps what is spent through this key per month (beside the
    member's own cap). ``kind: "service"`` makes a key for the platform's code:
    it spends, settles any hold and sees every job of the team, and is no admin.
    """
    body = body or ApiKeyCreate()
    key = svc.access.issue_key(
        me.team_id, member_id, label=body.label, monthly_cap=body.monthly_cap, kind=body.kind
    )
    return ApiKeyCreated(
        key_id=key.key_id,
        member_id=key.member_id,
        label=body.label,
        created_at=key.created_at,
        revoked_at=None,
        monthly_cap=body.monthly_cap,
        kind=key.kind.value,
        api_key=key.api_key,
    )


@router.get("/v1/api-keys", response_model=list[ApiKeyOut])
def list_team_keys(svc: ServicesDep, me: AdminDep) -> list[ApiKeyOut]:
    """Every API key of the team, revoked ones included (admin)."""
    return [ApiKeyOut.of(k) for k in svc.access.list_keys(me.team_id)]


@router.get("/v1/api-keys/{key_id}", response_model=ApiKeyDetail)
def get_key(key_id: KeyId, svc: ServicesDep, me: AdminDep) -> ApiKeyDetail:
    """An API key of the team and what was spent through it this cap month (admin)."""
    return _key_detail(svc.access, svc.access.get_key(me.team_id, key_id))


@router.patch("/v1/api-keys/{key_id}", response_model=ApiKeyDetail)
def update_key(key_id: KeyId, body: ApiKeyPatch, svc: ServicesDep, me: AdminDep) -> ApiKeyDetail:
    """Set or remove (``null``) the monthly cap of an API key (admin); it applies at once."""
    key = svc.access.set_key_cap(me.team_id, key_id, body.monthly_cap)
    return _key_detail(svc.access, key)


@router.delete("/v1/api-keys/{key_id}", response_model=ApiKeyOut)
def revoke_key(key_id: KeyId, svc: ServicesDep, me: AdminDep) -> ApiKeyOut:
    """Revoke an API key of the team (admin); it stops working at once."""
    info = svc.access.revoke_key(me.team_id, key_id)
    return ApiKeyOut.of(info)
