"""HTTP providers (phone, LinkedIn, OpenAI-compatible) against real HTTP servers on loopback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from provider_stubs import HttpHandler, HttpRequest, HttpStub

from creditbook.adapters.providers import (
    Lead,
    LinkedInProvider,
    OpenAIChatProvider,
    PhoneFinderProvider,
    ProviderError,
    build_registry,
)

pytestmark = pytest.mark.anyio

StartHttp = Callable[[HttpHandler], HttpStub]
ADA = Lead(
    first_name="Ada",
    last_name="Lovelace",
    company_name="Acme",
    company_domain="acme.example",
    linkedin_url="https://www.linkedin.com/in/ada-lovelace",
)


async def test_the_phone_finder_sends_the_lead_and_keeps_the_first_valid_number(
    http_stub: StartHttp,
) -> None:
    stub = http_stub(lambda r: (200, {"phones": ["12", "020 7946 0123", "+1 202-555-0143"]}))
    provider = PhoneFinderProvider(stub.url + "/phones", api_key="k-1", default_region="GB")
    try:
        result = await provider.lookup(ADA)
    finally:
        await provider.aclose()
    assert (result.outcome, result.value) == ("found", "+442079460123")
    assert result.data == {"country": "GB", "line_type": "fixed_line"}
    request = stub.requests[0]
    assert request.path == "/phones"
    assert request.headers["authorization"] == "k-1"
    assert request.query == {
        "linkedin_url": "https://www.linkedin.com/in/ada-lovelace",
        "name": "Ada Lovelace",
        "domain": "acme.example",
    }


async def test_the_phone_finder_answers_not_found_when_no_number_is_valid(
    http_stub: StartHttp,
) -> None:
    stub = http_stub(lambda r: (200, {"phones": ["+1 555 555 5555", "not a phone"]}))
    provider = PhoneFinderProvider(stub.url)
    try:
        result = await provider.lookup(ADA)
    finally:
        await provider.aclose()
    assert (result.outcome, result.value, result.data["rejected"]) == ("not_found", None, "2")


async def test_the_linkedin_provider_retries_twice_then_maps_the_answer(
    http_stub: StartHttp,
) -> None:
    calls: list[int] = []

    def flaky(request: HttpRequest) -> tuple[int, Any]:
        calls.append(1)
        if len(calls) <= 2:
            return 503, {"error": "busy"}
        return 200, {"linkedin_url": "https://www.linkedin.com/in/ada", "title": "Countess"}

    stub = http_stub(flaky)
    provider = LinkedInProvider(url=stub.url + "/person", retries=2, backoff=0.01)
    try:
        result = await provider.lookup(Lead(first_name="Ada", last_name="L", company_name="Acme"))
    finally:
        await provider.aclose()
    assert len(stub.requests) == 3
    assert provider.last_attempts == 3
    assert (result.outcome, result.value) == ("found", "https://www.linkedin.com/in/ada")
    assert result.data == {"title": "Countess"}
    assert stub.requests[0].body == {"first_name": "Ada", "last_name": "L", "company_name": "Acme"}


async def test_a_service_that_always_fails_is_a_provider_error_after_the_retries(
    http_stub: StartHttp,
) -> None:
    stub = http_stub(lambda r: (500, {"error": "down"}))
    provider = LinkedInProvider(url=stub.url, retries=2, backoff=0.01)
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.lookup(ADA)
    finally:
        await provider.aclose()
    assert caught.value.code == "provider_error"
    assert caught.value.status == 502
    assert caught.value.details["attempts"] == 3
    assert "HTTP 500" in caught.value.message
    assert len(stub.requests) == 3


async def test_the_waterfall_falls_back_to_the_sandbox_when_the_service_is_down(
    http_stub: StartHttp,
) -> None:
    stub = http_stub(lambda r: (500, {}))
    registry = build_registry(
        {
            "linkedin_enrichment": [
                {"kind": "linkedin", "url": stub.url, "retries": 0},
                {"kind": "sandbox", "rates": {"found": 1.0}},
            ]
        }
    )
    try:
        result = await registry.lookup("linkedin_enrichment", ADA)
    finally:
        await registry.aclose()
    assert (result.outcome, result.provider) == ("found", "sandbox")


def _chat_handler(text: str) -> HttpHandler:
    def handler(request: HttpRequest) -> tuple[int, Any]:
        return 200, {"model": "stub-1", "choices": [{"message": {"content": text}}]}

    return handler


async def test_the_openai_provider_posts_the_rendered_prompt_and_returns_the_text(
    http_stub: StartHttp,
) -> None:
    stub = http_stub(_chat_handler("  Loved your notes on the engine, Ada.  "))
    provider = OpenAIChatProvider(base_url=stub.url + "/v1/", api_key="sk-test", model="stub-1")
    try:
        result = await provider.lookup(ADA, prompt="Write an opener for {{ first_name }}.")
    finally:
        await provider.aclose()
    assert (result.outcome, result.value) == ("succeeded", "Loved your notes on the engine, Ada.")
    request = stub.requests[0]
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body["model"] == "stub-1"
    assert request.body["messages"][-1] == {"role": "user", "content": "Write an opener for Ada."}


async def test_the_openai_provider_fails_on_an_empty_answer_or_an_error(
    http_stub: StartHttp,
) -> None:
    empty = http_stub(_chat_handler("   "))
    broken = http_stub(lambda r: (401, {"error": {"message": "bad key"}}))
    for stub in (empty, broken):
        provider = OpenAIChatProvider(base_url=stub.url, api_key="sk", model="m", retries=0)
        try:
            result = await provider.lookup(ADA, prompt="Hi {{ first_name }}")
        finally:
            await provider.aclose()
        assert (result.outcome, result.value) == ("failed", None)
        assert result.data["error"]
