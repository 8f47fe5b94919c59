"""Enrichment over HTTP: one retrying JSON call, and a provider mapped by configuration.

``request_json`` retries with exponential backoff (``backoff * 2**n`` seconds)
on 5xx answers, 429, timeouts and connection errors, and raises
``ProviderError`` once the retries are spent, so a remote service that keeps
failing is reported as a provider failure, not as an outcome about the lead
(the job runner then releases its hold). A 404 is an answer ("no such
person"): it maps to the feature's "nothing" outcome. Other 4xx answers mean
the request or the configuration is wrong and raise at once.

``HttpEnrichmentProvider`` sends the lead (POST JSON body of the lead's set
fields, or GET query parameters) and reads its answer through dotted paths
(``"data.person.email"``, ``"phones.0"``):

- ``value_path``: the found value;
- ``outcome_path`` + ``outcome_map``: the remote's status mapped to an outcome;
  without them the outcome is ``found_outcome`` when a value is there, else
  ``missing_outcome``;
- ``data_paths``: extra fields copied as strings into ``Result.data``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from creditbook.adapters.providers.base import (
    FEATURE_OUTCOMES,
    LINKEDIN_ENRICHMENT,
    NOTHING_OUTCOME,
    Lead,
    ProviderError,
    Result,
)

Sleep = Callable[[float], Awaitable[None]]
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HttpNotFound(Exception):
    """The remote answered 404: it knows nothing about this lead."""


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    retries: int = 2,
    backoff: float = 0.2,
    sleep: Sleep = asyncio.sleep,
    **kwargs: Any,
) -> tuple[Any, int]:
    """The decoded JSON answer and how many attempts it took.

    Raises ``HttpNotFound`` on 404 and ``ProviderError`` on anything else that
    is not a 2xx JSON answer after ``retries`` retries.
    """
    attempt = 0
    while True:
        attempt += 1
        problem: str
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            problem = f"timed out ({type(exc).__name__})"
        except httpx.TransportError as exc:
            problem = f"connection failed ({type(exc).__name__}: {exc})"
        else:
            if response.status_code == 404:
                raise HttpNotFound(url)
            if response.is_success:
                try:
                    return response.json(), attempt
                except ValueError as exc:
                    raise ProviderError(
                        f"provider {provider!r} answered {response.status_code} "
                        f"with a body that is not JSON",
                        provider=provider,
                        status=response.status_code,
                    ) from exc
            if response.status_code not in RETRY_STATUSES:
                raise ProviderError(
                    f"provider {provider!r} refused the request with HTTP "
                    f"{response.status_code}: {response.text[:200]}",
                    provider=provider,
                    status=response.status_code,
                )
            problem = f"HTTP {response.status_code}"
        if attempt > retries:
            raise ProviderError(
                f"provider {provider!r} failed after {attempt} attempts: {problem}",
                provider=provider,
                attempts=attempt,
                problem=problem,
            )
        await sleep(backoff * 2 ** (attempt - 1))


def json_path(document: Any, path: str) -> Any:
    """The value at a dotted path (``a.b.0.c``), or ``None`` when any step is missing."""
    current = document
    for step in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(step)
        elif isinstance(current, list) and step.lstrip("-").isdigit():
            index = int(step)
            current = current[index] if -len(current) <= index < len(current) else None
        else:
            return None
        if current is None:
            return None
    return current


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


class HttpEnrichmentProvider:
    """A provider for any feature, backed by a JSON HTTP API and a response mapping."""

    def __init__(
        self,
        *,
        name: str,
        feature: str,
        url: str,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        auth_header: str | None = None,
        auth_value: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        value_path: str = "value",
        outcome_path: str | None = None,
        outcome_map: Mapping[str, str] | None = None,
        found_outcome: str | None = None,
        missing_outcome: str | None = None,
        data_paths: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        outcomes = FEATURE_OUTCOMES.get(feature)
        if outcomes is None:
            raise ProviderError(
                f"http provider {name!r}: unknown feature {feature!r}; "
                f"valid features: {', '.join(FEATURE_OUTCOMES)}",
                feature=feature,
            )
        if method.upper() not in ("GET", "POST"):
            raise ProviderError(f"http provider {name!r}: method must be GET or POST")
        if not url.startswith(("http://", "https://")):
            raise ProviderError(f"http provider {name!r}: url must be http(s), got {url!r}")
        self._found = found_outcome or outcomes[0]
        self._missing = missing_outcome or NOTHING_OUTCOME[feature]
        self._outcome_map = dict(outcome_map or {})
        for outcome in (self._found, self._missing, *self._outcome_map.values()):
            if outcome not in outcomes:
                raise ProviderError(
                    f"http provider {name!r} maps to outcome {outcome!r}; valid outcomes "
                    f"of {feature}: {', '.join(outcomes)}",
                    feature=feature,
                )
        self._name = name
        self._feature = feature
        self.url = url
        self.method = method.upper()
        all_headers = dict(headers or {})
        if auth_header and auth_value:
            all_headers[auth_header] = auth_value
        self._client = httpx.AsyncClient(
            headers=all_headers, timeout=timeout, transport=transport, follow_redirects=False
        )
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self.value_path = value_path
        self.outcome_path = outcome_path
        self.data_paths = dict(data_paths or {})
        self.last_attempts = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def feature(self) -> str:
        return self._feature

    def _request_kwargs(self, lead: Lead, prompt: str | None) -> dict[str, Any]:
        payload = lead.to_dict()
        if prompt is not None:
            payload["prompt"] = prompt
        if self.method == "GET":
            return {"params": payload}
        return {"json": payload}

    async def lookup(self, lead: Lead, *, prompt: str | None = None) -> Result:
        try:
            document, self.last_attempts = await request_json(
                self._client,
                self.method,
                self.url,
                provider=self._name,
                retries=self.retries,
                backoff=self.backoff,
                sleep=self._sleep,
                **self._request_kwargs(lead, prompt),
            )
        except HttpNotFound:
            return Result(self._feature, self._missing, None, {"http": "404"}, self._name)
        return self.map_response(document)

    def map_response(self, document: Any) -> Result:
        """The ``Result`` a decoded JSON answer stands for."""
        value = _text(json_path(document, self.value_path))
        data = {
            key: text
            for key, path in self.data_paths.items()
            if (text := _text(json_path(document, path))) is not None
        }
        if self.outcome_path is not None:
            remote = _text(json_path(document, self.outcome_path))
            outcome = self._outcome_map.get(remote or "")
            if outcome is None:
                known = FEATURE_OUTCOMES[self._feature]
                outcome = remote if remote in known else self._missing
            if remote is not None:
                data.setdefault("remote_status", remote)
        else:
            outcome = self._found if value is not None else self._missing
        return Result(self._feature, outcome, value, data, self._name)

    async def aclose(self) -> None:
        await self._client.aclose()


class LinkedInProvider(HttpEnrichmentProvider):
    """linkedin_enrichment over HTTP: the remote answers
    ``{"linkedin_url": "...", "headline": ..., "title": ..., "company": ..., "location": ...}``
    (or 404 / no ``linkedin_url`` when nobody matches)."""

    def __init__(
        self,
        *,
        url: str,
        name: str = "linkedin",
        value_path: str = "linkedin_url",
        data_paths: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            name=name,
            feature=LINKEDIN_ENRICHMENT,
            url=url,
            value_path=value_path,
            data_paths=data_paths
            if data_paths is not None
            else {k: k for k in ("headline", "title", "company", "location")},
            **kwargs,
        )
