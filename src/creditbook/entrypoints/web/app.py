"""The dashboard application: sessions, sign-in, CSRF, rendering and error pages.

``create_dashboard(book, access, settings)`` builds a FastAPI sub-application
that ``creditbook serve`` mounts at ``/dashboard`` next to the HTTP API. It
calls the same library services as the API (``Creditbook``,
``AccessService``, ``PurchaseService``, the enrichment service), in the same
process, so the same rules apply: a member is refused an admin action by
the service and by the route, whatever the page shows.

Sign-in takes a team API key (admin or member) once and opens a server-side
session (``session.py``) that a signed, HttpOnly, SameSite=Lax cookie names
(Secure over HTTPS); every POST carries the session's CSRF token in a hidden
field, checked before anything else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from creditbook.adapters.rate_limits import RateLimits
from creditbook.config import Settings
from creditbook.domain.errors import CreditbookError, DatabaseUnavailable, Forbidden, RateLimited
from creditbook.domain.ledger import Actor
from creditbook.domain.team import Member, Team
from creditbook.entrypoints.api.problems import (
    creditbook_error_handler,
    database_unavailable_response,
    note_refusal,
)
from creditbook.entrypoints.web.session import DashboardSessions, SessionCodec, WebSession
from creditbook.entrypoints.web.signin_links import ConsoleMailer, LinkMailer, SignInLinks
from creditbook.service.access import AccessService
from creditbook.service.credits import Creditbook

HERE = Path(__file__).parent
PREFIX = "/dashboard"
LINK_SESSION_PREFIX = "lnk_"
log = logging.getLogger("creditbook.web")

SECURITY_HEADERS = {
    # pygal's SVG carries an inline <style>; no inline script is ever needed.
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


class SignInRequired(Exception):
    """Raised by a page that needs a signed-in user; answered with a redirect."""


class CsrfRejected(Forbidden):
    code = "csrf_rejected"
    title = "Form expired"


@dataclass(frozen=True, slots=True)
class WebUser:
    """The signed-in member, as re-read from the database on this request."""

    team: Team
    member: Member
    key_id: str

    @property
    def is_admin(self) -> bool:
        return self.member.is_admin

    @property
    def via_link(self) -> bool:
        """Signed in with a one-time link (no API key behind the session)."""
        return self.key_id.startswith(LINK_SESSION_PREFIX)

    @property
    def actor(self) -> Actor:
        return Actor(member_id=self.member.id, api_key_id=None if self.via_link else self.key_id)


@dataclass
class Dashboard:
    """What every page needs: the services and the template engine."""

    book: Creditbook
    access: AccessService
    settings: Settings
    codec: SessionCodec
    sessions: DashboardSessions
    templates: Jinja2Templates
    limits: RateLimits
    links: SignInLinks | None = None

    @property
    def purchases(self) -> Any | None:
        """The purchase service, when ``creditbook.open`` wired one."""
        try:
            return getattr(self.book, "purchases", None)
        except RuntimeError:
            return None

    @property
    def enrichment(self) -> Any | None:
        """The book's shared enrichment service (the one the HTTP API uses too)."""
        try:
            from creditbook.service.enrichment import enrichment_for
        except ModuleNotFoundError:
            return None
        return enrichment_for(self.book)


def dashboard_of(request: Request) -> Dashboard:
    found: Dashboard = request.app.state.dashboard
    return found


def session_of(request: Request) -> WebSession:
    found: WebSession = request.state.session
    return found


def current_user(request: Request) -> WebUser | None:
    """The signed-in user, or None (signing out a session that ended or lost its access)."""
    cached: WebUser | None = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    session = session_of(request)
    if session.token is None:
        return None
    dash = dashboard_of(request)
    found = dash.sessions.find(session.token)
    if found is None:
        session.sign_out()
        session.say("Your session has ended: sign in again.", "error")
        return None
    try:
        keys = dash.access.list_keys(found.team_id, found.member_id)
        member = dash.access.get_member(found.team_id, found.member_id)
        team = dash.book.get_team(found.team_id)
        status = dash.access.team_status(found.team_id)
    except DatabaseUnavailable:
        raise  # an outage says nothing about the session: it stays signed in
    except CreditbookError:
        end_session(request)
        return None
    # A link session has no key; it lasts as long as the member and the team stay active.
    live = found.key_id.startswith(LINK_SESSION_PREFIX) or any(
        k.key_id == found.key_id and k.revoked_at is None for k in keys
    )
    if not live or not member.active or status != "active":
        end_session(request)
        session.say("Your key was revoked or your team is suspended: sign in again.", "error")
        return None
    user = WebUser(team, member, found.key_id)
    request.state.user = user
    return user


def start_session(request: Request, team_id: str, member_id: str, key_id: str) -> None:
    """Sign in: a new server-side session (a session signed in before ends first)."""
    end_session(request)
    session = session_of(request)
    session.sign_in(dashboard_of(request).sessions.open(team_id, member_id, key_id))


def end_session(request: Request) -> None:
    """Sign out: the server-side session ends, and the cookie forgets it."""
    session = session_of(request)
    if session.token is not None:
        dashboard_of(request).sessions.end(session.token)
    session.sign_out()
    request.state.user = None


def signed_in(request: Request) -> WebUser:
    """Dependency of every page but sign-in."""
    user = current_user(request)
    if user is None:
        raise SignInRequired()
    return user


def admin_only(user: WebUser, action: str) -> None:
    """The server-side check behind every admin form (hidden buttons are not a check)."""
    if not user.is_admin:
        raise Forbidden(
            f"only team admins can {action}; you are signed in as a member. "
            "Ask one of your team's admins (see the Members page)."
        )


async def checked_form(request: Request) -> FormData:
    """The POSTed form, once its CSRF token matched this session's."""
    form = await request.form()
    token = form.get("csrf")
    if not isinstance(token, str) or not session_of(request).csrf_ok(token):
        raise CsrfRejected(
            "this form is out of date or did not come from this dashboard; "
            "reload the page and send it again"
        )
    return form


def safe_next(target: str | None) -> str:
    """Only a path inside the dashboard: never an open redirect."""
    if not target:
        return PREFIX + "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX):
        return PREFIX + "/"
    return target


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200
) -> Response:
    dash = dashboard_of(request)
    session = session_of(request)
    ctx: dict[str, Any] = {
        # A page may say who is signed in without a database round trip (the outage page).
        "user": context["user"] if context and "user" in context else current_user(request),
        "csrf": session.csrf,
        "flash": session.take_flash(),
        "prefix": PREFIX,
        "path": request.url.path,
        "dev": dash.settings.env != "production",
        "links": dash.links is not None,
    }
    ctx.update(context or {})
    return dash.templates.TemplateResponse(request, name, ctx, status_code=status)


def _number(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def _when(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return value.strftime(fmt) if value is not None else ""


def create_dashboard(
    book: Creditbook,
    access: AccessService | None = None,
    settings: Settings | None = None,
    *,
    mailer: LinkMailer | None = None,
    limits: RateLimits | None = None,
) -> FastAPI:
    """The dashboard as an ASGI app to mount at ``/dashboard``.

    ``mailer`` delivers one-time sign-in links; outside production the links
    are printed on the console when no mailer is given, in production they are
    offered only with a mailer. ``limits``: the rate limits of the API it is
    mounted in (``web/limits.py``), else its own.
    """
    from creditbook.entrypoints.web import routes, routes_enrichment

    settings = settings or Settings()
    if mailer is None and settings.env != "production":
        mailer = ConsoleMailer()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["number"] = _number
    templates.env.filters["when"] = _when
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.dashboard = Dashboard(
        book=book,
        access=access or AccessService(book.kernel).install(),
        settings=settings,
        codec=SessionCodec(settings),
        sessions=DashboardSessions(book),
        templates=templates,
        limits=limits or RateLimits(settings),
        links=SignInLinks(book, mailer) if mailer is not None else None,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(routes.router)
    app.include_router(routes_enrichment.router)

    @app.middleware("http")
    async def session_middleware(request: Request, call_next: Any) -> Response:
        dash = dashboard_of(request)
        session = dash.codec.load(request)
        request.state.session = session
        response: Response = await call_next(request)
        if session.dirty:
            dash.codec.store(request, response, session)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if "text/html" in response.headers.get("content-type", ""):
            response.headers.setdefault("cache-control", "no-store")
        return response

    # A rate limit answers as in the API (429 problem details, Retry-After), not a page.
    app.add_exception_handler(RateLimited, creditbook_error_handler)

    @app.exception_handler(SignInRequired)
    async def to_sign_in(request: Request, exc: SignInRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"{PREFIX}/signin?next={quote(target)}")

    @app.exception_handler(CreditbookError)
    async def refused(request: Request, exc: CreditbookError) -> Response:
        # A form that failed validation goes back where it came from with the message;
        # a refusal (403) or anything else shows an error page with the real status.
        back = request.headers.get("referer")
        if (
            request.method == "POST"
            and not isinstance(exc, Forbidden)
            and back
            and urlsplit(back).netloc == request.url.netloc
        ):
            session_of(request).say(exc.message, "error")
            return redirect(safe_next(urlsplit(back).path + _query(back)))
        return render(
            request,
            "error.html",
            {"title": exc.title, "message": exc.message, "code": exc.code, "status": exc.status},
            status=exc.status,
        )

    @app.exception_handler(DatabaseUnavailable)
    async def unavailable(request: Request, exc: DatabaseUnavailable) -> Response:
        # A page, or problem+json for the pages' scripts; never a redirect that would
        # only fail again, and no database round trip to render it.
        note_refusal(request.scope, exc)
        retry_after = dashboard_of(request).settings.database_retry_after_seconds
        accept = request.headers.get("accept", "")
        if request.url.path.endswith(".json") or ("json" in accept and "text/html" not in accept):
            return database_unavailable_response(exc, retry_after, request)
        page = render(
            request,
            "error.html",
            {"title": exc.title, "message": exc.message, "code": exc.code, "user": None},
            status=exc.status,
        )
        page.headers["Retry-After"] = str(retry_after)
        return page

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        title = "Page not found" if exc.status_code == 404 else "Request refused"
        return render(
            request,
            "error.html",
            {"title": title, "message": str(exc.detail), "code": "http_error"},
            status=exc.status_code,
        )

    return app


def _query(url: str) -> str:
    query = urlsplit(url).query
    return f"?{query}" if query else ""
