"""Building the waterfall from plain configuration."""

from __future__ import annotations

from typing import Any

import pytest

from creditbook.adapters.providers import (
    EmailFinderProvider,
    FakeMxResolver,
    Lead,
    LimitedProvider,
    LinkedInProvider,
    OpenAIChatProvider,
    PhoneFinderProvider,
    ProviderError,
    SandboxProvider,
    TemplateAiProvider,
    build_registry,
    default_registry,
)

pytestmark = pytest.mark.anyio

CONFIG: dict[str, Any] = {
    "email_finder": [
        {"kind": "email", "dns": {"nameservers": ["127.0.0.1"], "port": 5353}},
        {"kind": "sandbox", "rates": {"deliverable": 1.0}},
    ],
    "phone_finder": [
        {"kind": "phone", "base_url": "http://127.0.0.1:9/", "max_concurrency": 2},
    ],
    "linkedin_enrichment": [{"kind": "linkedin", "url": "http://127.0.0.1:9/"}],
    "ai_variable": [
        {"kind": "openai", "base_url": "http://127.0.0.1:9", "api_key": "k", "model": "m"},
        {"kind": "template", "name": "offline"},
    ],
}


async def test_each_feature_gets_its_waterfall_in_order() -> None:
    registry = build_registry(CONFIG)
    try:
        kinds = {f: [type(p) for p in registry.providers(f)] for f in registry.features}
    finally:
        await registry.aclose()
    assert kinds == {
        "ai_variable": [OpenAIChatProvider, TemplateAiProvider],
        "email_finder": [EmailFinderProvider, SandboxProvider],
        "linkedin_enrichment": [LinkedInProvider],
        "phone_finder": [LimitedProvider],
    }
    limited = registry.providers("phone_finder")[0]
    assert isinstance(limited, LimitedProvider)
    assert isinstance(limited.inner, PhoneFinderProvider)


async def test_an_injected_resolver_replaces_the_configured_dns() -> None:
    resolver = FakeMxResolver(mx_records={"acme.example": [(10, "mx.acme.example")]})
    registry = build_registry({"email_finder": [{"kind": "email"}]}, resolver=resolver)
    result = await registry.lookup("email_finder", Lead("Ada", "Lovelace", "Acme", "acme.example"))
    assert (result.outcome, result.provider) == ("risky", "email")


async def test_the_default_registry_answers_every_feature_from_the_sandbox() -> None:
    registry = default_registry()
    lead = Lead("Ada", "Lovelace", "Acme", "acme.example")
    assert registry.features == [
        "ai_variable",
        "email_finder",
        "linkedin_enrichment",
        "phone_finder",
    ]
    for feature in registry.features:
        result = await registry.lookup(feature, lead, prompt="opener")
        assert result.provider == "sandbox"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"teleport": [{"kind": "sandbox"}]}, "unknown feature 'teleport'"),
        ({"email_finder": []}, "non-empty list"),
        ({"email_finder": ["sandbox"]}, "a provider entry is a table"),
        ({"email_finder": [{"kind": "magic"}]}, "valid kinds: sandbox, http, email"),
        ({"phone_finder": [{"kind": "email"}]}, "'email' answers only email_finder"),
        ({"phone_finder": [{"kind": "phone"}]}, "bad option"),
        ({"email_finder": [{"kind": "sandbox", "colour": "red"}]}, "bad option"),
        ({"email_finder": [{"kind": "email", "dns": {"port": "53"}}]}, "dns.port"),
    ],
)
def test_configuration_mistakes_are_reported_clearly(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ProviderError, match=message) as caught:
        build_registry(config)
    assert caught.value.code == "provider_error"


def test_the_package_exports_exactly_its_public_names() -> None:
    import creditbook.adapters.providers as providers

    exported = set(providers.__all__)
    assert len(exported) == len(providers.__all__)
    assert all(hasattr(providers, name) for name in exported)
    public = {
        n
        for n, v in vars(providers).items()
        if not n.startswith("_") and not isinstance(v, type(providers))
    }
    assert public - {"annotations"} == exported
