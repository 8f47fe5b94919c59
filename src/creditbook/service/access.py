"""Access to a team: API keys, members' roles and monthly caps, and the cap spend guard.

API keys
    A key reads ``cbk.<team id>.<key id>.<secret>``: the secret is 32 random
    bytes (256 bits, URL-safe base64). Only the SHA-256 of the whole key is
    stored (``api_keys.key_hash``); the key is returned once, when it is
    made, and never again. The key names its team first, so verifying it is
    one primary-key read on ``(team_id, id)``: on a PostgreSQL sharded by
    ``team_id`` the lookup goes to one shard, with no global key table.
    A key belongs to a member; revoking a key, or removing its member, stops
    it at once. A key is *personal* (it carries its member's role) or a
    *service* key (the platform's own code, never an admin):
    ``service.principals`` says what each reaches. Removing a member,
    changing their role and revoking a key also end the dashboard sessions
    they opened, in the same transaction; then the ``on_change`` callbacks
    run (the HTTP API's key cache empties itself).

Monthly caps
    An admin may cap what one member spends per month, and what is spent
    through one API key per month (an integration's key, say); a spend
    must fit both its member's cap and its key's. "Monthly" is the
    team's billing period when it has a subscription (the ``subscriptions``
    table, read when present), else the calendar month in the team's time
    zone. What counts against a cap: charges and captures made by the member
    (or through the key) in the period, plus the active holds they made (a hold
    reserves credits, so it counts at once; its capture replaces it). The
    guard runs inside the spending transaction (``Kernel.spend_guards``),
    so two concurrent charges cannot both slip under the cap.

Idempotency keys are kept at least ``IDEMPOTENCY_RETENTION`` (30 days);
``purge_idempotency_keys`` deletes older ones (``creditbook idempotency purge``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, delete, func, insert, select, update

from creditbook.adapters.db.dashboard_sessions import end_sessions
from creditbook.adapters.db.repository import SqlUnitOfWork, member_from_row
from creditbook.adapters.db.tables import holds, idempotency_keys, ledger_entries, members, metadata
from creditbook.adapters.db.tables_access import api_keys, team_access
from creditbook.domain.book import TeamBook
from creditbook.domain.errors import Conflict, InvalidInput, MemberNotFound, NotFound, TeamNotFound
from creditbook.domain.ids import new_id
from creditbook.domain.ledger import EntryKind
from creditbook.domain.limits import check_credits
from creditbook.domain.team import Member, Role, Team
from creditbook.service.kernel import Kernel

# Re-exported: the entrypoints take the types of keys from the access service.
from creditbook.service.principals import KeyKind as KeyKind
from creditbook.service.principals import Principal as Principal
from creditbook.service.teams import Teams

KEY_PREFIX = "cbk"
SECRET_BYTES = 32
IDEMPOTENCY_RETENTION = timedelta(days=30)
TEAM_STATUSES = ("active", "suspended")
_UNSET: Any = object()

# (uow, team_id, now) -> the start of the period a cap counts in, or None to fall back.
PeriodResolver = Callable[[SqlUnitOfWork, str, datetime], datetime | None]


class LastAdmin(Conflict):
    code = "last_admin"
    title = "A team keeps at least one admin"


class KeyNotFound(NotFound):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key {key_id!r} in this team", resource="api_key", id=key_id)


class KeyRevoked(Conflict):
    code = "key_revoked"
    title = "The API key is revoked"

    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"API key {key_id!r} is revoked: it spends nothing, so it takes no cap; "
            "issue a new key and cap that one",
            key_id=key_id,
        )


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: ``api_key`` is shown once and is not stored."""

    key_id: str
    team_id: str
    member_id: str
    api_key: str
    created_at: datetime
    kind: KeyKind = KeyKind.PERSONAL


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    team_id: str
    member_id: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None
    monthly_cap: int | None = None
    kind: KeyKind = KeyKind.PERSONAL

    @classmethod
    def of(cls, row: Any) -> KeyInfo:
        """From an ``api_keys`` row."""
        return cls(
            row.id,
            row.team_id,
            row.member_id,
            row.label,
            row.created_at,
            row.revoked_at,
            row.monthly_cap,
            KeyKind(row.kind),
        )


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def parse_key(api_key: str) -> tuple[str, str] | None:
    """``(team_id, key_id)`` named by a presented key, or None if it is not one of ours."""
    parts = api_key.split(".")
    if len(parts) != 4 or parts[0] != KEY_PREFIX or not all(parts):
        return None
    if len(parts[1]) > 40 or len(parts[2]) > 40:
        return None
    return parts[1], parts[2]


def calendar_month_start(now: datetime, time_zone: str) -> datetime:
    """The start (as an aware instant) of the calendar month containing ``now`` in ``time_zone``."""
    local = now.astimezone(ZoneInfo(time_zone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def subscription_period_start(uow: SqlUnitOfWork, team_id: str, now: datetime) -> datetime | None:
    """The team's billing period start, if the subscriptions area stores one."""
    table = metadata.tables.get("subscriptions")
    if table is None or "anchor" not in table.c or "time_zone" not in table.c:
        return None
    row = uow.conn.execute(
        select(table.c.anchor, table.c.time_zone).where(table.c.team_id == team_id)
    ).first()
    if row is None or row.anchor is None:
        return None
    from creditbook.domain.periods import period_at

    anchor = row.anchor
    if isinstance(anchor, str):
        anchor = datetime.fromisoformat(anchor)
    if anchor.tzinfo is None:
        from datetime import UTC

        anchor = anchor.replace(tzinfo=UTC)
    return period_at(anchor, str(row.time_zone), now).start


class AccessService:
    """Keys, members and caps of teams, over one kernel (and its teams)."""

    def __init__(self, kernel: Kernel[SqlUnitOfWork], teams: Teams | None = None) -> None:
        self.kernel = kernel
        self.teams = teams or Teams(kernel)
        self.period_resolvers: list[PeriodResolver] = [subscription_period_start]
        # Run after a change of who a key acts for: revocation, removal, role, team status.
        self.on_change: list[Callable[[], None]] = []

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()

    def install(self) -> AccessService:
        """Make this service's cap guard the book's one (``creditbook.open`` installs one).

        Replaces the guard of any other ``AccessService`` on the book, so the caps
        are checked once per transaction, by the service installed last.
        """
        guards = self.kernel.spend_guards
        owner = AccessService
        guards[:] = [g for g in guards if not isinstance(getattr(g, "__self__", None), owner)]
        guards.append(self.cap_guard)
        self.kernel.guards_read_caps = True
        return self

    # ---- teams ------------------------------------------------------------

    def create_team(
        self, name: str, *, time_zone: str, admin_email: str
    ) -> tuple[Team, Member, IssuedKey]:
        """A new team with its first admin and the admin's key."""
        team = self.teams.create_team(name, time_zone=time_zone)
        admin = self.teams.add_member(team.id, admin_email, Role.ADMIN)
        key = self.issue_key(team.id, admin.id, label="created with the team")
        return team, admin, key

    def team_status(self, team_id: str) -> str:
        with self.kernel.uow() as uow:
            if uow.get_team(team_id) is None:
                raise TeamNotFound(team_id)
            status = uow.conn.execute(
                select(team_access.c.status).where(team_access.c.team_id == team_id)
            ).scalar()
        return str(status) if status is not None else "active"

    def set_team_status(self, team_id: str, status: str) -> str:
        if status not in TEAM_STATUSES:
            raise InvalidInput(
                f"unknown status {status!r}; valid: {', '.join(TEAM_STATUSES)}", field="status"
            )
        with self.kernel.uow() as uow:
            uow.lock_team(team_id)
            now = self.kernel.clock.now()
            done = uow.conn.execute(
                update(team_access)
                .where(team_access.c.team_id == team_id)
                .values(status=status, updated_at=now)
            )
            if done.rowcount == 0:
                uow.conn.execute(
                    insert(team_access).values(team_id=team_id, status=status, updated_at=now)
                )
            uow.commit()
        self._changed()
        return status

    # ---- keys ------------------------------------------------------------------

    def issue_key(
        self,
        team_id: str,
        member_id: str,
        *,
        label: str | None = None,
        monthly_cap: int | None = None,
        kind: KeyKind | str = KeyKind.PERSONAL,
    ) -> IssuedKey:
        """A new key for the member, with an optional monthly cap on what it spends.

        ``kind="service"`` makes a service key (see the module docstring); its
        spends are attributed to its member and itself, as any key's.
        """
        if label is not None and len(label) > 100:
            raise InvalidInput("a key label is at most 100 characters", field="label")
        _check_cap(monthly_cap)
        kind = kind if isinstance(kind, KeyKind) else KeyKind.parse(kind)
        key_id = new_id("key")
        secret = secrets.token_urlsafe(SECRET_BYTES)
        api_key = f"{KEY_PREFIX}.{team_id}.{key_id}.{secret}"
        now = self.kernel.clock.now()
        with self.kernel.uow() as uow:
            uow.lock_team(team_id)
            member = uow.get_member(team_id, member_id)
            if member is None or not member.active:
                raise MemberNotFound(member_id)
            uow.conn.execute(
                insert(api_keys).values(
                    team_id=team_id,
                    id=key_id,
                    member_id=member_id,
                    key_hash=hash_key(api_key),
                    label=label,
                    created_at=now,
                    revoked_at=None,
                    monthly_cap=monthly_cap,
                    kind=kind.value,
                )
            )
            uow.commit()
        return IssuedKey(key_id, team_id, member_id, api_key, now, kind)

    def verify(self, api_key: str) -> Principal | None:
        """The principal of a valid, unrevoked key of an active member; None otherwise."""
        named = parse_key(api_key)
        if named is None:
            return None
        team_id, key_id = named
        query = (
            select(
                api_keys.c.key_hash,
                api_keys.c.member_id,
                api_keys.c.kind,
                members.c.role,
                team_access.c.status,
            )
            .select_from(
                api_keys.join(
                    members,
                    and_(
                        members.c.team_id == api_keys.c.team_id,
                        members.c.id == api_keys.c.member_id,
                    ),
                ).outerjoin(team_access, team_access.c.team_id == api_keys.c.team_id)
            )
            .where(
                api_keys.c.team_id == team_id,
                api_keys.c.id == key_id,
                api_keys.c.revoked_at.is_(None),
                members.c.active.is_(True),
            )
        )
        with self.kernel.uow() as uow:
            row = uow.conn.execute(query).first()
        if row is None or not hmac.compare_digest(row.key_hash, hash_key(api_key)):
            return None
        return Principal(
            team_id,
            row.member_id,
            key_id,
            Role(row.role),
            row.status or "active",
            KeyKind(row.kind),
        )

    def list_keys(self, team_id: str, member_id: str | None = None) -> list[KeyInfo]:
        query = select(api_keys).where(api_keys.c.team_id == team_id)
        if member_id is not None:
            query = query.where(api_keys.c.member_id == member_id)
        with self.kernel.uow() as uow:
            rows = list(uow.conn.execute(query.order_by(api_keys.c.id)))
        return [KeyInfo.of(r) for r in rows]

    def get_key(self, team_id: str, key_id: str) -> KeyInfo:
        with self.kernel.uow() as uow:
            return self._key(uow, team_id, key_id)

    def revoke_key(self, team_id: str, key_id: str) -> KeyInfo:
        """Revoke the key; the dashboard sessions it opened end with it."""

        def revoked(uow: SqlUnitOfWork, key: KeyInfo) -> dict[str, Any]:
            end_sessions(uow.conn, team_id, key_id=key_id)
            return {"revoked_at": key.revoked_at or self.kernel.clock.now()}

        info = self._update_key(team_id, key_id, revoked)
        self._changed()
        return info

    def set_key_cap(self, team_id: str, key_id: str, monthly_cap: int | None) -> KeyInfo:
        """Cap what is spent through one key per month; ``None`` removes the cap.

        Under the team's lock, as every spend is: a charge in flight is checked
        against the cap before or after this, never half of each.
        """
        _check_cap(monthly_cap)

        def capped(uow: SqlUnitOfWork, key: KeyInfo) -> dict[str, Any]:
            if key.revoked_at is not None:
                raise KeyRevoked(key_id)
            return {"monthly_cap": monthly_cap}

        return self._update_key(team_id, key_id, capped)

    def _update_key(
        self,
        team_id: str,
        key_id: str,
        change: Callable[[SqlUnitOfWork, KeyInfo], dict[str, Any]],
    ) -> KeyInfo:
        """Write ``change(uow, key)``'s columns to the key, under the team's lock; the key after."""
        with self.kernel.uow() as uow:
            uow.lock_team(team_id)
            key = self._key(uow, team_id, key_id)
            values = change(uow, key)
            uow.conn.execute(
                update(api_keys)
                .where(api_keys.c.team_id == team_id, api_keys.c.id == key_id)
                .values(**values)
            )
            uow.commit()
        return replace(key, **values)

    @staticmethod
    def _key(uow: SqlUnitOfWork, team_id: str, key_id: str) -> KeyInfo:
        row = uow.conn.execute(
            select(api_keys).where(api_keys.c.team_id == team_id, api_keys.c.id == key_id)
        ).first()
        if row is None:
            raise KeyNotFound(key_id)
        return KeyInfo.of(row)

    # ---- members ------------------------------------------------------------------

    def add_member(
        self, team_id: str, email: str, role: Role | str, *, monthly_cap: int | None = None
    ) -> tuple[Member, IssuedKey]:
        _check_cap(monthly_cap)
        member = self.teams.add_member(team_id, email, role, monthly_cap=monthly_cap)
        return member, self.issue_key(team_id, member.id)

    def get_member(self, team_id: str, member_id: str) -> Member:
        with self.kernel.uow() as uow:
            member = uow.get_member(team_id, member_id)
        if member is None:
            raise MemberNotFound(member_id)
        return member

    def update_member(
        self,
        team_id: str,
        member_id: str,
        *,
        role: Role | str | None = None,
        monthly_cap: int | None = _UNSET,
    ) -> Member:
        """Change a member's role and/or cap; ``monthly_cap=None`` removes the cap."""
        values: dict[str, Any] = {}
        new_role = None
        if role is not None:
            new_role = role if isinstance(role, Role) else Role.parse(role)
            values["role"] = new_role.value
        if monthly_cap is not _UNSET:
            _check_cap(monthly_cap)
            values["monthly_cap"] = monthly_cap
        with self.kernel.uow() as uow:
            uow.lock_team(team_id)
            member = uow.get_member(team_id, member_id)
            if member is None or not member.active:
                raise MemberNotFound(member_id)
            if member.is_admin and new_role is Role.MEMBER:
                self._keep_an_admin(uow, team_id, member_id)
            if values:
                uow.conn.execute(
                    update(members)
                    .where(members.c.team_id == team_id, members.c.id == member_id)
                    .values(**values)
                )
            # A session carries the role it was opened with: a new role, a new sign-in.
            role_changed = new_role is not None and new_role != member.role
            if role_changed:
                end_sessions(uow.conn, team_id, member_id=member_id)
            updated = uow.get_member(team_id, member_id)
            uow.commit()
        assert updated is not None
        if role_changed:
            self._changed()
        return updated

    def remove_member(self, team_id: str, member_id: str) -> Member:
        """Deactivate a member and revoke every key of theirs; the ledger keeps their history."""
        now = self.kernel.clock.now()
        with self.kernel.uow() as uow:
            uow.lock_team(team_id)
            member = uow.get_member(team_id, member_id)
            if member is None or not member.active:
                raise MemberNotFound(member_id)
            if member.is_admin:
                self._keep_an_admin(uow, team_id, member_id)
            uow.conn.execute(
                update(members)
                .where(members.c.team_id == team_id, members.c.id == member_id)
                .values(active=False)
            )
            uow.conn.execute(
                update(api_keys)
                .where(
                    api_keys.c.team_id == team_id,
                    api_keys.c.member_id == member_id,
                    api_keys.c.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )
            end_sessions(uow.conn, team_id, member_id=member_id)
            row = uow.conn.execute(
                select(members).where(members.c.team_id == team_id, members.c.id == member_id)
            ).one()
            uow.commit()
        self._changed()
        return member_from_row(row)

    def _keep_an_admin(self, uow: SqlUnitOfWork, team_id: str, leaving: str) -> None:
        others = uow.conn.execute(
            select(func.count())
            .select_from(members)
            .where(
                members.c.team_id == team_id,
                members.c.role == Role.ADMIN.value,
                members.c.active.is_(True),
                members.c.id != leaving,
            )
        ).scalar_one()
        if others == 0:
            raise LastAdmin(
                "a team keeps at least one admin: make another member admin first",
                member_id=leaving,
            )

    # ---- caps ------------------------------------------------------------------------

    def period_start(self, uow: SqlUnitOfWork, team_id: str, now: datetime) -> datetime:
        """Where the current cap month started for this team."""
        for resolve in self.period_resolvers:
            found = resolve(uow, team_id, now)
            if found is not None:
                return found
        team = uow.get_team(team_id)
        return calendar_month_start(now, team.time_zone if team else "UTC")

    def member_spent(
        self, uow: SqlUnitOfWork, team_id: str, member_id: str, since: datetime
    ) -> int:
        """Credits the member spent since ``since`` plus what their active holds reserve."""
        return self._spent(uow, team_id, "member_id", member_id, since)

    def key_spent(self, uow: SqlUnitOfWork, team_id: str, key_id: str, since: datetime) -> int:
        """Credits spent through the key since ``since`` plus what its active holds reserve."""
        return self._spent(uow, team_id, "api_key_id", key_id, since)

    @staticmethod
    def _spent(uow: SqlUnitOfWork, team_id: str, by: str, who: str, since: datetime) -> int:
        spent = uow.conn.execute(
            select(func.coalesce(func.sum(ledger_entries.c.credits), 0)).where(
                ledger_entries.c.team_id == team_id,
                ledger_entries.c[by] == who,
                ledger_entries.c.kind.in_([EntryKind.CHARGE.value, EntryKind.CAPTURE.value]),
                ledger_entries.c.created_at >= since,
            )
        ).scalar_one()
        held = uow.conn.execute(
            select(func.coalesce(func.sum(holds.c.amount), 0)).where(
                holds.c.team_id == team_id,
                holds.c[by] == who,
                holds.c.status == "active",
            )
        ).scalar_one()
        return int(spent) + int(held)

    def usage_this_month(self, team_id: str, member_id: str) -> int:
        """What the member spent this cap month (active holds included)."""
        with self.kernel.uow() as uow:
            since = self.period_start(uow, team_id, self.kernel.clock.now())
            return self.member_spent(uow, team_id, member_id, since)

    def key_usage_this_month(self, team_id: str, key_id: str) -> int:
        """What was spent through the key this cap month (active holds included)."""
        with self.kernel.uow() as uow:
            since = self.period_start(uow, team_id, self.kernel.clock.now())
            return self.key_spent(uow, team_id, key_id, since)

    def cap_guard(self, uow: SqlUnitOfWork, book: TeamBook) -> None:
        """Spend guard: refuse a charge or hold that takes a member or a key past its cap."""
        adding: dict[tuple[str, str], int] = {}
        for entry in book.entries:
            # A capture never exceeds its hold, which already counted: only new
            # charges and holds can raise what a member or a key has spent.
            if entry.kind not in (EntryKind.CHARGE, EntryKind.HOLD) or entry.credits <= 0:
                continue
            member_id, key_id = entry.actor.member_id, entry.actor.api_key_id
            if member_id:
                adding[("member", member_id)] = adding.get(("member", member_id), 0) + entry.credits
            if key_id:
                adding[("api_key", key_id)] = adding.get(("api_key", key_id), 0) + entry.credits
        caps = uow.spending_caps(book.team_id) if adding else {}
        since: datetime | None = None
        for (kind, who), needed in adding.items():
            cap = caps.get((kind, who))
            if cap is None:
                continue
            since = since or self.period_start(uow, book.team_id, book.now)
            by = "member_id" if kind == "member" else "api_key_id"
            cap.check(self._spent(uow, book.team_id, by, who, since), needed)

    # ---- housekeeping ------------------------------------------------------------------

    def purge_idempotency_keys(self, older_than: timedelta = IDEMPOTENCY_RETENTION) -> int:
        """Delete idempotency keys older than ``older_than`` (never less than 30 days)."""
        if older_than < IDEMPOTENCY_RETENTION:
            raise InvalidInput("idempotency keys are kept at least 30 days", field="older_than")
        cutoff = self.kernel.clock.now() - older_than
        with self.kernel.uow() as uow:
            done = uow.conn.execute(
                delete(idempotency_keys).where(idempotency_keys.c.created_at < cutoff)
            )
            uow.commit()
        return int(done.rowcount or 0)


def _check_cap(cap: int | None) -> None:
    check_credits(cap, "monthly_cap", label="a monthly cap")
