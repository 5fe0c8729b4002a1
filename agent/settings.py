"""Settings: every knob the agent reads, loaded once from the environment and an optional `.env`.

Each field maps to one environment variable of the same name in upper case (see `.env.example`).
Secrets are wrapped in `Secret` so they never show up in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dotenv import dotenv_values


class Secret:
    """A string that refuses to print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


class SettingsError(ValueError):
    """A setting has a value the agent cannot use."""


@dataclass(frozen=True)
class Settings:
    # LLM provider. "auto" = Cerebras when CEREBRAS_API_KEY is set, else the local model.
    llm_provider: str = "auto"
    cerebras_api_key: Secret = field(default_factory=lambda: Secret(""))
    cerebras_base_url: str = "https://api.cerebras.ai/v1"
    cerebras_model: str = "gpt-oss-120b"
    reasoning_effort: str = "low"
    max_completion_tokens: int = 160
    max_spoken_sentences: int = 2
    temperature: float = 0.6
    system_prompt: str = (
        "You are a friendly voice assistant on a phone call. Answer in one or two short spoken sentences. "
        "No lists, no markdown, no emoji."
    )
    llm_first_token_timeout_s: float = 3.0
    llm_stream_idle_timeout_s: float = 5.0
    # Hedging: a second OpenAI-compatible provider ("local" = the embedded model) raced when the first is slow.
    fallback_base_url: str = ""
    fallback_model: str = ""
    fallback_api_key: Secret = field(default_factory=lambda: Secret(""))
    hedge_after_ms: float = 250.0
    acknowledge_after_ms: float = 620.0
    acknowledgement: str = "Let me think."
    # Local models.
    local_llm_threads: int = 2
    local_llm_ctx: int = 2048
    tts_engine: str = "hibari"
    stt_threads: int = 2
    stt_window_s: float = 15.0
    # Turn taking.
    vad_stop_secs: float = 0.12
    vad_start_secs: float = 0.1
    end_of_turn_min_s: float = 0.2
    end_of_turn_max_s: float = 0.6
    speculate: bool = True
    first_clause_min_words: int = 2
    first_clause_max_words: int = 6
    # Latency budget.
    latency_budget_ms: int = 800
    latency_stage_budgets_ms: str = ""
    # Server.
    host: str = "127.0.0.1"
    port: int = 7860
    max_sessions: int = 4
    max_call_seconds: float = 900.0
    allowed_origins: str = ""
    public_url: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: Secret = field(default_factory=lambda: Secret(""))
    twilio_api_base_url: str = ""

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
        """Read settings from `env_file` (if present), then the process environment, then `overrides`."""
        raw: dict[str, str | None] = {}
        if env_file and Path(env_file).is_file():
            raw.update(dotenv_values(env_file))
        raw.update(os.environ)
        values: dict[str, Any] = {}
        for f in fields(cls):
            text = raw.get(f.name.upper())
            if text is None or text == "":
                continue
            values[f.name] = _convert(f.name, f.type, text)
        values.update(overrides)
        return cls(**values)

    @property
    def origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()]


def _convert(name: str, type_name: Any, text: str) -> Any:
    kind = str(type_name)
    try:
        if kind == "Secret":
            return Secret(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            return text.strip().lower() in {"1", "true", "yes", "on"}
    except ValueError as e:
        raise SettingsError(f"{name.upper()}={text!r} is not a valid {kind}") from e
    return text
