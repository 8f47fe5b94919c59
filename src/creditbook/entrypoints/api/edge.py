"""What the server checks and adds at its edge, before any route: the Host, HSTS.

``AllowedHosts`` refuses a request whose ``Host`` header names a host the
server was not configured for (``Settings.host_names``: the public URL's
host, ``CREDITBOOK_ALLOWED_HOSTS``, and the local names outside production).
Starlette's ``TrustedHostMiddleware`` decides; only its answer changes, from
plain text to a problem+json 400 ``host_not_allowed``. The health probes
(``/healthz``, ``/readyz``) answer any host: orchestrators call them by the
container's address, and they make no URL and show nothing.

``StrictTransport`` adds ``Strict-Transport-Security`` to every answer when
the server is reached over https (the public URL is https, or the request
came in as https).
"""

from __future__ import annotations

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditbook.config import Settings
from creditbook.entrypoints.api.problems import problem_response

PROBES = frozenset({"/healthz", "/readyz"})
HSTS = (b"strict-transport-security", b"max-age=31536000")


class _Gate:
    """The ``send`` handed to the host check: the app's messages pass, a refusal is rewritten.

    A request that TrustedHostMiddleware lets through is handed the original
    ``send`` (``AllowedHosts._through``), so only its own refusal reaches
    ``__call__``: that is answered as problem+json instead.
    """

    def __init__(self, send: Send, scope: Scope) -> None:
        self.send = send
        self.scope = scope
        self.answered = False

    async def __call__(self, message: Message) -> None:
        if self.answered:
            return
        self.answered = True
        response = problem_response(
            400,
            "host_not_allowed",
            "Host not allowed",
            "the Host header names a host this server is not configured for; "
            "the operator sets CREDITBOOK_PUBLIC_URL and CREDITBOOK_ALLOWED_HOSTS",
        )
        await response(self.scope, _nothing, self.send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


class AllowedHosts:
    """Pure ASGI middleware: TrustedHostMiddleware, answering problem+json."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.check = TrustedHostMiddleware(
            self._through, allowed_hosts=settings.host_names(), www_redirect=False
        )

    async def _through(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert isinstance(send, _Gate)
        await self.app(scope, receive, send.send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in PROBES:
            await self.app(scope, receive, send)
            return
        await self.check(scope, receive, _Gate(send, scope))


class StrictTransport:
    """Pure ASGI middleware: HSTS on every answer of a server reached over https."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.always = settings.https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (self.always or scope.get("scheme") == "https"):
            await self.app(scope, receive, send)
            return

        async def with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != HSTS[0]]
                message = {**message, "headers": [*headers, HSTS]}
            await send(message)

        await self.app(scope, receive, with_hsts)
