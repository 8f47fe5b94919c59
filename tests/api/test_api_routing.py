"""Every API route is reachable: no earlier route of another router shadows it.

The routers are ordered for speed (the spend endpoints first); this holds the
order to what it must not change: which route answers which path.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

import creditbook
from creditbook.entrypoints.api.app import ROUTERS, create_app
from creditbook.entrypoints.api.routes_credits import router as credits_router


def test_every_route_answers_its_own_paths(book: creditbook.Creditbook) -> None:
    app = create_app(book)
    chosen: list[Any] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        # FastAPI writes the route it selected into the request's scope.
        await app(scope, receive, send)
        if scope["type"] == "http":
            chosen.append(scope.get("route"))

    checked = 0
    with TestClient(recording, raise_server_exceptions=False) as client:
        for router in ROUTERS:
            for route in router.routes:
                sample = re.sub(r"{[^}]+}", "x_1", getattr(route, "path", ""))
                for method in sorted(getattr(route, "methods", None) or ()):
                    if method == "HEAD":
                        continue
                    chosen.clear()
                    client.request(method, sample)
                    assert chosen == [route], (method, sample, chosen)
                    checked += 1
    assert checked >= 40


def test_the_spend_endpoints_are_tried_first() -> None:
    assert ROUTERS[0] is credits_router
