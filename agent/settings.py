"""Settings: every knob the agent reads, typed and checked once at start-up (pydantic-settings).

Each field is one environment variable of the same name in upper case (see `.env.example`), read from the process
environment, then from an optional `.env` file. Values are strict: `SPECULATE=ture` is an error, not `False`; numbers
have ranges. A bad value stops start-up with a `SettingsError` that names the variable.

Units are in the names: durations inside a turn are milliseconds (`*_MS`), durations of a call are seconds
(`*_SECONDS`). Secrets are `SecretStr`: they print as `**********` in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Ms = Annotated[float, Field(ge=0, le=60_000)]
PositiveMs = Annotated[float, Field(gt=0, le=60_000)]

# Variables that older releases read, and what replaced them: set, they stop start-up instead of being ignored.
RENAMED = {
    "VAD_STOP_SECS": "VAD_STOP_MS",
    "VAD_START_SECS": "VAD_START_MS",
    "END_OF_TURN_MIN_S": "END_OF_TURN_MIN_MS",
    "END_OF_TURN_MAX_S": "END_OF_TURN_MAX_MS",
    "LLM_FIRST_TOKEN_TIMEOUT_S": "LLM_FIRST_TOKEN_TIMEOUT_MS",
    "LLM_STREAM_IDLE_TIMEOUT_S": "LLM_STREAM_IDLE_TIMEOUT_MS",
    "STT_WINDOW_S": "STT_MIN_WINDOW_MS",
    "STT_WINDOW_MS": "STT_MIN_WINDOW_MS",
}
# Variables that were replaced by a different idea, and what to set instead.
REPLACED = {
    "FALLBACK_BASE_URL": "LLM_FALLBACKS (provider names, e.g. groq,local)",
    "FALLBACK_MODEL": "LLM_FALLBACKS and that provider's *_MODEL",
    "FALLBACK_API_KEY": "LLM_FALLBACKS and that provider's *_API_KEY",
}
PROVIDER_NAMES = ("cerebras", "groq", "sambanova", "openai", "local")


# Secrets the agent checks (not ones a provider issues) must be long and URL/header-safe: the page sends the access
# token in a websocket subprotocol, which allows only these characters.
MIN_SECRET_CHARS = 24
TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


class SettingsError(ValueError):
    """A setting has a value the agent cannot use. The message names the variable and never holds a secret."""


class Settings(BaseSettings):
    """Everything the agent reads from its environment; build it with `Settings.load()`."""

    model_config = SettingsConfigDict(
        env_file_encoding="utf-8", extra="ignore", frozen=True, validate_default=True, case_sensitive=False
    )

    # --- LLM providers (declared in agent/llm/providers.py) ---
    llm_provider: Literal["auto", "cerebras", "groq", "sambanova", "openai", "local"] = "auto"
    llm_fallbacks: str = ""
    cerebras_api_key: SecretStr = SecretStr("")
    cerebras_base_url: str = "https://api.cerebras.ai/v1"
    cerebras_model: str = "gpt-oss-120b"
    groq_api_key: SecretStr = SecretStr("")
    groq_base_url: str = "https://api.groq.com/openai/v1"
    groq_model: str = "openai/gpt-oss-120b"
    sambanova_api_key: SecretStr = SecretStr("")
    sambanova_base_url: str = "https://api.sambanova.ai/v1"
    sambanova_model: str = "gpt-oss-120b"
    llm_api_key: SecretStr = SecretStr("")
    llm_base_url: str = ""
    llm_model: str = "gpt-oss-120b"
    reasoning_effort: Literal["", "low", "medium", "high"] = "low"
    max_completion_tokens: int = Field(160, ge=16, le=8192)
    max_spoken_sentences: int = Field(2, ge=1, le=20)
    temperature: float = Field(0.6, ge=0, le=2)
    system_prompt: str = (
        "You are a friendly voice assistant on a phone call. Answer in one or two short spoken sentences. "
        "No lists, no markdown, no emoji."
    )
    llm_first_token_timeout_ms: PositiveMs = 3000
    llm_stream_idle_timeout_ms: PositiveMs = 5000
    hedge_after_ms: Ms = 250
    acknowledge_after_ms: Ms = 500
    acknowledgement: str = "Let me think."

    # --- Tools ---
    tools: str = "clock,booking,keypad,transfer"
    booking_db_path: str = "bookings.sqlite3"

    # --- Local models ---
    local_llm_threads: int = Field(2, ge=1, le=64)
    local_llm_ctx: int = Field(2048, ge=256, le=32768)
    local_llm_first_token_timeout_ms: PositiveMs = 8000
    tts_engine: Literal["hibari", "piper"] = "hibari"
    stt_threads: int = Field(2, ge=1, le=64)
    stt_min_window_ms: float = Field(10_000, ge=1000, le=30_000)
    stt_piece_ms: float = Field(3000, ge=1000, le=20_000)

    # --- Hosted speech (declared in agent/speech/hosted.py; the local models stay the default and the fallback) ---
    stt_provider: Literal["local", "deepgram"] = Field("local", description="Who transcribes the caller")
    deepgram_api_key: SecretStr = Field(SecretStr(""), description="Deepgram key, sent as `Authorization: Token`")
    deepgram_base_url: str = Field("wss://api.deepgram.com", description="Deepgram's websocket origin")
    deepgram_model: str = Field("nova-3-general", description="Deepgram live model")
    deepgram_language: str = Field("en", description="Deepgram recognition language")
    tts_provider: Literal["local", "cartesia", "elevenlabs"] = Field("local", description="Whose voice answers")
    cartesia_api_key: SecretStr = Field(SecretStr(""), description="Cartesia key, sent as `X-API-Key`")
    cartesia_base_url: str = Field("wss://api.cartesia.ai", description="Cartesia's websocket origin")
    cartesia_model: str = Field("sonic-3.6", description="Cartesia TTS model")
    cartesia_voice: str = Field("", description="Cartesia voice id (required with TTS_PROVIDER=cartesia)")
    cartesia_language: str = Field("en", description="Cartesia synthesis language")
    elevenlabs_api_key: SecretStr = Field(SecretStr(""), description="ElevenLabs key, sent as `xi-api-key`")
    elevenlabs_base_url: str = Field("wss://api.elevenlabs.io", description="ElevenLabs' websocket origin")
    elevenlabs_model: str = Field("eleven_flash_v2_5", description="ElevenLabs TTS model")
    elevenlabs_voice: str = Field("", description="ElevenLabs voice id (required with TTS_PROVIDER=elevenlabs)")
    elevenlabs_language: str = Field("en", description="ElevenLabs synthesis language")
    hosted_speech_timeout_ms: PositiveMs = Field(
        1500, description="No hosted transcript or audio this long when due: the call goes on with the local model"
    )

    # --- Turn taking ---
    vad_stop_ms: float = Field(64, ge=32, le=2000)
    vad_start_ms: float = Field(100, ge=32, le=2000)
    end_of_turn_min_ms: Ms = 300
    end_of_turn_mid_ms: Ms = 400
    end_of_turn_max_ms: Ms = 800
    end_of_turn_learn_pauses: bool = False
    speculate: bool = True
    first_clause_min_words: int = Field(2, ge=1, le=50)
    first_clause_max_words: int = Field(6, ge=1, le=50)

    # --- Latency budget ---
    latency_budget_ms: PositiveMs = 800
    latency_stage_budgets_ms: str = ""

    # --- Server ---
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=0, le=65535)
    max_sessions: int = Field(4, ge=0, le=1000)
    max_call_seconds: float = Field(900, gt=0, le=86_400)
    allowed_origins: str = ""
    public_url: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_api_base_url: str = ""
    twilio_allow_unsigned: bool = False
    twilio_from_number: str = ""

    # --- Telnyx (TeXML application with a bidirectional media stream; Call Control commands) ---
    telnyx_api_key: SecretStr = SecretStr("")
    telnyx_public_key: str = ""
    telnyx_account_sid: str = ""
    telnyx_application_id: str = ""
    telnyx_from_number: str = ""
    telnyx_codec: Literal["PCMU", "PCMA"] = "PCMU"
    telnyx_api_base_url: str = "https://api.telnyx.com/v2"
    telnyx_webhook_tolerance_seconds: float = Field(300, ge=10, le=3600)
    telnyx_allow_unsigned: bool = False

    # --- Plivo (answer XML with a bidirectional <Stream>) ---
    plivo_auth_id: str = ""
    plivo_auth_token: SecretStr = SecretStr("")
    plivo_from_number: str = ""
    plivo_api_base_url: str = "https://api.plivo.com"
    plivo_allow_unsigned: bool = False

    # --- Outbound calls, transfer, keypad ---
    operator_token: SecretStr = SecretStr("")
    dial_allowlist: str = ""
    dial_greeting: str = ""
    dial_timeout_seconds: float = Field(60, ge=5, le=600)
    machine_detection: bool = True
    voicemail_message: str = (
        "Hello, this is the voice assistant returning your call. Please call us back when you can. Goodbye."
    )
    transfer_number: str = ""
    transfer_message: str = "Let me put you through to a colleague. Please hold."
    dtmf_interdigit_ms: float = Field(1500, ge=100, le=10_000)
    dtmf_collect_timeout_seconds: float = Field(20, ge=1, le=120)

    # --- Capacity: worker processes, admission, drain ---
    workers: Annotated[int, Field(ge=0, le=256)] | Literal["auto"] = "auto"
    admission: Literal["load", "count"] = "load"
    admission_max_cpu_percent: float = Field(90, ge=10, le=100)
    admission_window_seconds: float = Field(120, ge=5, le=3600)
    admission_min_turns: int = Field(3, ge=1, le=100)
    phone_reservation_seconds: float = Field(20, ge=1, le=300)
    drain_grace_seconds: float = Field(900, ge=0, le=86_400)
    instance_name: str = Field("", pattern=r"^[A-Za-z0-9_.-]{0,63}$")

    # --- Security (see README "Security") ---
    stream_token_secret: SecretStr = SecretStr("")
    stream_token_ttl_seconds: float = Field(30, ge=1, le=600)
    access_token: SecretStr = SecretStr("")
    session_idle_timeout_seconds: float = Field(30, ge=1, le=3600)

    @model_validator(mode="after")
    def _waits_in_order(self) -> Settings:
        if not self.end_of_turn_min_ms <= self.end_of_turn_mid_ms <= self.end_of_turn_max_ms:
            raise ValueError("END_OF_TURN_MIN_MS <= END_OF_TURN_MID_MS <= END_OF_TURN_MAX_MS is required")
        return self

    @model_validator(mode="after")
    def _transfer_allowed(self) -> Settings:
        if self.transfer_number and not number_allowed(self.transfer_number, self.dial_prefixes):
            raise ValueError("TRANSFER_NUMBER must match a prefix of DIAL_ALLOWLIST (transfers go through it too)")
        return self

    @field_validator(
        "public_url",
        "cerebras_base_url",
        "groq_base_url",
        "sambanova_base_url",
        "llm_base_url",
        "twilio_api_base_url",
        "telnyx_api_base_url",
        "plivo_api_base_url",
    )
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("deepgram_base_url", "cartesia_base_url", "elevenlabs_base_url")
    @classmethod
    def _websocket_origin(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")) or value.count("/") > 2:
            raise ValueError("must be a ws:// or wss:// origin without a path, e.g. wss://api.example.com")
        return value

    @field_validator("deepgram_language", "cartesia_language", "elevenlabs_language")
    @classmethod
    def _language(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z]{2,3}(-[A-Z][A-Za-z]{1,3})?", value):
            raise ValueError("must be a language code such as en, en-US, de or fr")
        return value

    @field_validator("cartesia_voice", "elevenlabs_voice")
    @classmethod
    def _voice_id(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{0,64}", value):
            raise ValueError("must be the provider's voice id (letters, digits, - and _)")
        return value

    @field_validator("llm_fallbacks")
    @classmethod
    def _provider_list(cls, value: str) -> str:
        names = _names(value)
        unknown = [n for n in names if n not in PROVIDER_NAMES]
        if unknown:
            raise ValueError(f"unknown provider {unknown[0]!r} (known: {', '.join(PROVIDER_NAMES)})")
        if len(set(names)) != len(names):
            raise ValueError("a provider is listed twice")
        return value

    @field_validator("tools")
    @classmethod
    def _tool_list(cls, value: str) -> str:
        unknown = [n for n in _names(value) if n not in TOOL_NAMES]
        if unknown:
            raise ValueError(f"unknown tool {unknown[0]!r} (known: {', '.join(TOOL_NAMES)})")
        return value

    @field_validator("twilio_account_sid")
    @classmethod
    def _account_sid(cls, value: str) -> str:
        if value and not re.fullmatch(r"AC[0-9a-f]{32}", value):
            raise ValueError("must be a Twilio account SID: AC followed by 32 lowercase hex digits")
        return value

    @field_validator("twilio_from_number", "telnyx_from_number", "plivo_from_number", "transfer_number")
    @classmethod
    def _e164(cls, value: str) -> str:
        if value and not E164.fullmatch(value):
            raise ValueError("must be a phone number in E.164 form: + then 8 to 15 digits, e.g. +15551234567")
        return value

    @field_validator("dial_allowlist")
    @classmethod
    def _prefixes(cls, value: str) -> str:
        bad = [p for p in _names(value) if not re.fullmatch(r"\+[0-9]{1,15}", p)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an E.164 prefix (+ then digits, e.g. +1555 or +4420)")
        return value

    @field_validator("telnyx_public_key")
    @classmethod
    def _ed25519_key(cls, value: str) -> str:
        if value:
            try:
                raw = base64.b64decode(value.strip(), validate=True)
            except ValueError:
                raw = b""
            if len(raw) != 32:
                raise ValueError("must be the base64 ed25519 public key from the Telnyx portal (32 bytes)")
        return value.strip()

    @field_validator("plivo_auth_id")
    @classmethod
    def _plivo_auth_id(cls, value: str) -> str:
        if value and not re.fullmatch(r"(MA|SA)[A-Z0-9]{18}", value):
            raise ValueError("must be a Plivo auth ID: MA or SA followed by 18 capital letters or digits")
        return value

    @field_validator("access_token", "stream_token_secret", "operator_token")
    @classmethod
    def _strong_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret and (len(secret) < MIN_SECRET_CHARS or not set(secret) <= TOKEN_CHARS):
            raise ValueError(
                f"must be at least {MIN_SECRET_CHARS} characters of A-Z a-z 0-9 - _ . ~ "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
        """Settings from `overrides`, then the process environment, then `env_file` (if it exists).

        Raises `SettingsError` naming the variable for any value the agent cannot use.
        """
        path = Path(env_file) if env_file else None
        path = path if path and path.is_file() else None
        _refuse_renamed(path)
        try:
            return cls(_env_file=path, **overrides)
        except ValidationError as e:
            raise SettingsError(_describe(e)) from None

    def first_token_timeout_s(self, provider: str) -> float:
        """How long `provider` gets for its first token (the local model shares the CPU with speech)."""
        ms = self.local_llm_first_token_timeout_ms if provider == "local" else self.llm_first_token_timeout_ms
        return ms / 1000

    @property
    def worker_count(self) -> int:
        """Worker processes to run calls in: WORKERS, or with `auto` one per core (at least two); 0 = in-process."""
        return max(2, os.cpu_count() or 1) if self.workers == "auto" else self.workers

    @property
    def instance(self) -> str:
        """This server's name behind a load balancer (INSTANCE_NAME, else the host name)."""
        return self.instance_name or socket.gethostname()

    @property
    def origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def fallbacks(self) -> list[str]:
        """LLM_FALLBACKS as a list of provider names, in order."""
        return _names(self.llm_fallbacks)

    @property
    def tool_names(self) -> list[str]:
        return _names(self.tools)

    @property
    def dial_prefixes(self) -> list[str]:
        """DIAL_ALLOWLIST as a list of E.164 prefixes (empty: no number may be dialled)."""
        return _names(self.dial_allowlist)


TOOL_NAMES = ("clock", "booking", "keypad", "transfer")
E164 = re.compile(r"\+[1-9][0-9]{7,14}")


def number_allowed(number: str, prefixes: list[str]) -> bool:
    """Whether `number` is an E.164 number that starts with one of `prefixes` (toll-fraud guard for every dial)."""
    return bool(E164.fullmatch(number)) and any(number.startswith(p) for p in prefixes)


def _names(value: str) -> list[str]:
    return [n.strip().lower() for n in value.split(",") if n.strip()]


def _refuse_renamed(env_file: Path | None) -> None:
    names = set(os.environ) | (set(dotenv_values(env_file)) if env_file else set())
    names = {n.upper() for n in names}
    for old, new in RENAMED.items():
        if old in names:
            raise SettingsError(f"{old} is no longer read: set {new} instead (in milliseconds)")
    for old, new in REPLACED.items():
        if old in names:
            raise SettingsError(f"{old} is no longer read: set {new} instead")


def _describe(error: ValidationError) -> str:
    """One line per bad variable, naming it; the offending value is shown unless the field is a secret."""
    lines = []
    for item in error.errors():
        name = str(item["loc"][0]).upper() if item["loc"] else "?"
        secret = Settings.model_fields.get(name.lower()) and Settings.model_fields[name.lower()].annotation is SecretStr
        value = "" if secret or item["type"] == "missing" else f"={item.get('input')!r}"
        lines.append(f"{name}{value}: {item['msg']}")
    return "; ".join(lines)
