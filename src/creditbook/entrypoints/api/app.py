"""The HTTP API: ``create_app(book, settings)`` builds the FastAPI application.

A thin layer over the library: routes parse and check input, call the
``Creditbook`` (and ``AccessService``) and render the answer; errors become
RFC 9457 problem details (``problems.py``). One module per area holds its
router; adding an area is one line in ``ROUTERS`` below (an area module
exposes ``router = APIRouter(...)``, optionally with a lifespan for its
background worker, and uses the dependencies of ``deps.py``:
``ServicesDep``, ``MemberDep``, ``AdminDep``, ``OperatorDep``,
``IdempotencyKey``).

Every request body is held to its route's limit as it streams in
(``body_limits.py``: 413 ``payload_too_large``), and every request of a team key
to its rate limits (``adapters/rate_limits.py``: 429 ``rate_limited``); the
dashboard shares the application's rate limits.

Every request gets a request id (the caller's ``X-Request-ID`` if it is
sane, else a new one), echoed in ``X-Request-ID`` and present on every log
line of the request; each request is logged once as JSON.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditbook.adapters.rate_limits import RateLimits
from creditbook.config import Settings
from creditbook.domain.errors import CreditbookError
from creditbook.domain.ids import new_id
from creditbook.entrypoints.api import (
    routes_batch,
    routes_credits,
    routes_enrichment,
    routes_history,
    routes_members,
    routes_purchases,
    routes_system,
    routes_teams,
)
from creditbook.entrypoints.api.body_limits import BodyLimit, BodyLimits
from creditbook.entrypoints.api.deps import Services
from creditbook.entrypoints.api.logs import install_request_id_factory, request_id_var
from creditbook.entrypoints.api.problems import (
    Problem,
    creditbook_error_handler,
    http_error_handler,
    internal_error_response,
    unexpected_error_handler,
    validation_error_handler,
)
from creditbook.service.access import AccessService
from creditbook.service.credits import Creditbook

# Routing tries routes in this order on every request: the spend endpoints, the
# hot path, come first (routing was a tenth of a charge's event-loop time with
# them fourth). No path of one router is shadowed by another's (tested).
ROUTERS: list[APIRouter] = [
    routes_credits.router,
    routes_batch.router,
    routes_system.router,
    routes_teams.router,
    routes_members.router,
    routes_history.router,
    routes_purchases.router,
    routes_enrichment.router,
]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger("creditbook.api")


class RequestContext:
    """Pure ASGI middleware: request id, one JSON log line per request, last-resort 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        # new_id draws its random bytes in bulk: uuid4 makes one os.urandom system
        # call per request, a tenth of a charge's server time in this sandbox.
        request_id = given if _REQUEST_ID.match(given) else new_id("req")
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error")
            if not state["started"]:
                await internal_error_response()(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": state["status"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            request_id_var.reset(token)


def create_app(book: Creditbook, settings: Settings | None = None) -> FastAPI:
    """The API over ``book``; installs the monthly-cap guard on it."""
    settings = settings or Settings()
    install_request_id_factory()
    access = AccessService(book).install()
    app = FastAPI(
        title="creditbook",
        version="1",
        description=(
            "Credits engine API. Authenticate with `Authorization: Bearer <key>`: a team "
            "API key, or the operator key for `/v1/teams`. Errors are RFC 9457 problem "
            "details with a stable `code`. See docs/api.md."
        ),
    )
    limits = RateLimits(settings)
    app.state.services = Services(book=book, access=access, settings=settings, limits=limits)
    for router in ROUTERS:
        app.include_router(router)
    noop = settings.api_noop if settings.api_noop is not None else settings.env != "production"
    if noop:
        app.include_router(routes_system.noop_router)
    from creditbook.entrypoints.web import create_dashboard  # the dashboard (issue 7)

    app.mount("/dashboard", create_dashboard(book, access, settings, limits=limits))
    app.add_exception_handler(CreditbookError, creditbook_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    app.add_middleware(BodyLimit, limits=BodyLimits.of(settings))
    app.add_middleware(RequestContext)  # added last: outermost, so a 413 has a request id

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
