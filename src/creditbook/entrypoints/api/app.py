"""The HTTP API: ``create_app(book, settings)`` builds the FastAPI application.

A thin layer over the library: routes parse and check input, call the
``Creditbook`` (and ``AccessService``) and render the answer; errors become
RFC 9457 problem details (``problems.py``). One module per area holds its
router; adding an area is one line in ``ROUTERS`` below (an area module
exposes ``router = APIRouter(...)``, optionally with a lifespan for its
background worker, and uses the dependencies of ``deps.py``:
``ServicesDep``, ``MemberDep``, ``AdminDep``, ``OperatorDep``,
``IdempotencyKey``).

Every request gets a request id and one JSON log line (``request_log.py``).
A database outage answers 503 ``database_unavailable`` with ``Retry-After``
on every route, the dashboard's included; ``Services.outages`` counts them.
Every request body is held to its route's limit as it streams in
(``body_limits.py``: 413 ``payload_too_large``), and every request of a team key
to its rate limits (``adapters/rate_limits.py``: 429 ``rate_limited``); the
dashboard shares the application's rate limits.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException

from creditbook.adapters.rate_limits import RateLimits
from creditbook.config import Settings
from creditbook.domain.errors import CreditbookError, DatabaseUnavailable
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
from creditbook.entrypoints.api.edge import AllowedHosts, StrictTransport
from creditbook.entrypoints.api.logs import install_request_id_factory
from creditbook.entrypoints.api.problems import (
    PROBLEM_JSON,
    Problem,
    creditbook_error_handler,
    database_unavailable_handler,
    http_error_handler,
    unexpected_error_handler,
    validation_error_handler,
)
from creditbook.entrypoints.api.request_log import RequestContext
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


def create_app(book: Creditbook, settings: Settings | None = None) -> FastAPI:
    """The API over ``book``; installs the monthly-cap guard on it.

    Refuses (``InvalidInput``) to serve with a weak or missing operator key
    outside development (``Settings.check_served``).
    """
    settings = settings or Settings()
    settings.check_served()
    install_request_id_factory()
    access = AccessService(book.kernel).install()
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
    # A change of keys, members, roles or team status empties the key cache at
    # once, whether the API or the dashboard (same AccessService) made it.
    access.on_change.append(app.state.services.forget_keys)
    for router in ROUTERS:
        app.include_router(router)
    noop = settings.api_noop if settings.api_noop is not None else settings.env != "production"
    if noop:
        app.include_router(routes_system.noop_router)
    from creditbook.entrypoints.web import create_dashboard  # the dashboard (issue 7)

    app.mount("/dashboard", create_dashboard(book, access, settings, limits=limits))
    app.add_exception_handler(CreditbookError, creditbook_error_handler)
    app.add_exception_handler(DatabaseUnavailable, database_unavailable_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    # The last added runs first: the request context (request id, one log line,
    # outages answered and counted) is outermost, so the errors of every
    # middleware inside it are answered and logged there too (a 413 has a
    # request id); then the body limit, HSTS, the Host check.
    app.add_middleware(AllowedHosts, settings=settings)
    app.add_middleware(StrictTransport, settings=settings)
    app.add_middleware(BodyLimit, limits=BodyLimits.of(settings))
    app.add_middleware(
        RequestContext,
        outages=app.state.services.outages,
        retry_after=settings.database_retry_after_seconds,
    )

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
            _every_operation_may_be_unavailable(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _every_operation_may_be_unavailable(schema: dict[str, Any]) -> None:
    """Any route that touches the database may answer 503 ``database_unavailable``."""
    answer = {
        "description": "Database unavailable; see Retry-After and the problem's `outcome`",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for path, operations in schema.get("paths", {}).items():
        if path in ("/healthz", "/v1/noop"):
            continue  # no database work
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("503", answer)
