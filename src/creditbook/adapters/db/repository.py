"""The SQL unit of work: one transaction, one team, and the rows behind a TeamBook.

``SqlUnitOfWork`` rolls back unless ``commit()`` is called (cosmicpython's
rule). ``lock_team`` is the first statement of every change of credits: it
serializes writers of one team on both databases. ``save_book`` writes what
a ``TeamBook`` changed with one statement per kind of row (executemany), so
a batch of commands costs the same number of round trips as one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, func, insert, select, update

from creditbook.adapters.db.tables import (
    grants,
    holds,
    idempotency_keys,
    ledger_entries,
    ledger_postings,
    members,
    teams,
)
from creditbook.domain.book import TeamBook
from creditbook.domain.errors import TeamNotFound
from creditbook.domain.grants import Category, Grant, Source
from creditbook.domain.holds import Hold, HoldStatus
from creditbook.domain.ledger import Account, Actor, Entry, EntryKind, Posting
from creditbook.domain.team import Member, Role, Team


def grant_from_row(row: Any) -> Grant:
    return Grant(
        id=row.id,
        team_id=row.team_id,
        source=Source(row.source),
        category=Category(row.category),
        scope=frozenset(row.scope) if row.scope is not None else None,
        amount=row.amount,
        remaining=row.remaining,
        reserved=row.reserved,
        effective_at=row.effective_at,
        expires_at=row.expires_at,
        created_at=row.created_at,
        origin=row.origin,
        bucket=row.bucket,
        closed=row.closed,
    )


def grant_to_row(g: Grant) -> dict[str, Any]:
    return {
        "team_id": g.team_id,
        "id": g.id,
        "source": g.source.value,
        "category": g.category.value,
        "bucket": g.bucket,
        "scope": sorted(g.scope) if g.scope is not None else None,
        "amount": g.amount,
        "remaining": g.remaining,
        "reserved": g.reserved,
        "effective_at": g.effective_at,
        "expires_at": g.expires_at,
        "created_at": g.created_at,
        "origin": g.origin,
        "closed": g.closed,
    }


def hold_from_row(row: Any) -> Hold:
    return Hold(
        id=row.id,
        team_id=row.team_id,
        feature=row.feature,
        amount=row.amount,
        quantity=row.quantity,
        unit_cost=row.unit_cost,
        multiplier=row.multiplier,
        allocations=tuple((str(g), int(c)) for g, c in row.allocations),
        status=HoldStatus(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        actor=Actor(member_id=row.member_id, api_key_id=row.api_key_id, job_id=row.job_id),
        captured=row.captured,
        resolved_at=row.resolved_at,
        tier=row.tier,
        idempotency_key=row.idempotency_key,
    )


def hold_to_row(h: Hold) -> dict[str, Any]:
    return {
        "team_id": h.team_id,
        "id": h.id,
        "feature": h.feature,
        "amount": h.amount,
        "captured": h.captured,
        "quantity": h.quantity,
        "unit_cost": h.unit_cost,
        "multiplier": h.multiplier,
        "tier": h.tier,
        "allocations": [[g, c] for g, c in h.allocations],
        "status": h.status.value,
        "created_at": h.created_at,
        "expires_at": h.expires_at,
        "resolved_at": h.resolved_at,
        "member_id": h.actor.member_id,
        "api_key_id": h.actor.api_key_id,
        "job_id": h.actor.job_id,
        "idempotency_key": h.idempotency_key,
    }


def entry_to_row(e: Entry) -> dict[str, Any]:
    return {
        "team_id": e.team_id,
        "id": e.id,
        "kind": e.kind.value,
        "created_at": e.created_at,
        "credits": e.credits,
        "feature": e.feature,
        "quantity": e.quantity,
        "outcome": e.outcome,
        "unit_cost": e.unit_cost,
        "multiplier": e.multiplier,
        "member_id": e.actor.member_id,
        "api_key_id": e.actor.api_key_id,
        "job_id": e.actor.job_id,
        "operator": e.actor.operator,
        "hold_id": e.hold_id,
        "idempotency_key": e.idempotency_key,
        "memo": e.memo,
        "meta": e.meta,
    }


def entry_from_row(row: Any, postings: Sequence[Posting] = ()) -> Entry:
    return Entry(
        id=row.id,
        team_id=row.team_id,
        kind=EntryKind(row.kind),
        created_at=row.created_at,
        postings=tuple(postings),
        credits=row.credits,
        actor=Actor(
            member_id=row.member_id,
            api_key_id=row.api_key_id,
            job_id=row.job_id,
            operator=row.operator,
        ),
        feature=row.feature,
        quantity=row.quantity,
        outcome=row.outcome,
        unit_cost=row.unit_cost,
        multiplier=row.multiplier,
        hold_id=row.hold_id,
        idempotency_key=row.idempotency_key,
        memo=row.memo,
        meta=dict(row.meta or {}),
    )


def member_from_row(row: Any) -> Member:
    return Member(
        id=row.id,
        team_id=row.team_id,
        email=row.email,
        role=Role(row.role),
        created_at=row.created_at,
        monthly_cap=row.monthly_cap,
        active=row.active,
    )


_UPDATE_GRANT = (
    update(grants)
    .where(and_(grants.c.team_id == bindparam("b_team_id"), grants.c.id == bindparam("b_id")))
    .values(
        remaining=bindparam("b_remaining"),
        reserved=bindparam("b_reserved"),
        closed=bindparam("b_closed"),
    )
)

_UPDATE_HOLD = (
    update(holds)
    .where(and_(holds.c.team_id == bindparam("b_team_id"), holds.c.id == bindparam("b_id")))
    .values(
        status=bindparam("b_status"),
        captured=bindparam("b_captured"),
        resolved_at=bindparam("b_resolved_at"),
    )
)


class SqlUnitOfWork:
    """One database transaction. Use as a context manager; call ``commit()``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None
        self._committed = False

    # ---- transaction -----------------------------------------------------

    def __enter__(self) -> SqlUnitOfWork:
        self._conn = self.engine.connect()
        self._conn.begin()
        self._committed = False
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        self._conn = None
        if conn is None:
            return
        try:
            if not self._committed:
                conn.rollback()
        finally:
            conn.close()

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._conn

    def commit(self) -> None:
        self.conn.commit()
        self._committed = True

    def rollback(self) -> None:
        self.conn.rollback()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # ---- teams and members -------------------------------------------------

    def add_team(self, team: Team, due_at: datetime | None = None) -> None:
        self.conn.execute(
            insert(teams).values(
                id=team.id,
                name=team.name,
                time_zone=team.time_zone,
                created_at=team.created_at,
                due_at=due_at,
                settings={},
            )
        )

    def get_team(self, team_id: str) -> Team | None:
        row = self.conn.execute(select(teams).where(teams.c.id == team_id)).first()
        if row is None:
            return None
        return Team(row.id, row.name, row.time_zone, row.created_at)

    def lock_team(self, team_id: str) -> datetime | None:
        """Lock the team for this transaction; return its ``due_at``."""
        query = select(teams.c.id, teams.c.due_at).where(teams.c.id == team_id)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        if row is None:
            raise TeamNotFound(team_id)
        due: datetime | None = row.due_at
        return due

    def team_due_at(self, team_id: str) -> datetime | None:
        row = self.conn.execute(
            select(teams.c.id, teams.c.due_at).where(teams.c.id == team_id)
        ).first()
        if row is None:
            raise TeamNotFound(team_id)
        due: datetime | None = row.due_at
        return due

    def set_due_at(self, team_id: str, due_at: datetime | None) -> None:
        self.conn.execute(update(teams).where(teams.c.id == team_id).values(due_at=due_at))

    def list_team_ids(self, *, due_before: datetime | None = None) -> list[str]:
        query = select(teams.c.id).order_by(teams.c.id)
        if due_before is not None:
            query = query.where(teams.c.due_at <= due_before)
        return [r.id for r in self.conn.execute(query)]

    def add_member(self, member: Member) -> None:
        self.conn.execute(
            insert(members).values(
                team_id=member.team_id,
                id=member.id,
                email=member.email,
                role=member.role.value,
                monthly_cap=member.monthly_cap,
                active=member.active,
                created_at=member.created_at,
            )
        )

    def get_member(self, team_id: str, member_id: str) -> Member | None:
        row = self.conn.execute(
            select(members).where(members.c.team_id == team_id, members.c.id == member_id)
        ).first()
        return member_from_row(row) if row is not None else None

    def find_member_by_email(self, team_id: str, email: str) -> Member | None:
        row = self.conn.execute(
            select(members).where(members.c.team_id == team_id, members.c.email == email)
        ).first()
        return member_from_row(row) if row is not None else None

    def list_members(self, team_id: str) -> list[Member]:
        rows = self.conn.execute(
            select(members).where(members.c.team_id == team_id).order_by(members.c.created_at)
        )
        return [member_from_row(r) for r in rows]

    # ---- grants, holds, books ----------------------------------------------

    def load_grants(self, team_id: str, *, live_only: bool = True) -> list[Grant]:
        query = select(grants).where(grants.c.team_id == team_id)
        if live_only:
            # A grant with nothing remaining can never move again.
            query = query.where(grants.c.remaining > 0)
        return [grant_from_row(r) for r in self.conn.execute(query)]

    def get_grant(self, team_id: str, grant_id: str) -> Grant | None:
        row = self.conn.execute(
            select(grants).where(grants.c.team_id == team_id, grants.c.id == grant_id)
        ).first()
        return grant_from_row(row) if row is not None else None

    def load_holds(self, team_id: str, hold_ids: Iterable[str]) -> list[Hold]:
        ids = list(hold_ids)
        if not ids:
            return []
        rows = self.conn.execute(
            select(holds).where(holds.c.team_id == team_id, holds.c.id.in_(ids))
        )
        return [hold_from_row(r) for r in rows]

    def load_due_holds(self, team_id: str, now: datetime) -> list[Hold]:
        rows = self.conn.execute(
            select(holds).where(
                holds.c.team_id == team_id,
                holds.c.status == HoldStatus.ACTIVE.value,
                holds.c.expires_at <= now,
            )
        )
        return [hold_from_row(r) for r in rows]

    def load_active_holds(self, team_id: str) -> list[Hold]:
        rows = self.conn.execute(
            select(holds).where(
                holds.c.team_id == team_id, holds.c.status == HoldStatus.ACTIVE.value
            )
        )
        return [hold_from_row(r) for r in rows]

    def next_due(self, team_id: str) -> datetime | None:
        """The earliest active hold TTL or open grant expiry of the team."""
        hold_due = self.conn.execute(
            select(func.min(holds.c.expires_at)).where(
                holds.c.team_id == team_id, holds.c.status == HoldStatus.ACTIVE.value
            )
        ).scalar()
        grant_due = self.conn.execute(
            select(func.min(grants.c.expires_at)).where(
                grants.c.team_id == team_id,
                grants.c.remaining > 0,
                grants.c.closed.is_(False),
            )
        ).scalar()
        found = [d for d in (hold_due, grant_due) if d is not None]
        if not found:
            return None
        # min() over aware datetimes; SQLite returns text for aggregates.
        return min(_as_datetime(d) for d in found)

    def save_book(self, book: TeamBook) -> None:
        new_grants, changed_grants, new_holds, changed_holds, entries = book.pending()
        conn = self.conn
        if new_grants:
            conn.execute(insert(grants), [grant_to_row(g) for g in new_grants])
        if changed_grants:
            conn.execute(
                _UPDATE_GRANT,
                [
                    {
                        "b_team_id": g.team_id,
                        "b_id": g.id,
                        "b_remaining": g.remaining,
                        "b_reserved": g.reserved,
                        "b_closed": g.closed,
                    }
                    for g in changed_grants
                ],
            )
        if new_holds:
            conn.execute(insert(holds), [hold_to_row(h) for h in new_holds])
        if changed_holds:
            conn.execute(
                _UPDATE_HOLD,
                [
                    {
                        "b_team_id": h.team_id,
                        "b_id": h.id,
                        "b_status": h.status.value,
                        "b_captured": h.captured,
                        "b_resolved_at": h.resolved_at,
                    }
                    for h in changed_holds
                ],
            )
        if entries:
            self.insert_entries(entries)
        book.clear_pending()

    def insert_entries(self, entries: Sequence[Entry]) -> None:
        self.conn.execute(insert(ledger_entries), [entry_to_row(e) for e in entries])
        postings = [
            {
                "team_id": e.team_id,
                "entry_id": e.id,
                "seq": seq,
                "grant_id": p.grant_id,
                "account": p.account.value,
                "amount": p.amount,
            }
            for e in entries
            for seq, p in enumerate(e.postings)
        ]
        if postings:
            self.conn.execute(insert(ledger_postings), postings)

    # ---- idempotency -------------------------------------------------------

    def get_idempotency(self, team_id: str, key: str) -> tuple[str, str, dict[str, Any]] | None:
        row = self.conn.execute(
            select(
                idempotency_keys.c.request_hash,
                idempotency_keys.c.operation,
                idempotency_keys.c.response,
            ).where(idempotency_keys.c.team_id == team_id, idempotency_keys.c.key == key)
        ).first()
        if row is None:
            return None
        return row.request_hash, row.operation, dict(row.response)

    def put_idempotency(
        self,
        team_id: str,
        key: str,
        request_hash: str,
        operation: str,
        response: dict[str, Any],
        now: datetime,
    ) -> None:
        self.conn.execute(
            insert(idempotency_keys).values(
                team_id=team_id,
                key=key,
                request_hash=request_hash,
                operation=operation,
                response=response,
                created_at=now,
            )
        )

    # ---- reading the ledger -------------------------------------------------

    def list_entries(
        self,
        team_id: str,
        *,
        limit: int,
        before: str | None = None,
        feature: str | None = None,
        member_id: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        with_postings: bool = True,
    ) -> list[Entry]:
        e = ledger_entries
        query = select(e).where(e.c.team_id == team_id)
        if before is not None:
            query = query.where(e.c.id < before)
        if feature is not None:
            query = query.where(e.c.feature == feature)
        if member_id is not None:
            query = query.where(e.c.member_id == member_id)
        if kind is not None:
            query = query.where(e.c.kind == kind)
        if since is not None:
            query = query.where(e.c.created_at >= since)
        if until is not None:
            query = query.where(e.c.created_at < until)
        rows = list(self.conn.execute(query.order_by(e.c.id.desc()).limit(limit)))
        postings: dict[str, list[Posting]] = {}
        if with_postings and rows:
            p = ledger_postings
            for prow in self.conn.execute(
                select(p)
                .where(p.c.team_id == team_id, p.c.entry_id.in_([r.id for r in rows]))
                .order_by(p.c.entry_id, p.c.seq)
            ):
                postings.setdefault(prow.entry_id, []).append(
                    Posting(prow.grant_id, Account(prow.account), prow.amount)
                )
        return [entry_from_row(r, postings.get(r.id, ())) for r in rows]


def _as_datetime(value: Any) -> datetime:
    from datetime import UTC

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
