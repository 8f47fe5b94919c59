"""The SQL unit of work: one transaction, one team, and the rows behind a TeamBook.

``SqlUnitOfWork`` rolls back unless ``commit()`` is called (cosmicpython's
rule). ``lock_team`` is the first statement of every change of credits: it
serializes writers of one team on both databases. ``save_book`` writes what
a ``TeamBook`` changed with one statement per kind of row (executemany), so
a batch of commands costs the same number of round trips as one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import orjson
from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)

from creditbook.adapters.db import outage
from creditbook.adapters.db.sqlite_rows import SqliteSelect, placeholders
from creditbook.adapters.db.tables import (
    grants,
    holds,
    idempotency_keys,
    ledger_entries,
    ledger_postings,
    members,
    teams,
)
from creditbook.adapters.db.tables_purchases import billing_settings
from creditbook.domain.book import TeamBook
from creditbook.domain.errors import TeamNotFound
from creditbook.domain.grants import Category, Grant, Source
from creditbook.domain.holds import Hold, HoldStatus
from creditbook.domain.ledger import Account, Actor, Entry, EntryKind, Posting
from creditbook.domain.team import Member, Role, SpendingCap, Team


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


_GRANT_COLUMNS = (
    "team_id, id, source, category, scope, amount, remaining, reserved, "
    "effective_at, expires_at, created_at, origin, bucket, closed"
)
_SOURCES: dict[str, Source] = {s.value: s for s in Source}
_CATEGORIES: dict[str, Category] = {c.value: c for c in Category}


LIVE_GRANTS_SQL = f"SELECT {_GRANT_COLUMNS} FROM grants WHERE team_id = ANY(%s) AND remaining > 0"

# The group committer's reads. psycopg prepares a statement after a few runs and
# PostgreSQL then keeps ONE generic plan for the connection's life, planned with the
# table sizes of that moment. Planned on a young table, a join against the batch's
# keys became a hash join over a sequential scan of the whole table, and stayed one
# as the table grew: the idempotency lookup cost 425 us per batch of 8 with only
# 8,400 keys stored, and grew with every charge, until an autovacuum ANALYZE
# invalidated the plan. Each key is therefore probed through a LATERAL subquery
# that the planner cannot flatten (LIMIT / OFFSET 0): an index lookup per key,
# whatever the statistics said when the plan was made.
#
# With that form the generic plan is right at any size, and PostgreSQL must use it.
# It plans a prepared statement afresh (a custom plan) while that looks cheaper than
# the generic one, and with the array given as a constant ``unnest`` estimates its real
# length (one team, say) where the generic plan assumes ten: the custom plan always
# looked cheaper, and every batch planned its reads again, 15% of the backend's CPU
# (decision 0008). Each array therefore comes through a scalar
# subquery, which hides its length from the custom plan too: both estimate the same,
# and after its five custom plans the statement runs its generic one.
_TEAMS = "unnest((SELECT %s::text[]))"
_PAIRS = "unnest((SELECT %s::text[]), (SELECT %s::text[]))"
BATCH_KEYS_SQL = (
    "SELECT k.team_id, k.key, k.request_hash, k.operation, k.response "
    f"FROM {_PAIRS} AS w(t, k) CROSS JOIN LATERAL "
    "(SELECT * FROM idempotency_keys i WHERE i.team_id = w.t AND i.key = w.k LIMIT 1) k"
)
BATCH_HOLDS_SQL = (
    f"SELECT h.* FROM {_PAIRS} AS w(t, i) CROSS JOIN LATERAL "
    "(SELECT * FROM holds x WHERE x.team_id = w.t AND x.id = w.i LIMIT 1) h"
)
BATCH_GRANTS_SQL = (
    f"SELECT g.* FROM {_TEAMS} AS w(t) CROSS JOIN LATERAL "
    f"(SELECT {_GRANT_COLUMNS} FROM grants x WHERE x.team_id = w.t AND x.remaining > 0 "
    "OFFSET 0) g"
)
BATCH_SETTINGS_SQL = (
    f"SELECT s.* FROM {_TEAMS} AS w(t) CROSS JOIN LATERAL "
    "(SELECT * FROM billing_settings x WHERE x.team_id = w.t LIMIT 1) s"
)
# The lateral form also fixes the lock order: the probes run in the array's order
# (``ids`` sorted, as every other locker of several teams does), one row lock each.
BATCH_LOCK_SQL = (
    f"SELECT t.id, t.due_at FROM {_TEAMS} AS w(i) CROSS JOIN LATERAL "
    "(SELECT id, due_at FROM teams x WHERE x.id = w.i FOR UPDATE) t"
)
# Teams' spending caps: their capped members and capped, unrevoked API keys, as
# (team_id, kind, id, name, monthly_cap) rows (``SpendingCap``), in one statement.
# ``{teams}`` completes ``team_id`` into a condition: ``= w.t``, ``IN (?, ?)``...
_CAPS_OF_TEAMS = (
    "SELECT x.team_id, 'member', x.id, x.email, x.monthly_cap FROM members x "
    "WHERE x.team_id {teams} AND x.monthly_cap IS NOT NULL "
    "UNION ALL SELECT k.team_id, 'api_key', k.id, coalesce(k.label, k.id), k.monthly_cap "
    "FROM api_keys k WHERE k.team_id {teams} AND k.monthly_cap IS NOT NULL "
    "AND k.revoked_at IS NULL"
)
BATCH_CAPS_SQL = (
    f"SELECT c.* FROM {_TEAMS} AS w(t) CROSS JOIN LATERAL "
    f"({_CAPS_OF_TEAMS.format(teams='= w.t')} OFFSET 0) c"
)


BatchReads = tuple[
    dict[str, datetime | None],  # locked teams' due_at
    dict[tuple[str, str], tuple[str, str, dict[str, Any]]],  # stored (hash, operation, answer)
    dict[str, list[Grant]],  # live grants by team
    dict[tuple[str, str], Hold],  # named holds
]
"""What ``read_batch`` answers."""


def batch_wanted(
    team_ids: Iterable[str], keys: Iterable[tuple[str, str]], hold_keys: Iterable[tuple[str, str]]
) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """A batch's teams, idempotency keys and holds, each once and sorted (the lock order)."""
    return sorted(set(team_ids)), sorted(set(keys)), sorted(set(hold_keys))


def pg_batch_reads(
    ids: list[str],
    wanted_keys: list[tuple[str, str]],
    wanted_holds: list[tuple[str, str]],
    caps: bool,
) -> list[tuple[str, list[Any], Any]]:
    """The group committer's reads on PostgreSQL, in order: (SQL, parameters, row factory).

    The team lock comes first; under READ COMMITTED each later statement takes
    its own snapshot, so the reads see what the lock's previous holder committed.
    ``SqlUnitOfWork.take_batch_reads`` turns their rows into ``read_batch``'s answer.
    """
    from psycopg.rows import namedtuple_row, tuple_row

    reads: list[tuple[str, list[Any], Any]] = [(BATCH_LOCK_SQL, [ids], namedtuple_row)]
    if wanted_keys:
        keys = [[t for t, _ in wanted_keys], [k for _, k in wanted_keys]]
        reads.append((BATCH_KEYS_SQL, keys, namedtuple_row))
    reads.append((BATCH_GRANTS_SQL, [ids], tuple_row))  # plain tuples: grants_from_tuples
    if wanted_holds:
        holds_wanted = [[t for t, _ in wanted_holds], [h for _, h in wanted_holds]]
        reads.append((BATCH_HOLDS_SQL, holds_wanted, namedtuple_row))
    reads.append((BATCH_SETTINGS_SQL, [ids], namedtuple_row))
    if caps:
        reads.append((BATCH_CAPS_SQL, [ids], tuple_row))  # plain tuples: caps_by_team
    return reads


def caps_by_team(
    ids: Iterable[str], rows: Iterable[Sequence[Any]]
) -> dict[str, dict[tuple[str, str], SpendingCap]]:
    """The spending caps of ``ids`` by team, keyed ``(kind, id)``, from ``_CAPS_OF_TEAMS`` rows."""
    found: dict[str, dict[tuple[str, str], SpendingCap]] = {team_id: {} for team_id in ids}
    for team_id, kind, who, name, cap in rows:
        found[team_id][(kind, who)] = SpendingCap(kind, who, name, int(cap))
    return found


def pg_batch_writes(
    books: Sequence[TeamBook],
    receipts: Sequence[dict[str, Any]],
    due: dict[str, datetime | None],
) -> list[_Statement]:
    """The statements writing what ``books`` changed, the receipts and new ``due_at``s."""
    statements = _pg_changes(*_merge_pending(books))
    if receipts:
        statements.append(_pg_insert(idempotency_keys, receipts))
    if due:
        statements.append((TEAM_DUE_SQL, [(d, t) for t, d in sorted(due.items())]))
    return statements


def pg_live_grants(raw: Any, team_ids: Sequence[str]) -> dict[str, list[Grant]]:
    """The live grants (``remaining > 0``) of ``team_ids`` (PostgreSQL; ``raw`` is psycopg's)."""
    if not team_ids:
        return {}
    with raw.cursor() as cursor:
        cursor.execute(LIVE_GRANTS_SQL, [list(team_ids)])
        return grants_from_tuples(team_ids, cursor.fetchall())


def grants_from_tuples(team_ids: Sequence[str], rows: Sequence[Any]) -> dict[str, list[Grant]]:
    """Grants from plain tuples of ``LIVE_GRANTS_SQL``'s columns, by team.

    A sweep or a batch of charges reads thousands of grants; skipping
    SQLAlchemy's row processing and building each ``Grant`` positionally
    costs a third of the time.
    """
    found: dict[str, list[Grant]] = {t: [] for t in team_ids}
    for r in rows:
        found[r[0]].append(
            Grant(
                r[1],
                r[0],
                _SOURCES[r[2]],
                _CATEGORIES[r[3]],
                frozenset(r[4]) if r[4] is not None else None,
                r[5],
                r[6],
                r[7],
                as_utc(r[8]) or r[8],
                as_utc(r[9]),
                as_utc(r[10]) or r[10],
                r[11],
                r[12],
                r[13],
            )
        )
    return found


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

    def __init__(self, engine: Engine, *, connection: Connection | None = None) -> None:
        self.engine = engine
        # A connection kept by the caller across transactions (the group committer's):
        # no pool checkout, so no pre-ping round trip, and it is not closed on exit.
        self._held = connection
        self._conn: Connection | None = None
        self._committed = False
        # ``billing_settings`` rows (None: no row) of the teams ``read_batch`` locked,
        # read in the same round trip so the purchases spend guard needs none per team.
        # Whoever writes a team's settings row in this transaction calls
        # ``forget_settings`` first, so a cached row is never stale.
        self.prefetched_settings: dict[str, Any] = {}
        # The spending caps (capped members and API keys), by team, of the teams
        # ``read_batch`` locked (same round trip): the cap guard needs no query for them.
        self.prefetched_caps: dict[str, dict[tuple[str, str], SpendingCap]] = {}

    def forget_settings(self, team_id: str) -> None:
        """Drop the prefetched settings row of ``team_id`` (it is about to change)."""
        self.prefetched_settings.pop(team_id, None)

    # ---- transaction -----------------------------------------------------

    def __enter__(self) -> Self:
        conn = self._held if self._held is not None else self.engine.connect()
        try:
            conn.begin()  # SQLite's BEGIN IMMEDIATE waits here for the lock
        except BaseException:
            outage.abandon(conn, held=self._held is not None)
            raise
        self._conn = conn
        self._committed = False
        self.prefetched_settings = {}
        self.prefetched_caps = {}
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
        # What psycopg raised directly (the pipelines below) SQLAlchemy never saw.
        found = outage.seen(conn, exc) if exc is not None else None
        try:
            if not self._committed:
                conn.rollback()
        except Exception:
            if exc is None:
                raise
            conn.invalidate()  # the error in flight says more than this one after it
        finally:
            if self._held is None:
                conn.close()
        if found is not None and found is not exc:
            raise found from exc

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._conn

    def commit(self) -> None:
        with outage.committing(self.conn):
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

    def spending_caps(self, team_id: str) -> dict[tuple[str, str], SpendingCap]:
        """The team's capped members and API keys, by ``(kind, id)``.

        Prefetched by ``read_batch``; read here otherwise.
        """
        found = self.prefetched_caps.get(team_id)
        if found is None:
            marker = "%s" if self.dialect == "postgresql" else "?"  # the driver's own
            sql = _CAPS_OF_TEAMS.format(teams=f"= {marker}")
            rows = self.conn.exec_driver_sql(sql, (team_id, team_id))
            found = caps_by_team([team_id], rows)[team_id]
        return found

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
        self.write_changes(*book.pending())
        book.clear_pending()

    def write_changes(
        self,
        new_grants: Sequence[Grant],
        changed_grants: Sequence[Grant],
        new_holds: Sequence[Hold],
        changed_holds: Sequence[Hold],
        entries: Sequence[Entry],
    ) -> None:
        """One statement per kind of row (executemany / multi-row insert).

        On PostgreSQL new rows of a kind are ONE statement (``json_to_recordset``)
        and changed rows one primary-key UPDATE each, all sent in one pipeline:
        one round trip, and all postings of an entry always arrive in one INSERT
        (the balance trigger relies on it).
        """
        if self.dialect == "postgresql":
            self._pg_pipeline(
                _pg_changes(new_grants, changed_grants, new_holds, changed_holds, entries)
            )
            return
        conn = self.conn
        if new_grants:
            conn.execute(insert(grants), [grant_to_row(g) for g in new_grants])
        if changed_grants:
            # Straight to the driver, as insert_entries: one changed grant per charge.
            raw: Any = conn.connection.driver_connection
            raw.executemany(
                _SQLITE_UPDATE_GRANT,
                [(g.remaining, g.reserved, g.closed, g.team_id, g.id) for g in changed_grants],
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

    def insert_entries(self, entries: Sequence[Entry]) -> None:
        if self.dialect == "postgresql":
            self._pg_pipeline(_pg_entries(entries))
            return
        # SQLite: straight to the driver's executemany. SQLAlchemy's per-row bind
        # processing was a fifth of a batch of charges' time; the values are the
        # same text it would write (see sqlite_time, test_sqlite_raw_rows).
        raw: Any = self.conn.connection.driver_connection
        raw.executemany(
            _SQLITE_INSERT_ENTRY, [entry_tuple(e, sqlite_time, _json_text) for e in entries]
        )
        postings = posting_tuples(entries)
        if postings:
            raw.executemany(_SQLITE_INSERT_POSTING, postings)

    # ---- several teams at once (group commit) ------------------------------------

    def lock_teams(self, team_ids: Iterable[str]) -> dict[str, datetime | None]:
        """Lock every named team in one statement, in id order; ``{team_id: due_at}``.

        Missing teams are absent from the answer. Locking in id order means two
        processes locking overlapping sets of teams cannot deadlock.
        """
        ids = sorted(set(team_ids))
        if not ids:
            return {}
        query = select(teams.c.id, teams.c.due_at).where(teams.c.id.in_(ids)).order_by(teams.c.id)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        return {row.id: row.due_at for row in self.conn.execute(query)}

    def load_grants_of(self, team_ids: Iterable[str]) -> dict[str, list[Grant]]:
        """The live grants of several teams in one query."""
        ids = sorted(set(team_ids))
        found: dict[str, list[Grant]] = {t: [] for t in ids}
        if not ids:
            return found
        query = select(grants).where(grants.c.team_id.in_(ids), grants.c.remaining > 0)
        for row in self.conn.execute(query):
            found[row.team_id].append(grant_from_row(row))
        return found

    def load_holds_of(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Hold]:
        """Holds named by ``(team_id, hold_id)`` pairs, in one query."""
        wanted = sorted(set(pairs))
        if not wanted:
            return {}
        query = select(holds).where(_pairs_in(holds.c.team_id, holds.c.id, wanted))
        return {(r.team_id, r.id): hold_from_row(r) for r in self.conn.execute(query)}

    def get_idempotency_many(
        self, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, str, dict[str, Any]]]:
        """Stored ``(request_hash, operation, response)`` by ``(team_id, key)``, one query."""
        wanted = sorted(set(pairs))
        if not wanted:
            return {}
        k = idempotency_keys
        query = select(k.c.team_id, k.c.key, k.c.request_hash, k.c.operation, k.c.response).where(
            _pairs_in(k.c.team_id, k.c.key, wanted)
        )
        return {
            (r.team_id, r.key): (r.request_hash, r.operation, dict(r.response))
            for r in self.conn.execute(query)
        }

    def put_idempotency_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert receipts (dicts with team_id, key, request_hash, operation, response,
        created_at) in one statement."""
        if not rows:
            return
        if self.dialect == "postgresql":
            self.conn.execute(insert(idempotency_keys), list(rows))
            return
        raw: Any = self.conn.connection.driver_connection
        raw.executemany(
            _SQLITE_INSERT_KEY,
            [
                (
                    r["team_id"],
                    r["key"],
                    r["request_hash"],
                    r["operation"],
                    _json_text(r["response"]),
                    sqlite_time(r["created_at"]),
                )
                for r in rows
            ],
        )

    def set_due_at_many(self, due: dict[str, datetime | None]) -> None:
        if due:
            self.conn.execute(
                update(teams)
                .where(teams.c.id == bindparam("b_id"))
                .values(due_at=bindparam("b_due")),
                [{"b_id": t, "b_due": d} for t, d in sorted(due.items())],
            )

    def read_batch(
        self,
        team_ids: Iterable[str],
        keys: Iterable[tuple[str, str]],
        hold_keys: Iterable[tuple[str, str]],
        *,
        caps: bool = False,
    ) -> BatchReads:
        """Lock teams, then read their idempotency keys, live grants and named holds.

        Their billing settings rows land in ``prefetched_settings``; with
        ``caps``, their capped members in ``prefetched_caps``. One round trip
        on PostgreSQL (a pipeline: the reads run after the lock is granted, in the
        same transaction); five queries on SQLite.
        """
        ids, wanted_keys, wanted_holds = batch_wanted(team_ids, keys, hold_keys)
        if self.dialect == "sqlite" and ids:
            return self._sqlite_read_batch(ids, wanted_keys, wanted_holds, caps)
        if self.dialect != "postgresql" or not ids:
            answer = (
                self.lock_teams(ids),
                self.get_idempotency_many(wanted_keys),
                self.load_grants_of(ids),
                self.load_holds_of(wanted_holds),
            )
            if ids:
                settings: dict[str, Any] = dict.fromkeys(ids)
                query = select(billing_settings).where(billing_settings.c.team_id.in_(ids))
                for row in self.conn.execute(query):
                    settings[row.team_id] = row
                self.prefetched_settings = settings
            return answer
        raw: Any = self.conn.connection.driver_connection
        from psycopg.pq import TransactionStatus

        reads = pg_batch_reads(ids, wanted_keys, wanted_holds, caps)
        with raw.pipeline():
            if raw.autocommit and raw.info.transaction_status == TransactionStatus.IDLE:
                # The group committer's connection (see GroupCommitter._uow): the
                # transaction starts here, in this round trip, not in one of its own.
                raw.execute("BEGIN")
            cursors = [raw.cursor(row_factory=factory) for _, _, factory in reads]
            for cursor, (sql, params, _) in zip(cursors, reads, strict=True):
                cursor.execute(sql, params)
        rows = [cursor.fetchall() for cursor in cursors]
        for cursor in cursors:
            cursor.close()
        return self.take_batch_reads(ids, wanted_keys, wanted_holds, caps, rows)

    def take_batch_reads(
        self,
        ids: list[str],
        wanted_keys: list[tuple[str, str]],
        wanted_holds: list[tuple[str, str]],
        caps: bool,
        rows: list[list[Any]],
    ) -> BatchReads:
        """What ``read_batch`` returns (and prefetches), from the rows of ``pg_batch_reads``.

        Shared by ``read_batch`` and the group committer's event-loop path
        (``adapters/db/loop_batch.py``), which run the same statements.
        """
        results = iter(rows)
        due = {r.id: as_utc(r.due_at) for r in next(results)}
        stored = (
            {
                (r.team_id, r.key): (r.request_hash, r.operation, dict(r.response))
                for r in next(results)
            }
            if wanted_keys
            else {}
        )
        found = grants_from_tuples(ids, next(results))
        holds_found: dict[tuple[str, str], Hold] = {}
        if wanted_holds:
            for row in next(results):
                hold = hold_from_row(row)
                hold.created_at = as_utc(hold.created_at) or hold.created_at
                hold.expires_at = as_utc(hold.expires_at) or hold.expires_at
                hold.resolved_at = as_utc(hold.resolved_at)
                holds_found[(hold.team_id, hold.id)] = hold
        prefetched: dict[str, Any] = dict.fromkeys(ids)
        for r in next(results):
            prefetched[r.team_id] = r._replace(
                last_recharge_at=as_utc(r.last_recharge_at), updated_at=as_utc(r.updated_at)
            )
        self.prefetched_settings = prefetched
        if caps:
            self.prefetched_caps = caps_by_team(ids, next(results))
        return due, stored, found, holds_found

    def _sqlite_read_batch(
        self,
        ids: list[str],
        wanted_keys: list[tuple[str, str]],
        wanted_holds: list[tuple[str, str]],
        caps: bool,
    ) -> BatchReads:
        """``read_batch`` on SQLite: the same reads on sqlite3 directly (see sqlite_rows).

        ``BEGIN IMMEDIATE`` (the unit of work's first statement) already holds
        the database's write lock, so reading the teams is the lock.
        """
        raw: Any = self.conn.connection.driver_connection
        in_ids = f"IN ({placeholders(len(ids))})"
        due = {r.id: r.due_at for r in _SQLITE_TEAMS.rows(raw, f"id {in_ids} ORDER BY id", ids)}
        stored: dict[tuple[str, str], tuple[str, str, dict[str, Any]]] = {}
        if wanted_keys:
            by_team = _by_team(wanted_keys)
            # One equality on the leading key column per team: the primary key's index.
            where = " OR ".join(
                f'(team_id = ? AND "key" IN ({placeholders(len(k))}))' for k in by_team.values()
            )
            params = [v for team_id, k in by_team.items() for v in (team_id, *k)]
            for r in _SQLITE_KEYS.rows(raw, where, params):
                stored[(r.team_id, r.key)] = (r.request_hash, r.operation, r.response)
        found = grants_from_tuples(
            ids, _SQLITE_GRANTS.rows(raw, f"team_id {in_ids} AND remaining > 0", ids)
        )
        settings: dict[str, Any] = dict.fromkeys(ids)
        for r in _SQLITE_SETTINGS.rows(raw, f"team_id {in_ids}", ids):
            settings[r.team_id] = r
        self.prefetched_settings = settings
        if caps:
            sql = _CAPS_OF_TEAMS.format(teams=in_ids)
            self.prefetched_caps = caps_by_team(ids, raw.execute(sql, ids + ids).fetchall())
        return due, stored, found, self.load_holds_of(wanted_holds)

    def write_batch_and_commit(
        self,
        books: Iterable[TeamBook],
        receipts: Sequence[dict[str, Any]],
        due: dict[str, datetime | None],
    ) -> None:
        """Write several books, their receipts and new ``due_at``s, and commit.

        On PostgreSQL: one pipeline, so one round trip, COMMIT included.
        """
        chosen = list(books)
        if self.dialect != "postgresql":
            self.save_books(chosen)
            self.set_due_at_many(due)
            self.put_idempotency_many(receipts)
            self.commit()
            return
        with outage.committing(self.conn):
            self._pg_pipeline(pg_batch_writes(chosen, receipts, due), commit=True)
        for book in chosen:
            book.clear_pending()
        self.commit()

    def execute_unprepared(self, sql: str, params: Sequence[Any]) -> None:
        """Run a set-based statement (PostgreSQL, ``%s`` parameters), planned at every run.

        psycopg prepares a statement after five runs, and PostgreSQL then keeps
        the plan made with that moment's table sizes for the connection's life
        (see ``BATCH_KEYS_SQL``). A statement of thousands of rows (the sweep's
        and the enrichment jobs' updates) pays a fraction of a millisecond to be
        planned with today's sizes instead, in a long-lived server whose tables grew.
        """
        raw: Any = self.conn.connection.driver_connection
        raw.execute(sql, params, prepare=False)

    def _pg_pipeline(self, statements: Sequence[_Statement], *, commit: bool = False) -> None:
        if not statements and not commit:
            return
        raw: Any = self.conn.connection.driver_connection
        with raw.pipeline(), raw.cursor() as cursor:
            for sql, rows in statements:
                if len(rows) == 1:
                    cursor.execute(sql, rows[0])
                else:
                    cursor.executemany(sql, rows)
            if commit:
                # A statement, not ``raw.commit()``: that one syncs and waits for
                # its answer, then leaving the pipeline syncs and waits again, an
                # empty round trip per batch. Here the pipeline's one sync answers
                # everything; a failed statement skips the COMMIT and raises there.
                cursor.execute("COMMIT")

    def save_books(self, books: Iterable[TeamBook]) -> None:
        """Write what several books changed with one statement per kind of row."""
        chosen = list(books)
        self.write_changes(*_merge_pending(chosen))
        for book in chosen:
            book.clear_pending()

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


_SQLITE_TEAMS = SqliteSelect(teams, ("id", "due_at"))
_SQLITE_KEYS = SqliteSelect(
    idempotency_keys, ("team_id", "key", "request_hash", "operation", "response")
)
# In LIVE_GRANTS_SQL's column order: grants_from_tuples reads them by position.
_SQLITE_GRANTS = SqliteSelect(grants, [c.strip() for c in _GRANT_COLUMNS.split(",")])
_SQLITE_SETTINGS = SqliteSelect(billing_settings)

ENTRY_COLUMNS = (
    "team_id", "id", "kind", "created_at", "credits", "feature", "quantity", "outcome",
    "unit_cost", "multiplier", "member_id", "api_key_id", "job_id", "operator", "hold_id",
    "idempotency_key", "memo", "meta",
)  # fmt: skip
POSTING_COLUMNS = ("team_id", "entry_id", "seq", "grant_id", "account", "amount")


def _sqlite_insert(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})'


_SQLITE_INSERT_ENTRY = _sqlite_insert("ledger_entries", ENTRY_COLUMNS)
_SQLITE_INSERT_POSTING = _sqlite_insert("ledger_postings", POSTING_COLUMNS)
_SQLITE_UPDATE_GRANT = (
    'UPDATE "grants" SET "remaining" = ?, "reserved" = ?, "closed" = ? '
    'WHERE "team_id" = ? AND "id" = ?'
)
_SQLITE_INSERT_KEY = _sqlite_insert(
    "idempotency_keys", ("team_id", "key", "request_hash", "operation", "response", "created_at")
)


def sqlite_time(value: datetime | None) -> str | None:
    """An instant as SQLite stores it through ``UTCDateTime``: naive UTC text.

    The same text SQLAlchemy's SQLite ``DATETIME`` writes, so rows written
    either way compare and sort alike.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} refused: creditbook stores UTC instants")
    return _sqlite_text(value)


@functools.lru_cache(maxsize=64)
def _sqlite_text(value: datetime) -> str:
    # A batch stamps every entry and receipt with the same instant: format it once.
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _json_text(document: dict[str, Any]) -> str:
    """A JSON column's text for SQLite's own statements (a receipt, an entry's meta).

    orjson: with ``json.dumps`` the receipts' text was about 4 us of the 52 us of
    CPU a charge costs in ``charge_many`` on SQLite (decision 0008). The text is
    compact UTF-8 where ``json.dumps`` spaced and escaped it;
    both read back the same. Nearly every entry's meta is empty: it needs no
    encoder.
    """
    return orjson.dumps(document).decode() if document else "{}"


def entry_tuple(
    e: Entry, time: Callable[[datetime], Any], dump: Callable[[Any], Any]
) -> tuple[Any, ...]:
    """An entry's values in ``ENTRY_COLUMNS`` order; ``time`` and ``dump`` encode its
    instant and its JSON ``meta`` for the target (COPY, sqlite3, SQLAlchemy)."""
    a = e.actor
    return (
        e.team_id, e.id, e.kind.value, time(e.created_at), e.credits, e.feature,
        e.quantity, e.outcome, e.unit_cost, e.multiplier, a.member_id, a.api_key_id, a.job_id,
        a.operator, e.hold_id, e.idempotency_key, e.memo, dump(e.meta),
    )  # fmt: skip


def posting_tuples(entries: Iterable[Entry]) -> list[tuple[Any, ...]]:
    """Every posting of ``entries`` in ``POSTING_COLUMNS`` order."""
    return [
        (e.team_id, e.id, seq, p.grant_id, p.account.value, p.amount)
        for e in entries
        for seq, p in enumerate(e.postings)
    ]


def _pairs_in(team_column: Any, id_column: Any, pairs: Sequence[tuple[str, str]]) -> Any:
    """``(team, id) IN pairs`` as ``team = t AND id IN (...)`` per team, OR-ed.

    SQLite answers a row-value ``IN`` list by scanning the whole table; one
    equality on the leading key column per team lets it use the primary key.
    A batch names few teams.
    """
    return or_(*(and_(team_column == t, id_column.in_(ids)) for t, ids in _by_team(pairs).items()))


def _by_team(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """``(team_id, item)`` pairs grouped by team, in first-seen order."""
    grouped: dict[str, list[str]] = {}
    for team_id, item in pairs:
        grouped.setdefault(team_id, []).append(item)
    return grouped


def _as_datetime(value: Any) -> datetime:
    from datetime import UTC

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (a naive one is taken as UTC); None stays None."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _merge_pending(
    books: Sequence[TeamBook],
) -> tuple[list[Grant], list[Grant], list[Hold], list[Hold], list[Entry]]:
    new_grants: list[Grant] = []
    changed_grants: list[Grant] = []
    new_holds: list[Hold] = []
    changed_holds: list[Hold] = []
    entries: list[Entry] = []
    for book in books:
        a, b, c, d, e = book.pending()
        new_grants += a
        changed_grants += b
        new_holds += c
        changed_holds += d
        entries += e
    return new_grants, changed_grants, new_holds, changed_holds, entries


def _posting_rows(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    return [
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


# ---- PostgreSQL: the rows of one pipeline ------------------------------------------------
# New rows travel as ONE json parameter expanded by ``json_to_recordset``: a fixed SQL
# text whatever the number of rows (prepared once), cheap to encode, and every posting
# of an entry inside one INSERT, which the statement-level balance trigger (0007)
# relies on. Changed rows are updated by primary key, one statement each (``_pg_update``).

# A statement and its parameter rows: one row is one execute, several an executemany.
_Statement = tuple[str, list[tuple[Any, ...]]]

_PG_TYPES = {"BigInteger": "bigint", "Integer": "int", "Boolean": "boolean"}


def _pg_type(table: Table, name: str) -> str:
    kind = table.c[name].type
    if isinstance(kind, JSON):
        return "json"
    if type(kind).__name__ == "UTCDateTime":
        return "timestamptz"
    return _PG_TYPES.get(type(kind).__name__, "text")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} refused: creditbook stores UTC instants")
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} in a bulk statement")


def json_rows(rows: Sequence[dict[str, Any]]) -> str:
    """``rows`` as the JSON array a ``json_to_recordset`` bulk statement reads.

    orjson, not the standard library: encoding a batch's entries, postings and
    receipts was a tenth of the group committer's CPU with ``json.dumps``, and a
    tenth of that with orjson (decision 0008). Datetimes go
    through ``_json_default`` (``OPT_PASSTHROUGH_DATETIME``) so a naive one is
    still refused and an aware one keeps ``isoformat``'s text.
    """
    try:
        encoded: bytes = orjson.dumps(
            rows, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME
        )
    except orjson.JSONEncodeError as exc:
        # orjson wraps what _json_default raised; callers expect that error itself
        if isinstance(exc.__cause__, ValueError | TypeError):
            raise exc.__cause__ from None
        raise
    return encoded.decode()


def _pg_insert(table: Table, rows: Sequence[dict[str, Any]]) -> _Statement:
    return _pg_insert_sql(table, tuple(rows[0])), [(json_rows(rows),)]


_KEYS = ("team_id", "id")
TEAM_DUE_SQL = "UPDATE teams SET due_at = %s WHERE id = %s"


def _pg_update(table: Table, rows: Sequence[dict[str, Any]]) -> _Statement:
    """One UPDATE by primary key per row, sent together (executemany in the pipeline).

    Not one ``UPDATE ... FROM json_to_recordset``: its generic plan (see
    ``BATCH_KEYS_SQL``) hash-joined the rows against a sequential scan of the
    whole table: 0.7 ms per batch over 10,000 grants, for the one row a hot team
    changes. A primary-key equality is planned as an index lookup at any size.
    """
    names = tuple(rows[0])
    sql = _pg_update_sql(table, names)
    order = [n for n in names if n not in _KEYS] + ["team_id", "id"]
    return sql, [tuple(row[n] for n in order) for row in rows]


# The statement texts depend only on the table and the row's keys: built once,
# not per batch (a batch of 8 charges spent a tenth of its Python on them).
@functools.lru_cache(maxsize=64)
def _pg_insert_sql(table: Table, names: tuple[str, ...]) -> str:
    columns = ", ".join(f'"{n}"' for n in names)
    record = ", ".join(f'"{n}" {_pg_type(table, n)}' for n in names)
    return (
        f'INSERT INTO "{table.name}" ({columns}) SELECT {columns} '
        f"FROM json_to_recordset(%s::json) AS v({record})"
    )


@functools.lru_cache(maxsize=64)
def _pg_update_sql(table: Table, names: tuple[str, ...]) -> str:
    values = ", ".join(f'"{n}" = %s' for n in names if n not in _KEYS)
    return f'UPDATE "{table.name}" SET {values} WHERE team_id = %s AND id = %s'


def _pg_entries(entries: Sequence[Entry]) -> list[_Statement]:
    if not entries:
        return []
    statements = [_pg_insert(ledger_entries, [entry_to_row(e) for e in entries])]
    postings = _posting_rows(entries)
    if postings:
        statements.append(_pg_insert(ledger_postings, postings))
    return statements


def _pg_changes(
    new_grants: Sequence[Grant],
    changed_grants: Sequence[Grant],
    new_holds: Sequence[Hold],
    changed_holds: Sequence[Hold],
    entries: Sequence[Entry],
) -> list[_Statement]:
    statements: list[_Statement] = []
    if new_grants:
        statements.append(_pg_insert(grants, [grant_to_row(g) for g in new_grants]))
    if changed_grants:
        statements.append(
            _pg_update(
                grants,
                [
                    {
                        "team_id": g.team_id,
                        "id": g.id,
                        "remaining": g.remaining,
                        "reserved": g.reserved,
                        "closed": g.closed,
                    }
                    for g in changed_grants
                ],
            )
        )
    if new_holds:
        statements.append(_pg_insert(holds, [hold_to_row(h) for h in new_holds]))
    if changed_holds:
        statements.append(
            _pg_update(
                holds,
                [
                    {
                        "team_id": h.team_id,
                        "id": h.id,
                        "status": h.status.value,
                        "captured": h.captured,
                        "resolved_at": h.resolved_at,
                    }
                    for h in changed_holds
                ],
            )
        )
    statements += _pg_entries(entries)
    return statements
