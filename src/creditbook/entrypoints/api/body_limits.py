"""The most bytes a request body may have, per route, enforced while the body streams in.

``BodyLimit`` is a pure ASGI middleware in front of the whole application (the
API and the dashboard mounted in it). It takes the request's limit from its
path (``BodyLimits.limit_for``), answers 413 ``payload_too_large`` at once when
``Content-Length`` declares more, without reading a byte, and otherwise counts
the bytes as ``receive`` delivers them: the chunk that passes the limit never
reaches the application, which gets ``BodyTooLarge`` from ``receive`` instead
(FastAPI lets an ``HTTPException`` raised while it reads a body through), and
the answer is the 413, whatever the application would have answered. So no
route holds or parses more than its limit, and the Stripe webhook reads at most
its limit before it checks the signature.

The limits are settings (``config.py``, defaults in brackets), declared once here:

- ``POST /v1/webhooks/stripe``: ``max_webhook_bytes`` [256 KiB];
- enrichment job uploads, ``POST /v1/enrichment-jobs`` (JSON leads) and
  ``POST /dashboard/enrichment`` (a CSV file): ``max_upload_bytes`` [20 MiB];
- every other ``/dashboard/...`` request (forms): ``max_form_bytes`` [64 KiB];
- every other request (JSON): ``max_body_bytes`` [1 MiB].

Starlette's ``RequestBodyLimitMiddleware`` (FastAPI's ``max_body_size``) counts
the same way, but its limits are fixed per route when the routers are declared
(ours come from each application's settings), it runs the route before it
refuses a declared oversize, and it answers plain text, not problem details.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditbook.config import Settings
from creditbook.entrypoints.api.problems import problem_response

UPLOAD_PATHS = ("/v1/enrichment-jobs", "/dashboard/enrichment")
WEBHOOK_PATHS = ("/v1/webhooks/stripe",)
FORM_PREFIX = "/dashboard/"


@dataclass(frozen=True, slots=True)
class BodyLimits:
    json: int
    upload: int
    webhook: int
    form: int

    @classmethod
    def of(cls, settings: Settings) -> BodyLimits:
        return cls(
            json=settings.max_body_bytes,
            upload=settings.max_upload_bytes,
            webhook=settings.max_webhook_bytes,
            form=settings.max_form_bytes,
        )

    def limit_for(self, path: str) -> int:
        if path in UPLOAD_PATHS:
            return self.upload
        if path in WEBHOOK_PATHS:
            return self.webhook
        if path.startswith(FORM_PREFIX):
            return self.form
        return self.json


class BodyTooLarge(HTTPException):
    """Raised by ``receive`` to the application when the body passes its limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _detail(limit))


def _detail(limit: int) -> str:
    return f"the request body is larger than this route's limit of {limit:,} bytes"


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we get here
    return None


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = problem_response(
        413,
        "payload_too_large",
        "Payload too large",
        _detail(limit),
        Request(scope),
        {"max_bytes": limit},
    )
    await response(scope, receive, send)


class BodyLimit:
    """Pure ASGI middleware: refuse a body over its route's limit before anything parses it."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.limit_for(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _too_large(scope, receive, send, limit)
            return
        received = 0
        refused = False
        answered = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    raise BodyTooLarge(limit)
            return message

        async def checked_send(message: Message) -> None:
            nonlocal answered
            if refused and not answered:
                return  # what the application answers to BodyTooLarge: the 413 below instead
            if message["type"] == "http.response.start":
                answered = True
            await send(message)

        try:
            await self.app(scope, counted_receive, checked_send)
        except Exception:
            if not refused or answered:
                raise
        if refused and not answered:
            await _too_large(scope, receive, send, limit)
