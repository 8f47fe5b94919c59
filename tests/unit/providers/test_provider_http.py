"""The generic HTTP provider: response mapping and retries, over httpx's MockTransport."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from creditbook.adapters.providers import (
    HttpEnrichmentProvider,
    Lead,
    PhoneFinderProvider,
    ProviderError,
    json_path,
    normalize_phone,
)

pytestmark = pytest.mark.anyio

ADA = Lead("Ada", "Lovelace", "Acme", "acme.example")


def test_json_path_walks_keys_and_list_indexes() -> None:
    doc = {"data": {"people": [{"email": "a@x.example"}, {"email": "b@x.example"}]}}
    assert json_path(doc, "data.people.1.email") == "b@x.example"
    assert json_path(doc, "data.people.-1.email") == "b@x.example"
    assert json_path(doc, "data.people.5.email") is None
    assert json_path(doc, "data.nobody.email") is None
    assert json_path([1, 2], "x") is None


def _provider(
    transport: httpx.MockTransport, *, feature: str = "email_finder", **options: Any
) -> tuple[HttpEnrichmentProvider, list[float]]:
    """A provider over ``transport`` and the list of backoff sleeps it asked for."""
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    provider = HttpEnrichmentProvider(
        name="remote",
        feature=feature,
        url="https://enrich.example/v1",
        transport=transport,
        sleep=sleep,
        auth_header="X-Api-Key",
        auth_value="secret",
        **options,
    )
    return provider, sleeps


def test_a_remote_status_maps_to_an_outcome_and_extra_fields_to_data() -> None:
    provider, _ = _provider(
        httpx.MockTransport(lambda r: httpx.Response(200)),
        value_path="result.email",
        outcome_path="result.status",
        outcome_map={"valid": "deliverable", "accept_all": "risky", "invalid": "undeliverable"},
        data_paths={"score": "result.score"},
    )
    result = provider.map_response(
        {"result": {"email": "a@x.example", "status": "accept_all", "score": 71}}
    )
    assert (result.outcome, result.value) == ("risky", "a@x.example")
    assert result.data == {"score": "71", "remote_status": "accept_all"}
    odd = provider.map_response({"result": {"status": "something_new"}})
    assert odd.outcome == "not_found"  # an unmapped status is not billed


async def test_retries_back_off_exponentially_then_succeed() -> None:
    answers = [
        httpx.Response(502),
        httpx.Response(503),
        httpx.Response(200, json={"value": "x@y.example"}),
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[len(seen) - 1]

    provider, sleeps = _provider(httpx.MockTransport(handler), retries=3, backoff=0.5)
    result = await provider.lookup(ADA)
    assert (result.outcome, result.value) == ("deliverable", "x@y.example")
    assert provider.last_attempts == 3
    assert sleeps == [0.5, 1.0]
    assert seen[0].headers["x-api-key"] == "secret"


async def test_connection_errors_are_retried_and_then_reported() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    provider, _ = _provider(httpx.MockTransport(handler), retries=1)
    with pytest.raises(ProviderError, match="failed after 2 attempts: connection failed"):
        await provider.lookup(ADA)


async def test_a_client_error_is_not_retried_and_a_404_means_nothing_found() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(401 if len(calls) == 1 else 404, text="no key")

    provider, _ = _provider(httpx.MockTransport(handler), retries=3)
    with pytest.raises(ProviderError, match="refused the request with HTTP 401"):
        await provider.lookup(ADA)
    assert len(calls) == 1
    assert (await provider.lookup(ADA)).outcome == "not_found"


async def test_get_requests_send_the_lead_as_query_parameters() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    provider, _ = _provider(
        httpx.MockTransport(handler), method="GET", feature="linkedin_enrichment"
    )
    result = await provider.lookup(Lead(first_name="Ada", company_name="Acme"))
    assert dict(seen[0].url.params) == {"first_name": "Ada", "company_name": "Acme"}
    assert result.outcome == "not_found"


def test_misconfigured_http_providers_are_refused() -> None:
    with pytest.raises(ProviderError, match="valid outcomes of phone_finder"):
        _provider(
            httpx.MockTransport(lambda r: httpx.Response(200)),
            feature="phone_finder",
            outcome_map={"ok": "risky"},
        )
    with pytest.raises(ProviderError, match="url must be http"):
        HttpEnrichmentProvider(name="x", feature="phone_finder", url="ftp://x")


def test_phone_numbers_are_normalized_to_e164_with_region_and_line_type() -> None:
    assert normalize_phone("+33 6 12 34 56 78") == ("+33612345678", "FR", "mobile")
    assert normalize_phone("(202) 555-0143", "US") == ("+12025550143", "US", "fixed_line_or_mobile")
    assert normalize_phone("555-5555", "US") is None
    assert normalize_phone("call me") is None


async def test_a_phone_source_breaking_the_contract_is_a_provider_error() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"numbers": []}))
    provider = PhoneFinderProvider("https://phones.example", transport=transport)
    with pytest.raises(ProviderError, match="without a 'phones' list"):
        await provider.lookup(ADA)
