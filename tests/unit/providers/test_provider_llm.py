"""AI variables: sandboxed prompt templates, offline rendering, the OpenAI-compatible client."""

from __future__ import annotations

import json

import httpx
import pytest
from jinja2 import TemplateError

from creditbook.adapters.providers import (
    Lead,
    OpenAIChatProvider,
    ProviderError,
    TemplateAiProvider,
    render_prompt,
)

pytestmark = pytest.mark.anyio

ADA = Lead(first_name="Ada", company_name="Acme")


def test_prompts_render_the_lead_fields() -> None:
    assert render_prompt("Hi {{ first_name }} from {{company_name}}", ADA) == "Hi Ada from Acme"


def test_strict_rendering_refuses_a_missing_field_and_lenient_rendering_leaves_it_blank() -> None:
    with pytest.raises(TemplateError):
        render_prompt("Hi {{ last_name }}", ADA)
    assert render_prompt("Hi {{ last_name }}!", ADA, strict=False) == "Hi !"


def test_templates_cannot_reach_python_internals() -> None:
    with pytest.raises(TemplateError):
        render_prompt("{{ first_name.__class__.__mro__[1].__subclasses__() }}", ADA)


async def test_the_template_provider_succeeds_with_the_rendered_text() -> None:
    provider = TemplateAiProvider()
    ok = await provider.lookup(ADA, prompt="Congrats on {{ company_name }}, {{ first_name }}!")
    assert (ok.outcome, ok.value, ok.provider) == (
        "succeeded",
        "Congrats on Acme, Ada!",
        "template",
    )
    missing = await provider.lookup(ADA, prompt="Hello {{ phone }}")
    assert (missing.outcome, missing.value) == ("failed", None)
    assert "phone" in missing.data["error"]
    broken = await provider.lookup(ADA, prompt="Hello {{ first_name")
    assert broken.outcome == "failed"


async def test_the_openai_provider_retries_server_errors_and_returns_the_choice_text() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:
            return httpx.Response(503)
        return httpx.Response(200, json={"choices": [{"message": {"content": "Hello Ada"}}]})

    async def no_wait(seconds: float) -> None:
        pass

    provider = OpenAIChatProvider(
        base_url="https://llm.example/v1",
        api_key="sk",
        model="small",
        transport=httpx.MockTransport(handler),
        sleep=no_wait,
    )
    result = await provider.lookup(ADA, prompt="Greet {{ first_name }} ({{ last_name }})")
    assert (result.outcome, result.value, result.data["model"]) == (
        "succeeded",
        "Hello Ada",
        "small",
    )
    assert len(bodies) == 2
    assert bodies[0]["messages"][1] == {"role": "user", "content": "Greet Ada ()"}  # type: ignore[index]


async def test_the_openai_provider_fails_when_the_answer_has_no_choices() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"choices": []}))
    provider = OpenAIChatProvider(
        base_url="https://llm.example", api_key="k", model="m", transport=transport
    )
    result = await provider.lookup(ADA, prompt="hi")
    assert (result.outcome, result.data["error"]) == ("failed", "the model answered no text")


def test_the_openai_provider_needs_a_key_and_a_model() -> None:
    with pytest.raises(ProviderError, match="needs an api_key and a model"):
        OpenAIChatProvider(base_url="https://llm.example", api_key="", model="m")
