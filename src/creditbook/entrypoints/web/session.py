"""Dashboard sessions: a signed cookie naming the signed-in key, and the CSRF token.

The cookie holds no secret of the user's: only the team, member and key ids
(never the API key itself) and a random CSRF token, signed with the
server's secret key so it cannot be forged. Every request re-reads the key and
the member from the database, so revoking a key or removing a member signs
their dashboard sessions out at once.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from creditbook.config import Settings

COOKIE = "cb_session"
MAX_AGE_SECONDS = 12 * 3600
SALT = "creditbook.dashboard.session"


@dataclass
class WebSession:
    """What the cookie says; ``dirty`` when it must be sent again."""

    csrf: str
    team_id: str | None = None
    member_id: str | None = None
    key_id: str | None = None
    flash: list[tuple[str, str]] = field(default_factory=list)
    dirty: bool = False

    @property
    def signed_in(self) -> bool:
        return bool(self.team_id and self.member_id and self.key_id)

    def sign_in(self, team_id: str, member_id: str, key_id: str) -> None:
        # A new CSRF token on sign-in: a token planted before sign-in is useless after.
        self.csrf = secrets.token_urlsafe(32)
        self.team_id, self.member_id, self.key_id = team_id, member_id, key_id
        self.dirty = True

    def sign_out(self) -> None:
        self.csrf = secrets.token_urlsafe(32)
        self.team_id = self.member_id = self.key_id = None
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
        return {
            "c": self.csrf,
            "t": self.team_id,
            "m": self.member_id,
            "k": self.key_id,
            "f": [list(f) for f in self.flash],
        }


class SessionCodec:
    """Signs and reads the session cookie with the settings' secret key."""

    def __init__(self, settings: Settings) -> None:
        # Development without a configured key: a per-process key (sessions end on restart).
        secret = settings.secret_key or secrets.token_urlsafe(48)
        self.serializer = URLSafeTimedSerializer(secret, salt=SALT)

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
                return WebSession(data["c"], data.get("t"), data.get("m"), data.get("k"), flash)
        return WebSession(secrets.token_urlsafe(32), dirty=True)

    def store(self, request: Request, response: Response, session: WebSession) -> None:
        response.set_cookie(
            COOKIE,
            self.serializer.dumps(session.to_dict()),
            max_age=MAX_AGE_SECONDS,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
