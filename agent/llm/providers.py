"""LLM providers: where the chat completions come from, chosen from the settings.

Cerebras is first; any OpenAI-compatible server (Groq, SambaNova, a self-hosted GPU box, or the embedded
llama.cpp server) is reached through the same `Provider` shape and the same client code.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from agent.settings import Settings, SettingsError


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str
    model: str
    api_key: SecretStr
    max_completion_tokens: int = 160
    temperature: float = 0.6
    reasoning_effort: str | None = None
    # Cerebras (and OpenAI) take `max_completion_tokens`; llama.cpp's server only honours `max_tokens`.
    token_limit_param: str = "max_completion_tokens"

    def describe(self) -> str:
        """Name, model and host for logs and the page: never the key."""
        return f"{self.name} {self.model} at {self.base_url}"


LOCAL_MODEL_NAME = "smollm2-135m-instruct"


def wants_local_llm(settings: Settings) -> bool:
    choice = settings.llm_provider
    return choice == "local" or (choice == "auto" and not settings.cerebras_api_key.get_secret_value())


def _remote(settings: Settings, name: str, base_url: str, model: str, api_key: SecretStr) -> Provider:
    """An OpenAI-compatible provider on the network, with the answer settings shared by all of them."""
    return Provider(
        name=name,
        base_url=base_url,
        model=model,
        api_key=api_key,
        max_completion_tokens=settings.max_completion_tokens,
        temperature=settings.temperature,
        reasoning_effort=settings.reasoning_effort or None,
    )


def cerebras_provider(settings: Settings) -> Provider:
    if not settings.cerebras_api_key.get_secret_value():
        raise SettingsError("LLM_PROVIDER=cerebras needs CEREBRAS_API_KEY")
    return _remote(settings, "cerebras", settings.cerebras_base_url, settings.cerebras_model, settings.cerebras_api_key)


def local_provider(settings: Settings, base_url: str) -> Provider:
    return Provider(
        name="local",
        base_url=base_url,
        model=LOCAL_MODEL_NAME,
        api_key=SecretStr(""),
        max_completion_tokens=min(settings.max_completion_tokens, 80),
        temperature=settings.temperature,
        token_limit_param="max_tokens",
    )


def fallback_provider(settings: Settings, local_base_url: str) -> Provider | None:
    """The provider raced against the first one when it is slow or fails: FALLBACK_BASE_URL, or "local"."""
    if not settings.fallback_base_url:
        return None
    if settings.fallback_base_url == "local":
        return local_provider(settings, local_base_url)
    if not settings.fallback_model:
        raise SettingsError("FALLBACK_BASE_URL needs FALLBACK_MODEL")
    return _remote(settings, "fallback", settings.fallback_base_url, settings.fallback_model, settings.fallback_api_key)
