"""A provider that invents plausible, repeatable answers: for demos, tests and load runs.

The outcome is drawn from a hash of the lead's fingerprint and the feature, so
the same lead always gets the same answer, and across many leads the outcomes
follow the configured rates. Values look real but are harmless: addresses at
the lead's own domain, US phone numbers in the fictitious 555-01XX range (valid
for ``phonenumbers``), LinkedIn URLs under ``/in/``. No I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from creditbook.adapters.providers.base import (
    AI_VARIABLE,
    EMAIL_FINDER,
    FEATURE_OUTCOMES,
    LINKEDIN_ENRICHMENT,
    PHONE_FINDER,
    Lead,
    ProviderError,
    Result,
    check_feature,
)

#: Default share of each outcome; what is left over goes to the last outcome.
DEFAULT_RATES: Mapping[str, Mapping[str, float]] = {
    EMAIL_FINDER: {"deliverable": 0.55, "risky": 0.10, "undeliverable": 0.15, "unknown": 0.10},
    LINKEDIN_ENRICHMENT: {"found": 0.80},
    PHONE_FINDER: {"found": 0.40},
    AI_VARIABLE: {"succeeded": 0.98},
}

_SCALE = 10_000
_AREA_CODES = ("202", "212", "312", "415", "617", "646", "702", "305")
_SLUG = re.compile(r"[^a-z0-9]+")


def _slug(text: str, sep: str = "") -> str:
    return _SLUG.sub(sep, text.casefold()).strip(sep)


class SandboxProvider:
    """Deterministic fake answers for one feature, at configurable rates."""

    def __init__(
        self,
        feature: str,
        *,
        rates: Mapping[str, float] | None = None,
        name: str = "sandbox",
    ) -> None:
        check_feature(feature, tuple(FEATURE_OUTCOMES), "sandbox")
        self._name = name
        self._feature = feature
        outcomes = FEATURE_OUTCOMES[feature]
        chosen = dict(DEFAULT_RATES[feature] if rates is None else rates)
        unknown = set(chosen) - set(outcomes)
        if unknown:
            raise ProviderError(
                f"sandbox rates name unknown outcomes {sorted(unknown)} for {feature}; "
                f"valid outcomes: {', '.join(outcomes)}",
                feature=feature,
            )
        if any(r < 0 for r in chosen.values()) or sum(chosen.values()) > 1.0 + 1e-9:
            raise ProviderError(
                f"sandbox rates for {feature} must be >= 0 and sum to at most 1, got {chosen}",
                feature=feature,
            )
        # Cumulative thresholds on a 0..9999 scale; the last outcome takes the rest.
        self._thresholds: list[tuple[int, str]] = []
        total = 0
        for outcome in outcomes[:-1]:
            total += round(chosen.get(outcome, 0.0) * _SCALE)
            self._thresholds.append((total, outcome))
        self._thresholds.append((_SCALE, outcomes[-1]))

    @property
    def name(self) -> str:
        return self._name

    @property
    def feature(self) -> str:
        return self._feature

    def outcome_for(self, lead: Lead) -> tuple[str, int]:
        """The outcome this lead always gets, and a number to derive values from."""
        digest = hashlib.blake2b(
            f"{self._feature}\x1f{lead.fingerprint()}".encode(), digest_size=8
        ).digest()
        number = int.from_bytes(digest, "big")
        bucket = number % _SCALE
        for threshold, outcome in self._thresholds:
            if bucket < threshold:
                return outcome, number // _SCALE
        return self._thresholds[-1][1], number // _SCALE  # pragma: no cover

    async def lookup(self, lead: Lead, *, prompt: str | None = None) -> Result:
        outcome, seed = self.outcome_for(lead)
        value: str | None = None
        data: dict[str, str] = {"sandbox": "true"}
        if self._feature == EMAIL_FINDER:
            if outcome != "not_found":
                value = self._email(lead)
        elif self._feature == PHONE_FINDER:
            if outcome == "found":
                area = _AREA_CODES[seed % len(_AREA_CODES)]
                value = f"+1{area}55501{seed // 8 % 100:02d}"
                data.update(country="US", line_type="fixed_line_or_mobile")
        elif self._feature == LINKEDIN_ENRICHMENT:
            if outcome == "found":
                value = lead.linkedin_url or self._linkedin(lead, seed)
        elif outcome == "succeeded":
            first = lead.first_name or "there"
            company = lead.company_name or lead.company_domain or "your team"
            value = f"Hi {first}, I noticed what {company} is building and had an idea."
            if prompt:
                data["prompt_chars"] = str(len(prompt))
        return Result(self._feature, outcome, value, data, self._name)

    @staticmethod
    def _email(lead: Lead) -> str:
        first = _slug(lead.first_name or "") or "contact"
        last = _slug(lead.last_name or "")
        domain = (lead.company_domain or "").strip().casefold().removeprefix("www.")
        if not domain:
            domain = (_slug(lead.company_name or "", "") or "example") + ".com"
        local = f"{first}.{last}" if last else first
        return f"{local}@{domain}"

    @staticmethod
    def _linkedin(lead: Lead, seed: int) -> str:
        handle = _slug(f"{lead.first_name or ''} {lead.last_name or ''}", "-") or "member"
        return f"https://www.linkedin.com/in/{handle}-{seed % 0xFFFF:04x}"
