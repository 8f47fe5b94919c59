"""Find a phone number through an HTTP data source, keeping only numbers that are valid.

The data source contract (document it to whoever runs the source):

    GET {base_url}?linkedin_url=...&email=...&name=First+Last&domain=example.com
    (only the parameters the lead has; header ``{auth_header}: {api_key}`` when set)

    200 {"phones": ["+1 202-555-0123", "020 7946 0123", ...]}   candidates, best first
    200 {"phones": []} or 404                                     nobody found

Each candidate is parsed with ``phonenumbers`` (numbers without ``+`` are read
in ``default_region``) and the first valid one wins: ``found`` with the number
in E.164 and ``data = {"country": "US", "line_type": "mobile"}``. No valid
number gives ``not_found``. Transport failures and 5xx answers are retried,
then raise ``ProviderError`` (see ``http_provider``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import phonenumbers
from phonenumbers import PhoneNumberType

from creditbook.adapters.providers.base import PHONE_FINDER, Lead, ProviderError, Result
from creditbook.adapters.providers.http_provider import HttpNotFound, Sleep, request_json

_LINE_TYPES: dict[int, str] = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
}


def normalize_phone(raw: str, default_region: str | None = None) -> tuple[str, str, str] | None:
    """(E.164, region, line type) of a valid number, else ``None``."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(number) or "ZZ"
    line_type = _LINE_TYPES.get(phonenumbers.number_type(number), "unknown")
    return e164, region, line_type


class PhoneFinderProvider:
    """phone_finder from an HTTP data source answering ``{"phones": [...]}``."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        auth_header: str = "Authorization",
        default_region: str | None = "US",
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        name: str = "phone",
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ProviderError(
                f"phone provider {name!r}: base_url must be http(s), got {base_url!r}"
            )
        headers = {auth_header: api_key} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout, transport=transport)
        self.base_url = base_url
        self.default_region = default_region
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def feature(self) -> str:
        return PHONE_FINDER

    @staticmethod
    def query(lead: Lead) -> dict[str, str]:
        """The query parameters sent for ``lead``."""
        params: dict[str, str] = {}
        if lead.linkedin_url:
            params["linkedin_url"] = lead.linkedin_url.strip()
        if lead.email:
            params["email"] = lead.email.strip()
        full_name = " ".join(p.strip() for p in (lead.first_name, lead.last_name) if p)
        if full_name:
            params["name"] = full_name
        if lead.company_domain:
            params["domain"] = lead.company_domain.strip()
        return params

    async def lookup(self, lead: Lead, *, prompt: str | None = None) -> Result:
        try:
            document, _ = await request_json(
                self._client,
                "GET",
                self.base_url,
                provider=self._name,
                retries=self.retries,
                backoff=self.backoff,
                sleep=self._sleep,
                params=self.query(lead),
            )
        except HttpNotFound:
            return Result(PHONE_FINDER, "not_found", None, {}, self._name)
        phones: Any = document.get("phones") if isinstance(document, dict) else None
        if not isinstance(phones, list):
            raise ProviderError(
                f"phone provider {self._name!r} answered without a 'phones' list; "
                'the contract is {"phones": ["+1 ...", ...]}',
                provider=self._name,
            )
        rejected = 0
        for raw in phones:
            normalized = normalize_phone(str(raw), self.default_region)
            if normalized is None:
                rejected += 1
                continue
            e164, region, line_type = normalized
            data = {"country": region, "line_type": line_type}
            return Result(PHONE_FINDER, "found", e164, data, self._name)
        return Result(PHONE_FINDER, "not_found", None, {"rejected": str(rejected)}, self._name)

    async def aclose(self) -> None:
        await self._client.aclose()
