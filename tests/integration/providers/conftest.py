"""Fixtures starting the loopback stubs of provider_stubs.py; each is stopped after its test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from provider_stubs import DnsStub, HttpHandler, HttpStub


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def dns_stub() -> Iterator[Callable[..., DnsStub]]:
    started: list[DnsStub] = []

    def start(records: dict[tuple[str, str], list[str]], drop: set[str] | None = None) -> DnsStub:
        stub = DnsStub(records, drop or set())
        started.append(stub)
        return stub

    yield start
    for stub in started:
        stub.close()


@pytest.fixture
def http_stub() -> Iterator[Callable[[HttpHandler], HttpStub]]:
    started: list[HttpStub] = []

    def start(handler: HttpHandler) -> HttpStub:
        stub = HttpStub(handler)
        started.append(stub)
        return stub

    yield start
    for stub in started:
        stub.close()
