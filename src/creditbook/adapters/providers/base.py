"""What every enrichment provider shares: the lead, the result, the protocol, the error.

Providers answer questions about a lead ("what is this person's email
address?") and never touch credits: the job runner holds credits before a
lookup and captures or releases them from the ``Result.outcome``.

    CreditbookError
    └── ProviderError          provider_error   502   configuration or transport failure

A ``ProviderError`` says nothing about the lead, only that the provider could
not answer (bad configuration, the remote service kept failing); the caller
releases its hold and may try again later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol, runtime_checkable

from creditbook.domain.errors import CreditbookError

EMAIL_FINDER = "email_finder"
LINKEDIN_ENRICHMENT = "linkedin_enrichment"
PHONE_FINDER = "phone_finder"
AI_VARIABLE = "ai_variable"

#: Outcomes of each enrichment feature, best first (the catalog's order).
#: The waterfall uses this order to pick the best answer when none is billable.
FEATURE_OUTCOMES: Mapping[str, tuple[str, ...]] = {
    EMAIL_FINDER: ("deliverable", "risky", "undeliverable", "unknown", "not_found"),
    LINKEDIN_ENRICHMENT: ("found", "not_found"),
    PHONE_FINDER: ("found", "not_found"),
    AI_VARIABLE: ("succeeded", "failed"),
}

#: The default catalog's billable outcomes; the registry takes its own set.
DEFAULT_BILLABLE_OUTCOMES: Mapping[str, frozenset[str]] = {
    EMAIL_FINDER: frozenset({"deliverable", "risky"}),
    LINKEDIN_ENRICHMENT: frozenset({"found"}),
    PHONE_FINDER: frozenset({"found"}),
    AI_VARIABLE: frozenset({"succeeded"}),
}

#: The outcome that means "nothing to charge for" when a lookup cannot even start.
NOTHING_OUTCOME: Mapping[str, str] = {
    EMAIL_FINDER: "not_found",
    LINKEDIN_ENRICHMENT: "not_found",
    PHONE_FINDER: "not_found",
    AI_VARIABLE: "failed",
}


class ProviderError(CreditbookError):
    """A provider is misconfigured or its remote service could not be reached."""

    code: ClassVar[str] = "provider_error"
    status: ClassVar[int] = 502
    exit_code: ClassVar[int] = 9
    title: ClassVar[str] = "Enrichment provider failed"


def _norm(value: str | None) -> str:
    return "" if value is None else " ".join(value.split()).casefold()


def _norm_domain(value: str | None) -> str:
    domain = _norm(value)
    for prefix in ("https://", "http://"):
        domain = domain.removeprefix(prefix)
    return domain.removeprefix("www.").split("/", 1)[0]


def _norm_url(value: str | None) -> str:
    url = _norm(value)
    for prefix in ("https://", "http://"):
        url = url.removeprefix(prefix)
    return url.removeprefix("www.").rstrip("/")


@dataclass(frozen=True, slots=True)
class Lead:
    """A person to enrich; every field is optional and kept as given."""

    first_name: str | None = None
    last_name: str | None = None
    company_name: str | None = None
    company_domain: str | None = None
    linkedin_url: str | None = None
    email: str | None = None
    phone: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Lead:
        """A lead from a plain dict; unknown keys are ignored, blanks become ``None``."""
        values: dict[str, str | None] = {}
        for f in fields(cls):
            raw = data.get(f.name)
            values[f.name] = str(raw).strip() or None if raw is not None else None
        return cls(**values)

    def to_dict(self) -> dict[str, str]:
        """The fields that are set, for templates and request bodies."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value.strip():
                out[f.name] = value.strip()
        return out

    def fingerprint(self) -> str:
        """A stable 32-hex id of the lead: equal for leads that differ only in case,
        spacing, ``www.``/scheme/trailing slash, so duplicates can be looked up once."""
        parts = (
            _norm(self.first_name),
            _norm(self.last_name),
            _norm(self.company_name),
            _norm_domain(self.company_domain),
            _norm_url(self.linkedin_url),
            _norm(self.email),
            "".join(ch for ch in (self.phone or "") if ch.isdigit() or ch == "+"),
        )
        return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()

    def _has(self, name: str) -> bool:
        value: str | None = getattr(self, name)
        return value is not None and bool(value.strip())

    def missing_inputs(self, feature: str) -> list[str]:
        """What the lead lacks for ``feature``; empty when a lookup can start.

        email_finder needs first_name, last_name and company_domain or company_name
        (reported as ``company_domain|company_name``); linkedin_enrichment needs
        linkedin_url, or first_name+last_name+company_name (reported as
        ``linkedin_url`` plus the missing names); phone_finder needs linkedin_url or
        email, or first_name+last_name+company_domain (reported as
        ``linkedin_url|email`` plus the missing names); ai_variable needs only its
        prompt. Unknown features need nothing from the lead.
        """
        if feature == EMAIL_FINDER:
            missing = [n for n in ("first_name", "last_name") if not self._has(n)]
            if not (self._has("company_domain") or self._has("company_name")):
                missing.append("company_domain|company_name")
            return missing
        if feature == LINKEDIN_ENRICHMENT:
            if self._has("linkedin_url"):
                return []
            by_name = [n for n in ("first_name", "last_name", "company_name") if not self._has(n)]
            return ["linkedin_url", *by_name] if by_name else []
        if feature == PHONE_FINDER:
            if self._has("linkedin_url") or self._has("email"):
                return []
            by_name = [n for n in ("first_name", "last_name", "company_domain") if not self._has(n)]
            return ["linkedin_url|email", *by_name] if by_name else []
        return []


@dataclass(frozen=True, slots=True)
class Result:
    """A provider's answer: the outcome decides billing, the value is what was found."""

    feature: str
    outcome: str
    value: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    provider: str = ""

    def __post_init__(self) -> None:
        known = FEATURE_OUTCOMES.get(self.feature)
        if known is not None and self.outcome not in known:
            raise ProviderError(
                f"provider {self.provider!r} answered outcome {self.outcome!r} for "
                f"{self.feature}; valid outcomes: {', '.join(known)}",
                provider=self.provider,
                feature=self.feature,
                outcome=self.outcome,
            )


@runtime_checkable
class Provider(Protocol):
    """Answers one feature for one lead. ``prompt`` is used by ``ai_variable`` only."""

    @property
    def name(self) -> str: ...

    @property
    def feature(self) -> str: ...

    async def lookup(self, lead: Lead, *, prompt: str | None = None) -> Result: ...


def check_feature(feature: str, allowed: tuple[str, ...], kind: str) -> None:
    """Refuse building a provider for a feature it cannot answer."""
    if feature not in allowed:
        raise ProviderError(
            f"provider kind {kind!r} cannot answer feature {feature!r}; "
            f"it answers: {', '.join(allowed)}",
            kind=kind,
            feature=feature,
        )
