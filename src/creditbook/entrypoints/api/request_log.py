"""The request middleware: a request id for every request, and one log line for each.

Every request gets a request id (the caller's ``X-Request-ID`` if it is sane,
else a new one), echoed in ``X-Request-ID`` and present on every log line of
the request. Each request is logged once, as JSON, when it is answered:

- ``info`` for an answer the caller caused or wanted (2xx-4xx);
- ``warning`` with ``outage: true``, the ``code``, ``outcome`` and the driver's
  ``cause`` for ``database_unavailable`` (counted in ``OutageCounter``, and
  summed up rather than repeated by ``logs.OutageLogSummary``);
- ``warning`` (503, ``not_ready``) or ``error`` (other 5xx) with the ``code``
  and ``detail`` of another server-side refusal;
- ``error`` with the traceback for a bug: the only traceback a request logs.

It is also the last resort: an error nothing answered becomes 503
``database_unavailable`` or 500 ``internal_error`` here.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditbook.domain.errors import CreditbookError, DatabaseUnavailable
from creditbook.domain.ids import new_id
from creditbook.entrypoints.api.logs import request_id_var
from creditbook.entrypoints.api.problems import (
    REFUSAL,
    database_unavailable_response,
    internal_error_response,
    note_refusal,
)
from creditbook.service.outages import OutageCounter

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger("creditbook.api")


class RequestContext:
    """Pure ASGI middleware: request id, one JSON log line per request, last-resort answers."""

    def __init__(self, app: ASGIApp, outages: OutageCounter, retry_after: int = 2) -> None:
        self.app = app
        self.outages = outages
        self.retry_after = retry_after

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
        bug: Exception | None = None

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
        except DatabaseUnavailable as exc:  # raised where no handler answers (a middleware)
            note_refusal(scope, exc)
            if not state["started"]:
                response = database_unavailable_response(exc, self.retry_after)
                await response(scope, receive, send_with_id)
        except Exception as exc:
            bug = exc
            if not state["started"]:
                await internal_error_response()(scope, receive, send_with_id)
        finally:
            self._log(scope, state["status"], time.perf_counter() - started, bug)
            request_id_var.reset(token)

    def _log(self, scope: Scope, status: int, seconds: float, bug: Exception | None) -> None:
        fields: dict[str, Any] = {
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        }
        refusal = scope.get(REFUSAL)
        if bug is not None:
            log.error("request", exc_info=bug, extra={**fields, "code": "internal_error"})
        elif isinstance(refusal, DatabaseUnavailable):
            self.outages.count(refusal.cause)
            log.warning(
                "request",
                extra={
                    **fields,
                    "code": refusal.code,
                    "outcome": refusal.outcome,
                    "cause": refusal.cause,
                    "outage": True,
                },
            )
        elif isinstance(refusal, CreditbookError):
            # 503 is a state the server is in (not ready), another 5xx a failure of it.
            level = logging.WARNING if refusal.status == 503 else logging.ERROR
            log.log(
                level, "request", extra={**fields, "code": refusal.code, "detail": refusal.message}
            )
        else:
            log.info("request", extra=fields)
