"""Build a ``ProviderRegistry`` from plain configuration (a dict, e.g. from TOML or JSON).

The format: each feature maps to its waterfall, a list of provider entries
tried in order. Every entry has a ``kind``, may have a ``name`` and the limits
``max_concurrency``, ``rate_per_second`` and ``burst``; other keys go to the
provider::

    {
      "email_finder": [
        {"kind": "email",
         "dns": {"nameservers": ["127.0.0.1"], "port": 53, "timeout": 2.0},
         "smtp_probe": {"enabled": false, "port": 25, "helo": "mail.example.com",
                        "mail_from": "probe@example.com", "timeout": 10},
         "patterns": ["{first}.{last}", "{f}{last}"], "max_probed": 6},
        {"kind": "sandbox", "rates": {"deliverable": 0.55, "risky": 0.10}}
      ],
      "linkedin_enrichment": [
        {"kind": "linkedin", "url": "https://...", "auth_header": "X-Api-Key",
         "auth_value": "...", "timeout": 10, "retries": 2, "backoff": 0.2}
      ],
      "phone_finder": [
        {"kind": "phone", "base_url": "https://...", "api_key": "...",
         "default_region": "US", "rate_per_second": 5, "burst": 5, "max_concurrency": 4}
      ],
      "ai_variable": [
        {"kind": "openai", "base_url": "https://api.openai.com/v1", "api_key": "...",
         "model": "gpt-4o-mini"},
        {"kind": "template"}
      ],
      "some_feature": [
        {"kind": "http", "url": "https://...", "method": "POST", "value_path": "data.value",
         "outcome_path": "data.status", "outcome_map": {"ok": "found"},
         "data_paths": {"source": "meta.source"}}
      ]
    }

Kinds: ``sandbox`` (any enrichment feature), ``email`` (email_finder),
``phone`` (phone_finder), ``linkedin`` (linkedin_enrichment), ``http`` (any
enrichment feature), ``openai`` and ``template`` (ai_variable). A mistake in
the configuration raises ``ProviderError`` naming the feature, the entry and
what is valid.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import httpx

from creditbook.adapters.providers.base import (
    AI_VARIABLE,
    DEFAULT_BILLABLE_OUTCOMES,
    EMAIL_FINDER,
    FEATURE_OUTCOMES,
    LINKEDIN_ENRICHMENT,
    PHONE_FINDER,
    Provider,
    ProviderError,
)
from creditbook.adapters.providers.email_finder import (
    EmailFinderProvider,
    MxResolver,
    SmtpProbeSettings,
    resolver_from_config,
)
from creditbook.adapters.providers.http_provider import HttpEnrichmentProvider, LinkedInProvider
from creditbook.adapters.providers.llm import OpenAIChatProvider, TemplateAiProvider
from creditbook.adapters.providers.phone_finder import PhoneFinderProvider
from creditbook.adapters.providers.registry import ProviderRegistry
from creditbook.adapters.providers.sandbox import SandboxProvider

_LIMIT_KEYS = ("max_concurrency", "rate_per_second", "burst")

#: kind -> the features it can answer (None: any enrichment feature).
KINDS: Mapping[str, tuple[str, ...] | None] = {
    "sandbox": None,
    "http": None,
    "email": (EMAIL_FINDER,),
    "phone": (PHONE_FINDER,),
    "linkedin": (LINKEDIN_ENRICHMENT,),
    "openai": (AI_VARIABLE,),
    "template": (AI_VARIABLE,),
}


class _Context:
    def __init__(
        self, resolver: MxResolver | None, transport: httpx.AsyncBaseTransport | None
    ) -> None:
        self.resolver = resolver
        self.transport = transport


def _email(feature: str, options: dict[str, Any], ctx: _Context) -> Provider:
    dns_config = options.pop("dns", {})
    probe_config = options.pop("smtp_probe", {})
    if not isinstance(dns_config, Mapping) or not isinstance(probe_config, Mapping):
        raise TypeError("'dns' and 'smtp_probe' must be tables")
    resolver = ctx.resolver or resolver_from_config(dns_config)
    if "patterns" in options:
        options["patterns"] = tuple(options["patterns"])
    return EmailFinderProvider(resolver, probe=SmtpProbeSettings(**probe_config), **options)


def _sandbox(feature: str, options: dict[str, Any], ctx: _Context) -> Provider:
    return SandboxProvider(feature, **options)


def _http(feature: str, options: dict[str, Any], ctx: _Context) -> Provider:
    options.setdefault("name", "http")
    return HttpEnrichmentProvider(feature=feature, transport=ctx.transport, **options)


def _linkedin(feature: str, options: dict[str, Any], ctx: _Context) -> Provider:
    return LinkedInProvider(transport=ctx.transport, **options)


def _phone(feature: str, options: dict[str, Any], ctx: _Context) -> Provider:
    return PhoneFinderProvider(transport=ctx.transport, **options)


def _openai(feature: str, options: dict[str, Any], ctx: _Context) -> Provider:
    return OpenAIChatProvider(transport=ctx.transport, **options)


def _template(feature: str, options: dict[str, Any], ctx: _Context) -> Provider:
    return TemplateAiProvider(**options)


_BUILDERS: Mapping[str, Callable[[str, dict[str, Any], _Context], Provider]] = {
    "sandbox": _sandbox,
    "http": _http,
    "email": _email,
    "phone": _phone,
    "linkedin": _linkedin,
    "openai": _openai,
    "template": _template,
}


def build_provider(
    feature: str,
    entry: Mapping[str, Any],
    *,
    resolver: MxResolver | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Provider:
    """One provider from its configuration entry (limits are ignored here)."""
    options = {k: v for k, v in entry.items() if k not in _LIMIT_KEYS}
    kind = options.pop("kind", None)
    if kind not in _BUILDERS:
        raise ProviderError(
            f"{feature}: provider kind {kind!r} is not known; valid kinds: {', '.join(KINDS)}",
            feature=feature,
            kind=kind,
        )
    allowed = KINDS[kind]
    if allowed is not None and feature not in allowed:
        raise ProviderError(
            f"{feature}: provider kind {kind!r} answers only {', '.join(allowed)}",
            feature=feature,
            kind=kind,
        )
    try:
        return _BUILDERS[kind](feature, options, _Context(resolver, transport))
    except TypeError as exc:
        raise ProviderError(
            f"{feature}: provider kind {kind!r} has a bad option: {exc}",
            feature=feature,
            kind=kind,
        ) from exc


def build_registry(
    config: Mapping[str, Any],
    *,
    billable_outcomes: Mapping[str, Collection[str]] = DEFAULT_BILLABLE_OUTCOMES,
    resolver: MxResolver | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ProviderRegistry:
    """A registry with each feature's waterfall built from ``config`` (format above).

    ``resolver`` replaces every ``email`` provider's DNS resolver and
    ``transport`` every HTTP provider's transport (tests, proxies).
    """
    registry = ProviderRegistry(billable_outcomes)
    for feature, entries in config.items():
        if feature not in billable_outcomes:
            raise ProviderError(
                f"provider configuration names unknown feature {feature!r}; "
                f"valid features: {', '.join(sorted(billable_outcomes))}",
                feature=feature,
            )
        if not isinstance(entries, list) or not entries:
            raise ProviderError(
                f"{feature}: expected a non-empty list of provider entries, got {entries!r}",
                feature=feature,
            )
        for index, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise ProviderError(
                    f"{feature}[{index}]: a provider entry is a table with a 'kind'",
                    feature=feature,
                )
            provider = build_provider(feature, entry, resolver=resolver, transport=transport)
            limits = {k: entry[k] for k in _LIMIT_KEYS if k in entry}
            registry.add(provider, **limits)
    return registry


def default_registry(
    billable_outcomes: Mapping[str, Collection[str]] = DEFAULT_BILLABLE_OUTCOMES,
) -> ProviderRegistry:
    """The sandbox for every enrichment feature: safe for demos, no network."""
    return build_registry(
        {f: [{"kind": "sandbox"}] for f in FEATURE_OUTCOMES if f in billable_outcomes},
        billable_outcomes=billable_outcomes,
    )
