"""What every route depends on: the services, the caller (auth, role, rate limit), the key.

``Authorization: Bearer <key>`` is either the operator key from
``CREDITBOOK_OPERATOR_KEY`` (platform endpoints) or a team API key
(``cbk.<team>.<key id>.<secret>``, see ``service.access``). Verified team
keys are cached for a few seconds by their hash; a revocation, removal, role
or team status change made through this process's ``AccessService`` (by the
API or the dashboard) empties the cache at once (its ``on_change``), others
take effect within ``KEY_CACHE_SECONDS``.

The dependencies are ``async def``: FastAPI runs a plain ``def`` dependency on
its thread pool, and at 32 concurrent charges the hops between the event loop
and the pool's threads (four per request, all fighting for the GIL) cost more
than the charge itself. Only a cache miss, which reads the database, goes to a
thread. The spend routes (charge, hold, capture, release) take no dependency at
all: they call ``spender(request)``, the same checks plus the ``Idempotency-Key``,
because every dependency and declared parameter costs FastAPI work per request.

Every request of a team key counts against its key, member and team
(``adapters/rate_limits.py``). A key that fails to verify counts against the
client address, and an address that failed too often is refused before its next
key is read from the database. The routes of a ``KeyFirst`` router (the spend
routes and the other credits routes, batch charges, enrichment) check the key
before FastAPI reads and parses the body: an anonymous or rate-limited caller
is refused without it.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import StringConstraints, TypeAdapter, ValidationError

from creditbook.adapters.rate_limits import RateLimits, client_address
from creditbook.config import Settings
from creditbook.domain.errors import Forbidden
from creditbook.domain.ledger import Actor
from creditbook.entrypoints.api.problems import TeamSuspended, Unauthorized
from creditbook.service.access import AccessService, Principal, hash_key
from creditbook.service.credits import Creditbook
from creditbook.service.outages import OutageCounter
from creditbook.service.requests import MAX_KEY_LENGTH

KEY_CACHE_SECONDS = 5.0
OPERATOR = "operator"


@dataclass
class Services:
    book: Creditbook
    access: AccessService
    settings: Settings
    limits: RateLimits
    # Requests refused for a database outage (counted by request_log.RequestContext).
    outages: OutageCounter = field(default_factory=OutageCounter)
    _cache: dict[str, tuple[Principal, float]] = field(default_factory=dict)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)
    _generation: int = 0
    _verifying: dict[
        tuple[asyncio.AbstractEventLoop, str, int], asyncio.Future[Principal | None]
    ] = field(default_factory=dict)

    def cached(self, key_hash: str) -> Principal | None:
        found = self._cache.get(key_hash)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def remember(self, key_hash: str, principal: Principal, generation: int) -> None:
        """Cache ``principal``, unless the keys changed since ``generation`` was read."""
        with self._cache_lock:
            if generation != self._generation:
                return  # a revocation landed while it was being verified
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[key_hash] = (principal, time.monotonic() + KEY_CACHE_SECONDS)

    def forget_keys(self) -> None:
        """Called after any change of keys, members or team status."""
        with self._cache_lock:
            self._generation += 1
            self._cache.clear()

    async def verify(self, key_hash: str, token: str) -> Principal | None:
        """The key's principal from the database, ONE query per key at a time.

        When a busy key's cache entry expires, every request in flight with it
        misses at once; each running its own query on the thread pool made a
        latency spike every ``KEY_CACHE_SECONDS`` in the p99 of HTTP charges
        (decision 0008).
        Requests of one event loop share the verification in flight, unless the
        keys changed since it started: a request that comes after a revocation
        checks again.
        """
        loop = asyncio.get_running_loop()
        generation = self._generation
        which = (loop, key_hash, generation)
        flight = self._verifying.get(which)
        if flight is None:
            flight = loop.create_task(self._verify(key_hash, token, generation))
            self._verifying[which] = flight
            flight.add_done_callback(lambda _: self._verifying.pop(which, None))
        # shielded: one waiter cancelled (its client left) does not cancel the others'
        return await asyncio.shield(flight)

    async def _verify(self, key_hash: str, token: str, generation: int) -> Principal | None:
        principal = await run_in_threadpool(self.access.verify, token)
        if principal is not None:
            self.remember(key_hash, principal, generation)
        return principal


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


@dataclass(frozen=True, slots=True)
class Caller:
    """The operator, or a team key's principal."""

    principal: Principal | None

    @property
    def is_operator(self) -> bool:
        return self.principal is None

    @property
    def actor(self) -> Actor:
        if self.principal is None:
            return Actor(operator=OPERATOR)
        return Actor(member_id=self.principal.member_id, api_key_id=self.principal.key_id)


bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="A team API key (cbk.<team>.<key id>.<secret>) or the operator key.",
)


# Where a KeyFirst route leaves the caller it checked, for the dependencies to take.
_CALLER = "creditbook.caller"


async def caller(
    request: Request,
    svc: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Caller:
    checked: Caller | None = request.scope.get(_CALLER)
    if checked is not None:
        return checked
    return await _authenticate(svc, request, credentials)


async def _authenticate(
    svc: Services, request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Caller:
    if credentials is None or not credentials.credentials.strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    token = credentials.credentials.strip()
    operator_key = svc.settings.operator_key
    if operator_key and hmac.compare_digest(token.encode(), operator_key.encode()):
        return Caller(None)
    key_hash = hash_key(token)
    principal = svc.cached(key_hash)
    if principal is None:
        # Only a key that is not cached costs a database read: there, an address
        # that keeps failing is refused first (a cached key's request never waits).
        address = client_address(request.scope)
        await svc.limits.refuse_failing_address(address)
        principal = await svc.verify(key_hash, token)
        if principal is None:
            await svc.limits.count_failed_authentication(address)
            raise Unauthorized("unknown or revoked API key")
    await svc.limits.count_request(principal.team_id, principal.member_id, principal.key_id)
    return Caller(principal)


class KeyFirst(APIRoute):
    """A route whose caller is authenticated, and counted, before its body is read.

    FastAPI reads and parses a request's body before it resolves the route's
    dependencies; this route class checks the ``Authorization`` header first (401,
    429) and leaves the caller in the scope for ``caller`` and ``spender``. For
    routers whose every route needs a team key or the operator key.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def key_first(request: Request) -> Response:
            svc: Services = request.app.state.services
            request.scope[_CALLER] = await _authenticate(svc, request, await bearer_scheme(request))
            return await handler(request)

        return key_first


CallerDep = Annotated[Caller, Depends(caller)]


async def operator(who: CallerDep) -> Caller:
    if not who.is_operator:
        raise Forbidden("this endpoint needs the operator key")
    return who


async def team_caller(who: CallerDep) -> Principal:
    return _team_principal(who)


def _team_principal(who: Caller) -> Principal:
    if who.principal is None:
        raise Forbidden("this endpoint needs a team API key (the operator key has no team)")
    if who.principal.team_status != "active":
        raise TeamSuspended(
            f"team {who.principal.team_id!r} is {who.principal.team_status}; "
            "the operator can reactivate it"
        )
    return who.principal


@dataclass(frozen=True, slots=True)
class Spender:
    """The services, the team key's principal and the ``Idempotency-Key`` of a spend request."""

    svc: Services
    me: Principal
    idempotency_key: str | None


async def spender(request: Request) -> Spender:
    """The caller of a spend route (charge, hold, capture, release), from inside the route.

    The same checks and errors as ``services`` -> ``caller`` -> ``team_caller``
    (401, 403, 429 and ``team_suspended``), and the ``Idempotency-Key`` header
    as ``IdempotencyKey`` declares it, but not as FastAPI dependencies: each
    dependency and header parameter costs FastAPI's own work on every request,
    and on ``POST /v1/charges`` these were a fifth of the server's CPU per charge
    (measured interleaved in one server; decision 0008). The spend
    routes are ``KeyFirst``: the key is checked before FastAPI reads the body,
    then FastAPI checks the path and body (422), then the route calls this.
    ``SPEND_OPENAPI`` documents the security scheme and the header as the
    dependencies would (tests/api/test_api_auth.py holds them equal).
    """
    svc: Services = request.app.state.services
    who: Caller | None = request.scope.get(_CALLER)
    if who is None:
        who = await _authenticate(svc, request, await bearer_scheme(request))
    return Spender(svc, _team_principal(who), idempotency_key_of(request))


async def team_admin(who: Annotated[Principal, Depends(team_caller)]) -> Principal:
    if not who.is_admin:
        raise Forbidden("this endpoint needs a team admin's API key")
    return who


OperatorDep = Annotated[Caller, Depends(operator)]
MemberDep = Annotated[Principal, Depends(team_caller)]
AdminDep = Annotated[Principal, Depends(team_admin)]


def actor_of(principal: Principal) -> Actor:
    return Actor(member_id=principal.member_id, api_key_id=principal.key_id)


IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_DESCRIPTION = (
    "Makes the request safe to retry: the same key and body answer the first "
    "status and body with no second effect; the same key with another body "
    "answers 409 idempotency_conflict. Keys are kept at least 30 days."
)
_KEY_LENGTH: dict[str, Any] = {"min_length": 1, "max_length": MAX_KEY_LENGTH}

IdempotencyKey = Annotated[
    str | None,
    Header(alias=IDEMPOTENCY_KEY_HEADER, description=IDEMPOTENCY_KEY_DESCRIPTION, **_KEY_LENGTH),
]

_idempotency_key: TypeAdapter[str] = TypeAdapter(Annotated[str, StringConstraints(**_KEY_LENGTH)])


def idempotency_key_of(request: Request) -> str | None:
    """The request's ``Idempotency-Key``, checked as ``IdempotencyKey`` declares it.

    A bad value is the same 422 ``validation_error`` FastAPI answers for the
    declared parameter, located at ``header.Idempotency-Key``.
    """
    value = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if value is None:
        return None
    try:
        return _idempotency_key.validate_python(value)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("header", IDEMPOTENCY_KEY_HEADER, *e["loc"])} for e in exc.errors()]
        ) from None


SPEND_OPENAPI: dict[str, Any] = {
    "security": [{bearer_scheme.scheme_name: []}],
    "parameters": [
        {
            "name": IDEMPOTENCY_KEY_HEADER,
            "in": "header",
            "required": False,
            "schema": {
                **TypeAdapter(
                    Annotated[str | None, StringConstraints(**_KEY_LENGTH)]
                ).json_schema(),
                "description": IDEMPOTENCY_KEY_DESCRIPTION,
                "title": IDEMPOTENCY_KEY_HEADER,
            },
            "description": IDEMPOTENCY_KEY_DESCRIPTION,
        }
    ],
}
"""The spend routes' ``openapi_extra``: what ``spender`` checks, as FastAPI would list it."""
