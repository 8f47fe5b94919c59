"""RFC 9457 problem details: every error the API answers, with a stable ``code``.

``CreditbookError`` subclasses map through their own ``status`` and ``code``
(``insufficient_credits`` keeps ``needed`` and ``available``); request
validation becomes 422 ``validation_error`` with the field errors; unknown
routes and methods become ``not_found`` / ``method_not_allowed``. A database
that cannot serve answers 503 ``database_unavailable`` with ``Retry-After``
and ``outcome`` (``not_applied``, or ``unknown`` when the request may have
committed). Anything else is a bug and answers 500 ``internal_error``
(logged with its traceback).

A refusal that the request's log line should name (5xx) is noted in the
ASGI scope (``note_refusal``); ``request_log.RequestContext`` writes that
one line.
"""

from __future__ import annotations

import logging
import math
from collections.abc import MutableMapping
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from creditbook.domain.errors import CreditbookError, DatabaseUnavailable, RateLimited
from creditbook.entrypoints.api.logs import request_id_var

PROBLEM_JSON = "application/problem+json"
REFUSAL = "creditbook.refusal"  # the ASGI scope's key for the error a request was refused with
log = logging.getLogger("creditbook.api")

_RESERVED = {"type", "title", "status", "detail", "code", "instance", "request_id"}
_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


class Problem(BaseModel):
    """RFC 9457 problem details, plus ``code`` and per-code details."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:creditbook:problem:insufficient_credits"])
    title: str
    status: int
    detail: str
    code: str = Field(examples=["insufficient_credits"])
    instance: str | None = None
    request_id: str | None = None
    needed: int | None = Field(None, description="insufficient_credits: credits needed")
    available: int | None = Field(None, description="insufficient_credits: credits available")
    outcome: str | None = Field(
        None,
        description="database_unavailable: `not_applied` (nothing changed), or `unknown` (it "
        "may have taken effect: retry with the same Idempotency-Key to get its answer)",
    )
    retry_after: float | None = Field(
        None, description="database_unavailable, rate_limited: seconds to wait before a retry"
    )


class Unauthorized(CreditbookError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class TeamSuspended(CreditbookError):
    code = "team_suspended"
    status = 403
    title = "Team suspended"


class NotReady(CreditbookError):
    code = "not_ready"
    status = 503
    title = "Service not ready"


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    request: Request | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:creditbook:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.url.path if request is not None else None,
        "request_id": request_id_var.get(),
    }
    for key, value in (extra or {}).items():
        if key not in _RESERVED:
            body[key] = value
    return JSONResponse(
        jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


async def creditbook_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CreditbookError)
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = retry_after_header(float(exc.details.get("retry_after", 1)))
    elif isinstance(exc.details.get("retry_after"), int):
        # A refusal that ends by itself (job_still_owned) says when to try again.
        headers["Retry-After"] = retry_after_header(float(exc.details["retry_after"]))
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="creditbook"'
    if exc.status >= 500:
        note_refusal(request.scope, exc)
    return problem_response(
        exc.status, exc.code, exc.title, exc.message, request, exc.details, headers or None
    )


def note_refusal(scope: MutableMapping[str, Any], exc: CreditbookError) -> None:
    """Remember ``exc`` for the request's one log line (the dashboard's handlers too)."""
    scope[REFUSAL] = exc


def database_unavailable_response(
    exc: DatabaseUnavailable, retry_after: int, request: Request | None = None
) -> JSONResponse:
    """503 ``database_unavailable``: ``Retry-After`` and ``outcome`` say when and whether
    to retry (with the same idempotency key when the outcome is unknown)."""
    return problem_response(
        exc.status,
        exc.code,
        exc.title,
        exc.message,
        request,
        {**exc.details, "retry_after": retry_after},
        {"Retry-After": str(retry_after)},
    )


async def database_unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DatabaseUnavailable)
    note_refusal(request.scope, exc)
    settings = request.app.state.services.settings
    return database_unavailable_response(exc, settings.database_retry_after_seconds, request)


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    where = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
    return problem_response(
        422,
        "validation_error",
        "Invalid input",
        f"the request is not valid: {where}" if where else "the request is not valid",
        request,
        {"errors": errors},
    )


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = str(exc.detail) if exc.detail else ""
    if exc.status_code == 400:
        # FastAPI's "error parsing the body" is invalid input like any other.
        return problem_response(
            422,
            "validation_error",
            "Invalid input",
            f"the request body could not be read: {detail or 'malformed'}",
            request,
            {"errors": [{"loc": ["body"], "msg": detail or "malformed", "type": "body_error"}]},
        )
    code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "Request refused"))
    detail = detail or title
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}; see /docs"
    return problem_response(
        exc.status_code, code, title, detail, request, headers=dict(exc.headers or {}) or None
    )


def internal_error_response(request: Request | None = None) -> JSONResponse:
    return problem_response(
        500,
        "internal_error",
        "Internal error",
        "an unexpected error occurred; it was logged with this request's id",
        request,
    )


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return internal_error_response(request)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: these statuses answer problem details."""
    descriptions = {
        400: "Bad request",
        401: "Missing or invalid API key",
        402: "Insufficient credits or monthly cap reached",
        403: "Not allowed for this key's role",
        404: "Not found (or not in this key's team)",
        409: "Conflict (idempotency key reuse, hold not active, ...)",
        413: "Request body over the route's limit",
        422: "Invalid input",
        429: "Rate limited; see Retry-After",
        503: "Database unavailable or not ready; see Retry-After",
    }
    return {
        s: {
            "description": descriptions.get(s, "Error"),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for s in statuses
    }
