"""The SQL of dashboard sessions (table ``dashboard_sessions``): open, find, end.

Each function runs on the connection of the caller's transaction, so ending
sessions commits (or rolls back) with the change that ends them: removing a
member, changing a role, revoking a key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select

from creditbook.adapters.db.tables_web import dashboard_sessions as t


@dataclass(frozen=True, slots=True)
class SessionRow:
    team_id: str
    id: str
    member_id: str
    key_id: str
    token_hash: str
    expires_at: datetime


def insert_session(conn: Connection, row: SessionRow, now: datetime) -> None:
    """Store a new session; drops the team's expired ones on the way (they are never used)."""
    conn.execute(delete(t).where(t.c.team_id == row.team_id, t.c.expires_at <= now))
    conn.execute(
        insert(t).values(
            team_id=row.team_id,
            id=row.id,
            member_id=row.member_id,
            key_id=row.key_id,
            token_hash=row.token_hash,
            created_at=now,
            expires_at=row.expires_at,
        )
    )


def find_session(conn: Connection, team_id: str, session_id: str) -> SessionRow | None:
    found = conn.execute(
        select(t.c.member_id, t.c.key_id, t.c.token_hash, t.c.expires_at).where(
            t.c.team_id == team_id, t.c.id == session_id
        )
    ).first()
    if found is None:
        return None
    return SessionRow(
        team_id, session_id, found.member_id, found.key_id, found.token_hash, found.expires_at
    )


def delete_session(conn: Connection, team_id: str, session_id: str) -> None:
    conn.execute(delete(t).where(t.c.team_id == team_id, t.c.id == session_id))


def end_sessions(
    conn: Connection, team_id: str, *, member_id: str | None = None, key_id: str | None = None
) -> int:
    """End the team's sessions of ``member_id`` and/or opened with ``key_id``; how many."""
    if member_id is None and key_id is None:
        raise ValueError("name the member or the key whose sessions end")
    query = delete(t).where(t.c.team_id == team_id)
    if member_id is not None:
        query = query.where(t.c.member_id == member_id)
    if key_id is not None:
        query = query.where(t.c.key_id == key_id)
    return int(conn.execute(query).rowcount or 0)
