"""Enrichment providers: they answer what was found for a lead, never touch credits.

Build a waterfall with ``build_registry(config)`` (or ``default_registry()``,
the sandbox for every feature) and call ``await registry.lookup(feature,
lead)``; the job runner holds credits before and captures or releases them by
the ``Result.outcome``.
"""

from creditbook.adapters.providers.base import (
    AI_VARIABLE,
    DEFAULT_BILLABLE_OUTCOMES,
    EMAIL_FINDER,
    FEATURE_OUTCOMES,
    LINKEDIN_ENRICHMENT,
    PHONE_FINDER,
    Lead,
    Provider,
    ProviderError,
    Result,
)
from creditbook.adapters.providers.config import build_provider, build_registry, default_registry
from creditbook.adapters.providers.email_finder import (
    DnsPythonResolver,
    DnsTimeout,
    EmailFinderProvider,
    FakeMxResolver,
    MxResolver,
    SmtpProbeSettings,
    candidate_addresses,
)
from creditbook.adapters.providers.http_provider import (
    HttpEnrichmentProvider,
    LinkedInProvider,
    json_path,
)
from creditbook.adapters.providers.llm import OpenAIChatProvider, TemplateAiProvider, render_prompt
from creditbook.adapters.providers.phone_finder import PhoneFinderProvider, normalize_phone
from creditbook.adapters.providers.registry import LimitedProvider, ProviderRegistry, TokenBucket
from creditbook.adapters.providers.sandbox import SandboxProvider

__all__ = [
    "AI_VARIABLE",
    "DEFAULT_BILLABLE_OUTCOMES",
    "EMAIL_FINDER",
    "FEATURE_OUTCOMES",
    "LINKEDIN_ENRICHMENT",
    "PHONE_FINDER",
    "DnsPythonResolver",
    "DnsTimeout",
    "EmailFinderProvider",
    "FakeMxResolver",
    "HttpEnrichmentProvider",
    "Lead",
    "LimitedProvider",
    "LinkedInProvider",
    "MxResolver",
    "OpenAIChatProvider",
    "PhoneFinderProvider",
    "Provider",
    "ProviderError",
    "ProviderRegistry",
    "Result",
    "SandboxProvider",
    "SmtpProbeSettings",
    "TemplateAiProvider",
    "TokenBucket",
    "build_provider",
    "build_registry",
    "candidate_addresses",
    "default_registry",
    "json_path",
    "normalize_phone",
    "render_prompt",
]
