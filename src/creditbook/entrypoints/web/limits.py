"""The dashboard's rate limits: sign-in attempts, sign-in link requests, CSV exports.

The dashboard counts against the same ``RateLimits`` as the API it is mounted in
(``adapters/rate_limits.py``), so a client address that guesses keys here and
there is counted once. Each limit is a FastAPI dependency of its route, resolved
on the event loop before the (synchronous) route runs; a refusal is 429
``rate_limited`` problem details with ``Retry-After``, as in the API:

- ``POST /dashboard/signin`` and ``POST /dashboard/signin/link/redeem``: refused
  for a client address that failed to authenticate too often
  (``refuse_failing_address``), before the key or link is looked up; a refused
  key or link counts against the address (``count_failed_signin``);
- ``POST /dashboard/signin/link``: per client address and per email address
  (``limit_link_requests``);
- ``GET /dashboard/usage.csv`` and ``.../results.csv``: per member (``limit_exports``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from creditbook.adapters.rate_limits import client_address
from creditbook.entrypoints.web.app import WebUser, dashboard_of, signed_in


async def refuse_failing_address(request: Request) -> None:
    """Refuse a client address that failed to sign in (or to use an API key) too often."""
    limits = dashboard_of(request).limits
    await limits.refuse_failing_address(client_address(request.scope))


def count_failed_signin(request: Request) -> None:
    """A refused key or link, from the synchronous route (a worker thread of the loop)."""
    limits = dashboard_of(request).limits
    limits.blocking(limits.count_failed_authentication, client_address(request.scope))


async def limit_link_requests(request: Request) -> None:
    """One sign-in link request, against the client address and the email address."""
    form = await request.form()  # parsed once: the CSRF check read it already
    email = form.get("email")
    await dashboard_of(request).limits.count_signin_link(
        client_address(request.scope), email if isinstance(email, str) else ""
    )


async def limit_exports(request: Request, user: Annotated[WebUser, Depends(signed_in)]) -> None:
    """One CSV export, against the signed-in member."""
    await dashboard_of(request).limits.count_export(user.team.id, user.member.id)


FailingAddressCheck = Annotated[None, Depends(refuse_failing_address)]
LinkRequestLimit = Annotated[None, Depends(limit_link_requests)]
ExportLimit = Annotated[None, Depends(limit_exports)]
