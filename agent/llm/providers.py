"""LLM providers as declarations: every platform of the inference race behind one `LLM_PROVIDER` switch.

A `Platform` is data, not a subclass: where the platform lives, which variables configure it, the request
parameters it rejects, whether it takes `tools`, where its usage and server timings sit in the stream, and which
response headers carry its rate limits. The one `ChatCompletionClient` reads these declarations; adding a platform
means adding one `Platform` here.

A `Provider` is a platform resolved against the settings (URL, model, key, answer settings) for one process.
Wire formats, from each platform's documentation:
- Cerebras: flat error bodies `{"message", "type", "param", "code"}`, a `time_info` object in the last chunk, and
  `x-ratelimit-{limit,remaining,reset}-{requests-day,tokens-minute}` headers (reset in seconds).
- Groq: OpenAI error bodies, `x_groq.usage` with queue/prompt/completion times in the last chunk, and
  `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers (reset as a duration such as `7.66s`), plus
  `retry-after` on a 429.
- SambaNova: OpenAI error bodies with a top-level `request_id`; usage carrying `time_to_first_token` and
  `total_latency`; `x-ratelimit-{limit,remaining,reset}-requests[-day]` headers.
- openai: any OpenAI-compatible server (vLLM, NVIDIA NIM, llama.cpp); `local` is the embedded llama.cpp server,
  which has no tool calling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import SecretStr

from agent.settings import Settings, SettingsError

KeyPath = tuple[str, ...]  # keys into a stream event, e.g. ("x_groq", "usage")


@dataclass(frozen=True)
class RateLimitHeaders:
    """Names of the response headers that carry a platform's rate-limit state (empty: not reported)."""

    remaining_requests: str = ""
    remaining_tokens: str = ""
    reset_requests: str = ""
    reset_tokens: str = ""


@dataclass(frozen=True)
class Platform:
    """One inference platform's declaration: configuration, quirks and where its signals are."""

    name: str
    label: str
    env_prefix: str  # {PREFIX}_API_KEY, {PREFIX}_BASE_URL, {PREFIX}_MODEL; "" for the embedded server
    rejected_params: frozenset[str] = frozenset()
    supports_tools: bool = True
    token_limit_param: str = "max_completion_tokens"
    usage_paths: tuple[KeyPath, ...] = (("usage",),)
    timing_paths: dict[str, KeyPath] = field(default_factory=dict)  # seconds: queue, prompt, completion, ttft, total
    rate_limit_headers: RateLimitHeaders = RateLimitHeaders()
    published_tokens_per_s: float | None = None  # gpt-oss-120b output speed in the inference race

    @property
    def key_env(self) -> str:
        return f"{self.env_prefix}_API_KEY"

    def api_key(self, settings: Settings) -> SecretStr:
        value = getattr(settings, f"{self.env_prefix.lower()}_api_key", None)
        return value if isinstance(value, SecretStr) else SecretStr("")

    def setting(self, settings: Settings, suffix: str) -> str:
        """{PREFIX}_BASE_URL or {PREFIX}_MODEL from the settings."""
        return str(getattr(settings, f"{self.env_prefix}_{suffix}".lower()))


OPENAI_RATE_LIMIT_HEADERS = RateLimitHeaders(
    remaining_requests="x-ratelimit-remaining-requests",
    remaining_tokens="x-ratelimit-remaining-tokens",
    reset_requests="x-ratelimit-reset-requests",
    reset_tokens="x-ratelimit-reset-tokens",
)

CEREBRAS = Platform(
    name="cerebras",
    label="Cerebras",
    env_prefix="CEREBRAS",
    rejected_params=frozenset(
        {"frequency_penalty", "presence_penalty", "logit_bias", "parallel_tool_calls", "service_tier"}
    ),
    timing_paths={
        "queue_s": ("time_info", "queue_time"),
        "prompt_s": ("time_info", "prompt_time"),
        "completion_s": ("time_info", "completion_time"),
        "total_s": ("time_info", "total_time"),
    },
    rate_limit_headers=RateLimitHeaders(
        remaining_requests="x-ratelimit-remaining-requests-day",
        remaining_tokens="x-ratelimit-remaining-tokens-minute",
        reset_requests="x-ratelimit-reset-requests-day",
        reset_tokens="x-ratelimit-reset-tokens-minute",
    ),
    published_tokens_per_s=3000.0,
)
GROQ = Platform(
    name="groq",
    label="Groq",
    env_prefix="GROQ",
    rejected_params=frozenset({"logprobs", "logit_bias", "top_logprobs"}),
    usage_paths=(("usage",), ("x_groq", "usage")),
    timing_paths={
        "queue_s": ("x_groq", "usage", "queue_time"),
        "prompt_s": ("x_groq", "usage", "prompt_time"),
        "completion_s": ("x_groq", "usage", "completion_time"),
        "total_s": ("x_groq", "usage", "total_time"),
    },
    rate_limit_headers=OPENAI_RATE_LIMIT_HEADERS,
    published_tokens_per_s=476.0,
)
SAMBANOVA = Platform(
    name="sambanova",
    label="SambaNova",
    env_prefix="SAMBANOVA",
    timing_paths={"ttft_s": ("usage", "time_to_first_token"), "total_s": ("usage", "total_latency")},
    rate_limit_headers=RateLimitHeaders(
        remaining_requests="x-ratelimit-remaining-requests", reset_requests="x-ratelimit-reset-requests"
    ),
    published_tokens_per_s=600.0,
)
OPENAI_COMPATIBLE = Platform(
    name="openai",
    label="OpenAI-compatible (vLLM, NIM, llama.cpp)",
    env_prefix="LLM",
    rate_limit_headers=OPENAI_RATE_LIMIT_HEADERS,
    published_tokens_per_s=280.0,  # an NVIDIA H100 server
)
LOCAL = Platform(
    name="local",
    label="embedded SmolLM2-135M (llama.cpp)",
    env_prefix="",
    supports_tools=False,  # llama-cpp-python's server without a function-calling chat format
    token_limit_param="max_tokens",  # llama.cpp's server only honours max_tokens
)

PLATFORMS: dict[str, Platform] = {p.name: p for p in (CEREBRAS, GROQ, SAMBANOVA, OPENAI_COMPATIBLE, LOCAL)}
AUTO_ORDER = ("cerebras", "groq", "sambanova", "openai")  # LLM_PROVIDER=auto: the first with a key, else local
LOCAL_MODEL_NAME = "smollm2-135m-instruct"


@dataclass(frozen=True)
class Provider:
    """A platform resolved for this process: where to send requests, with which model, key and answer settings."""

    name: str
    base_url: str
    model: str
    api_key: SecretStr
    max_completion_tokens: int = 160
    temperature: float = 0.6
    reasoning_effort: str | None = None
    platform: Platform = OPENAI_COMPATIBLE

    @property
    def token_limit_param(self) -> str:
        return self.platform.token_limit_param

    @property
    def supports_tools(self) -> bool:
        return self.platform.supports_tools

    def describe(self) -> str:
        """Name, model and host for logs and the page: never the key."""
        return f"{self.name} {self.model} at {self.base_url}"


def primary_name(settings: Settings) -> str:
    """LLM_PROVIDER resolved: auto picks the first platform with a key, else the embedded model."""
    if settings.llm_provider != "auto":
        return settings.llm_provider
    for name in AUTO_ORDER:
        if PLATFORMS[name].api_key(settings).get_secret_value():
            return name
    return "local"


def chain_names(settings: Settings) -> list[str]:
    """The primary provider, then LLM_FALLBACKS in order (the primary is not repeated)."""
    primary = primary_name(settings)
    return [primary, *(n for n in settings.fallbacks if n != primary)]


def wants_local_llm(settings: Settings) -> bool:
    return "local" in chain_names(settings)


def provider_for(settings: Settings, name: str, local_base_url: str = "") -> Provider:
    """Resolve one platform against the settings. Raises SettingsError naming the missing variable."""
    platform = PLATFORMS[name]
    if name == "local":
        return Provider(
            name="local",
            base_url=local_base_url,
            model=LOCAL_MODEL_NAME,
            api_key=SecretStr(""),
            max_completion_tokens=min(settings.max_completion_tokens, 80),
            temperature=settings.temperature,
            platform=platform,
        )
    key = platform.api_key(settings)
    base_url = platform.setting(settings, "BASE_URL")
    model = platform.setting(settings, "MODEL")
    if name == "openai":
        if not base_url:
            raise SettingsError("the openai provider needs LLM_BASE_URL (any OpenAI-compatible server)")
    elif not key.get_secret_value():
        raise SettingsError(f"the {name} provider needs {platform.key_env}")
    if not model:
        raise SettingsError(f"the {name} provider needs {platform.env_prefix}_MODEL")
    return Provider(
        name=name,
        base_url=base_url,
        model=model,
        api_key=key,
        max_completion_tokens=settings.max_completion_tokens,
        temperature=settings.temperature,
        reasoning_effort=settings.reasoning_effort or None,
        platform=platform,
    )
