"""Request and response models of the HTTP API (they make ``/openapi.json``).

Credits are integers; instants are ISO 8601 with an offset. Every string is
bounded and refuses NUL characters, every number is bounded, so no input can
reach the database in a shape it would reject with a server error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from creditbook.domain.book import Balance
from creditbook.domain.ledger import Entry
from creditbook.domain.limits import MAX_CALL_SECONDS, MAX_CREDITS, MAX_SEATS
from creditbook.domain.team import Member, Team
from creditbook.service.access import KeyInfo
from creditbook.service.receipts import ChargeReceipt, Drawn, GrantReceipt, HoldReceipt
from creditbook.service.requests import MAX_HOLD_TTL_SECONDS, MAX_QUANTITY

_NO_NUL = r"^[^\x00]*$"

Text = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_NO_NUL)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Email = Annotated[str, StringConstraints(min_length=3, max_length=320, pattern=_NO_NUL)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=_NO_NUL)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
TimeZone = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_./+-]+$")
]
RoleName = Literal["admin", "member"]
KeyKindName = Literal["personal", "service"]


def _instant(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not 1970 <= value.astimezone(UTC).year <= 9000:
        raise ValueError("instants must fall between the years 1970 and 9000")
    return value.astimezone(UTC)


Instant = Annotated[datetime, AfterValidator(_instant)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- teams ----------------------------------------------------------------------


class TeamCreate(Strict):
    name: Text
    plan: Key | None = Field(None, description="a plan key of the catalog, e.g. email_pro")
    seats: int = Field(1, ge=1, le=MAX_SEATS)
    time_zone: TimeZone = Field("UTC", description="IANA time zone, e.g. Europe/Paris")
    admin_email: Email


class TeamPatch(Strict):
    plan: Key | None = None
    seats: int | None = Field(None, ge=1, le=MAX_SEATS)
    status: Literal["active", "suspended", "cancelled"] | None = Field(
        None,
        description="suspended: refuse the team's keys; cancelled: cancel the subscription; "
        "active: lift a suspension and reactivate a cancelled subscription",
    )


class TeamOut(BaseModel):
    id: str
    name: str
    time_zone: str
    created_at: datetime
    status: str = Field(description="access: active or suspended")
    plan: str | None = None
    seats: int | None = None
    subscription_status: str | None = Field(None, description="trialing, active or cancelled")

    @classmethod
    def of(
        cls,
        team: Team,
        status: str,
        *,
        plan: str | None = None,
        seats: int | None = None,
        subscription_status: str | None = None,
    ) -> TeamOut:
        return cls(
            id=team.id,
            name=team.name,
            time_zone=team.time_zone,
            created_at=team.created_at,
            status=status,
            plan=plan,
            seats=seats,
            subscription_status=subscription_status,
        )


class MemberOut(BaseModel):
    id: str
    email: str
    role: RoleName
    monthly_cap: int | None
    active: bool
    created_at: datetime

    @classmethod
    def of(cls, m: Member) -> MemberOut:
        return cls(
            id=m.id,
            email=m.email,
            role=m.role.value,
            monthly_cap=m.monthly_cap,
            active=m.active,
            created_at=m.created_at,
        )


class MemberDetail(MemberOut):
    spent_this_month: int = Field(description="charges, captures and active holds this cap month")


class TeamCreated(BaseModel):
    team: TeamOut
    admin: MemberOut
    admin_api_key: str = Field(description="shown once; store it now")


class GrantCreate(Strict):
    credits: int = Field(ge=1, le=MAX_CREDITS)
    category: Literal["free", "purchased"]
    source: Literal["gift", "adjustment"] = "gift"
    scope: list[Key] | None = Field(None, max_length=50, description="features; none: all")
    expires_at: Instant | None = None
    reason: Reason


class GrantOut(BaseModel):
    grant_id: str
    team_id: str
    credits: int
    category: str
    source: str
    bucket: str
    scope: list[str] | None
    effective_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, r: GrantReceipt) -> GrantOut:
        return cls(
            grant_id=r.grant_id,
            team_id=r.team_id,
            credits=r.credits,
            category=r.category,
            source=r.source,
            bucket=r.bucket,
            scope=list(r.scope) if r.scope is not None else None,
            effective_at=r.effective_at,
            expires_at=r.expires_at,
        )


# ---- members ---------------------------------------------------------------------


class MemberCreate(Strict):
    email: Email
    role: RoleName = "member"
    monthly_cap: int | None = Field(None, ge=0, le=MAX_CREDITS)


class MemberCreated(BaseModel):
    member: MemberOut
    api_key: str = Field(description="shown once; store it now")


class MemberPatch(Strict):
    role: RoleName | None = None
    monthly_cap: int | None = Field(None, ge=0, le=MAX_CREDITS, description="null removes the cap")


class ApiKeyCreate(Strict):
    label: Annotated[str, StringConstraints(max_length=100, pattern=_NO_NUL)] | None = None
    monthly_cap: int | None = Field(
        None, ge=0, le=MAX_CREDITS, description="credits spent through this key per month"
    )
    kind: KeyKindName = Field(
        "personal",
        description="personal: acts with its member's role; service: the platform's code "
        "(spends, settles any hold and sees every job of the team; never an admin)",
    )


class ApiKeyPatch(Strict):
    monthly_cap: int | None = Field(
        ge=0, le=MAX_CREDITS, description="credits spent through this key per month; null: none"
    )


class ApiKeyOut(BaseModel):
    key_id: str
    member_id: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None
    monthly_cap: int | None = Field(description="credits spent through this key per month")
    kind: KeyKindName

    @classmethod
    def of(cls, k: KeyInfo) -> ApiKeyOut:
        return cls(
            key_id=k.key_id,
            member_id=k.member_id,
            label=k.label,
            created_at=k.created_at,
            revoked_at=k.revoked_at,
            monthly_cap=k.monthly_cap,
            kind=k.kind.value,
        )


class ApiKeyDetail(ApiKeyOut):
    spent_this_month: int = Field(
        description="charges, captures and active holds made with this key this cap month"
    )


class ApiKeyCreated(ApiKeyOut):
    api_key: str = Field(description="shown once; store it now")


class MembersOut(BaseModel):
    members: list[MemberOut]


# ---- credits -----------------------------------------------------------------------


class Buckets(BaseModel):
    trial: int
    subscription: int
    calling: int
    gifted: int
    purchased: int


class ExpiringOut(BaseModel):
    credits: int
    expires_at: datetime
    bucket: str


class CreditsOut(BaseModel):
    available: int
    reserved: int
    buckets: Buckets
    expiring: list[ExpiringOut]

    @classmethod
    def of(cls, b: Balance) -> CreditsOut:
        names = ("trial", "subscription", "calling", "gifted", "purchased")
        return cls(
            available=b.available,
            reserved=b.reserved,
            buckets=Buckets(**{n: int(b.buckets.get(n, 0)) for n in names}),
            expiring=[
                ExpiringOut(credits=e.credits, expires_at=e.expires_at, bucket=e.bucket)
                for e in b.expiring
            ],
        )


class LemlistRemaining(BaseModel):
    total: int
    freemium: int
    subscription: int
    gifted: int
    paid: int


class LemlistDetails(BaseModel):
    remaining: LemlistRemaining


class LemlistCredits(BaseModel):
    credits: int
    details: LemlistDetails

    @classmethod
    def of(cls, b: Balance) -> LemlistCredits:
        get = b.buckets.get
        return cls(
            credits=b.available,
            details=LemlistDetails(
                remaining=LemlistRemaining(
                    total=b.available,
                    freemium=int(get("trial", 0)),
                    subscription=int(get("subscription", 0)) + int(get("calling", 0)),
                    gifted=int(get("gifted", 0)),
                    paid=int(get("purchased", 0)),
                )
            ),
        )


class CallIn(Strict):
    duration_seconds: int = Field(ge=0, le=MAX_CALL_SECONDS)
    answered: bool
    destination: Key


class ChargeCreate(Strict):
    feature: Key
    quantity: int = Field(1, ge=1, le=MAX_QUANTITY)
    outcome: Key | None = None
    call: CallIn | None = None


class HoldCreate(Strict):
    feature: Key
    quantity: int = Field(1, ge=1, le=MAX_QUANTITY)
    ttl_seconds: int | None = Field(None, ge=1, le=MAX_HOLD_TTL_SECONDS)
    call: CallIn | None = None


class CaptureIn(Strict):
    outcome: Key | None = None
    quantity: int | None = Field(None, ge=0, le=MAX_QUANTITY)
    call: CallIn | None = None


class DrawnOut(BaseModel):
    grant_id: str
    credits: int
    category: str
    bucket: str

    @classmethod
    def of(cls, d: Drawn) -> DrawnOut:
        return cls(grant_id=d.grant_id, credits=d.credits, category=d.category, bucket=d.bucket)


class ChargeOut(BaseModel):
    charge_id: str
    credits: int
    feature: str
    outcome: str
    quantity: int
    unit_cost: int
    multiplier: int
    created_at: datetime
    hold_id: str | None
    returned: int = Field(description="for a capture: credits given back to the grants")
    grants: list[DrawnOut]

    @classmethod
    def of(cls, r: ChargeReceipt) -> ChargeOut:
        return cls(
            charge_id=r.charge_id,
            credits=r.credits,
            feature=r.feature,
            outcome=r.outcome,
            quantity=r.quantity,
            unit_cost=r.unit_cost,
            multiplier=r.multiplier,
            created_at=r.created_at,
            hold_id=r.hold_id,
            returned=r.returned,
            grants=[DrawnOut.of(d) for d in r.grants],
        )


class HoldOut(BaseModel):
    hold_id: str
    credits: int
    expires_at: datetime
    feature: str
    quantity: int
    status: str
    grants: list[DrawnOut]

    @classmethod
    def of(cls, r: HoldReceipt) -> HoldOut:
        return cls(
            hold_id=r.hold_id,
            credits=r.credits,
            expires_at=r.expires_at,
            feature=r.feature,
            quantity=r.quantity,
            status=r.status,
            grants=[DrawnOut.of(d) for d in r.grants],
        )


class HoldState(BaseModel):
    hold_id: str
    feature: str
    credits: int
    captured: int
    quantity: int
    status: str
    created_at: datetime
    expires_at: datetime
    member_id: str | None


class ReleaseOut(BaseModel):
    hold_id: str
    released: int
    status: str


# ---- history --------------------------------------------------------------------------


class PostingOut(BaseModel):
    grant_id: str
    account: str
    amount: int


class EntryOut(BaseModel):
    id: str
    kind: str
    created_at: datetime
    credits: int
    feature: str | None
    quantity: int | None
    outcome: str | None
    member_id: str | None
    api_key_id: str | None
    operator: str | None
    hold_id: str | None
    memo: str | None
    postings: list[PostingOut]

    @classmethod
    def of(cls, e: Entry) -> EntryOut:
        return cls(
            id=e.id,
            kind=e.kind.value,
            created_at=e.created_at,
            credits=e.credits,
            feature=e.feature,
            quantity=e.quantity,
            outcome=e.outcome,
            member_id=e.actor.member_id,
            api_key_id=e.actor.api_key_id,
            operator=e.actor.operator,
            hold_id=e.hold_id,
            memo=e.memo,
            postings=[
                PostingOut(grant_id=p.grant_id, account=p.account.value, amount=p.amount)
                for p in e.postings
            ],
        )


class LedgerOut(BaseModel):
    entries: list[EntryOut]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )


class UsageRowOut(BaseModel):
    key: str | None = Field(description="the feature, member id or local day (YYYY-MM-DD)")
    credits: int
    uses: int
    attempts: int = Field(description="uses with a non-billable outcome (0 credits)")


class UsageOut(BaseModel):
    group_by: str
    time_zone: str
    from_: datetime = Field(alias="from")
    to: datetime
    total_credits: int
    rows: list[UsageRowOut]

    model_config = ConfigDict(populate_by_name=True)


class Health(BaseModel):
    status: str


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True)
