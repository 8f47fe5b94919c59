"""AI variables: a prompt template rendered with the lead, answered offline or by an LLM.

Prompts use Jinja2 placeholders (``Write one line for {{ first_name }} at
{{ company_name }}``) rendered in a sandboxed environment, so an operator's
template cannot reach Python internals. The lead's set fields are the
variables (``first_name``, ``last_name``, ``company_name``, ``company_domain``,
``linkedin_url``, ``email``, ``phone``).

- ``TemplateAiProvider`` (offline) renders strictly: ``succeeded`` with the
  text, ``failed`` when a placeholder has no value or the template is broken.
- ``OpenAIChatProvider`` renders leniently (a missing value becomes ``""``),
  sends ``POST {base_url}/chat/completions`` (OpenAI-compatible: model,
  ``Authorization: Bearer <key>``, a system message and the rendered prompt as
  the user message) and answers ``succeeded`` with the first choice's text.
  Any error (HTTP error after retries, a bad answer, an empty text) is
  ``failed`` with ``data["error"]``: a generation that did not happen is not
  billed, and the waterfall moves on to the next provider.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

import httpx
from jinja2 import StrictUndefined, Template, TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment

from creditbook.adapters.providers.base import AI_VARIABLE, Lead, ProviderError, Result
from creditbook.adapters.providers.http_provider import HttpNotFound, Sleep, request_json

_STRICT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_LENIENT = SandboxedEnvironment(undefined=Undefined, autoescape=False)

DEFAULT_SYSTEM_PROMPT = (
    "You write short, personal sentences for sales emails. Answer with the text only."
)


@lru_cache(maxsize=256)
def _compile(source: str, strict: bool) -> Template:
    return (_STRICT if strict else _LENIENT).from_string(source)


def render_prompt(template: str, lead: Lead, *, strict: bool = True) -> str:
    """The template rendered with the lead's fields; raises ``jinja2.TemplateError``
    when strict and a placeholder has no value, or when the template is broken."""
    return _compile(template, strict).render(lead.to_dict()).strip()


class TemplateAiProvider:
    """ai_variable offline: the rendered prompt is the generated text."""

    def __init__(self, *, name: str = "template") -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def feature(self) -> str:
        return AI_VARIABLE

    async def lookup(self, lead: Lead, *, prompt: str | None = None) -> Result:
        if not prompt:
            return Result(AI_VARIABLE, "failed", None, {"error": "no prompt"}, self._name)
        try:
            text = render_prompt(prompt, lead, strict=True)
        except TemplateError as exc:
            return Result(AI_VARIABLE, "failed", None, {"error": str(exc)}, self._name)
        if not text:
            return Result(AI_VARIABLE, "failed", None, {"error": "empty text"}, self._name)
        return Result(AI_VARIABLE, "succeeded", text, {}, self._name)


class OpenAIChatProvider:
    """ai_variable through an OpenAI-compatible chat completions endpoint."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_tokens: int = 200,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.5,
        name: str = "openai",
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ProviderError(f"ai provider {name!r}: base_url must be http(s), got {base_url!r}")
        if not api_key or not model:
            raise ProviderError(f"ai provider {name!r} needs an api_key and a model")
        self._name = name
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.system_prompt = system_prompt
        self.max_tokens = max_tokens
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout, transport=transport
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def feature(self) -> str:
        return AI_VARIABLE

    def _failed(self, error: str) -> Result:
        return Result(AI_VARIABLE, "failed", None, {"error": error}, self._name)

    def request_body(self, prompt: str, lead: Lead) -> dict[str, Any]:
        """The chat completions request for ``prompt`` rendered with ``lead``."""
        return {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [
                {"role": "system", "content": self.system_prompt},
                {"role": "user", "content": render_prompt(prompt, lead, strict=False)},
            ],
        }

    async def lookup(self, lead: Lead, *, prompt: str | None = None) -> Result:
        if not prompt:
            return self._failed("no prompt")
        try:
            body = self.request_body(prompt, lead)
        except TemplateError as exc:
            return self._failed(f"template: {exc}")
        try:
            document, _ = await request_json(
                self._client,
                "POST",
                self.url,
                provider=self._name,
                retries=self.retries,
                backoff=self.backoff,
                sleep=self._sleep,
                json=body,
            )
        except HttpNotFound:
            return self._failed(f"HTTP 404 from {self.url}")
        except ProviderError as exc:
            return self._failed(exc.message)
        content: Any = None
        if isinstance(document, dict):
            choices = document.get("choices")
            if isinstance(choices, list) and choices and isinstance(choices[0], dict):
                message = choices[0].get("message")
                if isinstance(message, dict):
                    content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            return self._failed("the model answered no text")
        data = {"model": str(document.get("model", self.model))}
        return Result(AI_VARIABLE, "succeeded", content.strip(), data, self._name)

    async def aclose(self) -> None:
        await self._client.aclose()
