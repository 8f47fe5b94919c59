"""Dashboard sessions: a signed cookie naming a server-side session, and the CSRF token.

The cookie (signed with the server's secret key, HttpOnly, SameSite=Lax)
holds the CSRF token, the flash messages and, once signed in, the session's
token ``{team}.{session id}.{secret}``. The session itself is a row of
``dashboard_sessions`` (``DashboardSessions``) that stores only the secret's
SHA-256, so the server can end it: signing out deletes it, and so do
removing the member, changing their role and revoking the key that opened
it (``AccessService``, in the same transaction as the change). A cookie saved
before any of those signs nobody in. Every request also re-reads the key, the
member and the team (``current_user`` in ``app.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from creditbook.adapters.db.dashboard_sessions import (
    SessionRow,
    delete_session,
    find_session,
    insert_session,
)
from creditbook.config import Settings
from creditbook.domain.ids import new_id
from creditbook.service.credits import Creditbook

COOKIE = "cb_session"
MAX_AGE_SECONDS = 12 * 3600
SESSION_TTL = timedelta(seconds=MAX_AGE_SECONDS)
SALT = "creditbook.dashboard.session"


@dataclass
class WebSession:
    """What the cookie says; ``dirty`` when it must be sent again.

    ``token`` names the server-side session the cookie claims; whether it
    still signs anyone in is for ``DashboardSessions.find`` to say.
    """

    csrf: str
    token: str | None = None
    flash: list[tuple[str, str]] = field(default_factory=list)
    dirty: bool = False

    def sign_in(self, token: str) -> None:
        # A new CSRF token on sign-in: a token planted before sign-in is useless after.
        self.csrf = secrets.token_urlsafe(32)
        self.token = token
        self.dirty = True

    def sign_out(self) -> None:
        self.csrf = secrets.token_urlsafe(32)
        self.token = None
        self.dirty = True

    def say(self, message: str, level: str = "info") -> None:
        self.flash.append((level, message))
        self.dirty = True

    def take_flash(self) -> list[tuple[str, str]]:
        found, self.flash = self.flash, []
        if found:
            self.dirty = True
        return found

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token).encode(), self.csrf.encode())

    def to_dict(self) -> dict[str, Any]:
        return {"c": self.csrf, "s": self.token, "f": [list(f) for f in self.flash]}


class SessionCodec:
    """Signs and reads the session cookie with the settings' secret key."""

    def __init__(self, settings: Settings) -> None:
        # Development without a configured key: a per-process key (sessions end on restart).
        secret = settings.secret_key or secrets.token_urlsafe(48)
        self.serializer = URLSafeTimedSerializer(secret, salt=SALT)
        self.always_secure = settings.cookies_secure

    def load(self, request: Request) -> WebSession:
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data = self.serializer.loads(raw, max_age=MAX_AGE_SECONDS)
            except BadSignature:
                data = None
            if isinstance(data, dict) and isinstance(data.get("c"), str):
                flash = [
                    (str(f[0]), str(f[1]))
                    for f in data.get("f") or []
                    if isinstance(f, list) and len(f) == 2
                ]
                token = data.get("s")
                return WebSession(data["c"], token if isinstance(token, str) else None, flash)
        return WebSession(secrets.token_urlsafe(32), dirty=True)

    def store(self, request: Request, response: Response, session: WebSession) -> None:
        response.set_cookie(
            COOKIE,
            self.serializer.dumps(session.to_dict()),
            max_age=MAX_AGE_SECONDS,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.always_secure or request.url.scheme == "https",
        )


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _parts(token: str) -> tuple[str, str, str] | None:
    parts = token.split(".")
    if len(parts) != 3 or not all(parts) or max(len(p) for p in parts[:2]) > 40:
        return None
    return parts[0], parts[1], parts[2]


class DashboardSessions:
    """Opens, finds and ends the server-side sessions, over the book's database."""

    def __init__(self, book: Creditbook) -> None:
        self.book = book

    def open(self, team_id: str, member_id: str, key_id: str) -> str:
        """A new session for the member, opened with ``key_id``; its token, for the cookie."""
        session_id = new_id("ses")
        secret = secrets.token_urlsafe(32)
        now = self.book.clock.now()
        row = SessionRow(team_id, session_id, member_id, key_id, _hash(secret), now + SESSION_TTL)
        with self.book.uow() as uow:
            insert_session(uow.conn, row, now)
            uow.commit()
        return f"{team_id}.{session_id}.{secret}"

    def find(self, token: str) -> SessionRow | None:
        """The live session the token names; None if unknown, ended or expired."""
        parts = _parts(token)
        if parts is None:
            return None
        team_id, session_id, secret = parts
        with self.book.uow() as uow:
            row = find_session(uow.conn, team_id, session_id)
        if (
            row is None
            or not hmac.compare_digest(row.token_hash, _hash(secret))
            or row.expires_at <= self.book.clock.now()
        ):
            return None
        return row

    def end(self, token: str) -> None:
        """End the session the token names (sign-out); nothing if it has ended already."""
        row = self.find(token)
        if row is None:
            return
        with self.book.uow() as uow:
            delete_session(uow.conn, row.team_id, row.id)
            uow.commit()
