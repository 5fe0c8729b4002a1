"""The documented wire formats the provider simulator speaks: Cerebras, Groq, SambaNova and a generic OpenAI server.

Taken from each provider's documentation and the error bodies they are seen to send; kept apart from the client's
own declarations (`agent/llm/providers.py`) on purpose, so that the conformance tests check one against the other:
- error bodies: Cerebras a flat `{"message", "type", "param", "code"}`; Groq and OpenAI `{"error": {...}}`;
  SambaNova `{"error": {...}, "request_id"}`;
- status and code per failure: Cerebras answers overload with 429 `queue_exceeded` ("We're experiencing high
  traffic right now!") and a spent token bucket with 429 `token_quota_exceeded`; SambaNova 429 `queue_full` /
  `insufficient_quota`; Groq 429 `rate_limit_exceeded` with `retry-after`; 503 when a platform is unavailable;
- rate-limit headers on every response, each platform with its own names and reset notation;
- where usage and server timings go in the stream: Cerebras `usage` + `time_info`, Groq `x_groq` (its id in the
  first chunk, its usage with queue/prompt/completion times in the last), SambaNova `usage.time_to_first_token`,
  OpenAI a usage-only chunk when `stream_options.include_usage` is set;
- the request parameters each platform rejects with a 400.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

# (status, message, type, code, param) per scenario
ErrorSpec = tuple[int, str, str, str, str]

OPENAI_PARAMS = frozenset({
    "model", "messages", "stream", "max_completion_tokens", "max_tokens", "temperature", "top_p", "seed", "stop",
    "reasoning_effort", "tools", "tool_choice", "parallel_tool_calls", "response_format", "stream_options", "user",
    "logprobs", "top_logprobs", "service_tier", "frequency_penalty", "presence_penalty", "logit_bias", "n",
})  # fmt: skip


@dataclass(frozen=True)
class WireFormat:
    """One provider's documented wire format, as the simulator speaks it."""

    name: str
    models: tuple[str, ...]
    errors: dict[str, ErrorSpec]
    rejected_params: frozenset[str] = frozenset()
    error_shape: str = "openai"  # "flat" (Cerebras), "openai", "openai+request_id" (SambaNova)
    retry_after_on_429: bool = False
    usage_where: str = "usage"  # "usage" (+ time_info for Cerebras), "x_groq", "usage_chunk"
    extra: dict[str, Any] = field(default_factory=dict)

    def error_body(self, spec: ErrorSpec) -> dict[str, Any]:
        _, message, kind, code, param = spec
        if self.error_shape == "flat":
            return {"message": message, "type": kind, "param": param, "code": code}
        inner = {"message": message, "type": kind, "param": param or None, "code": code or None}
        if self.error_shape == "openai+request_id":
            return {"error": inner, "request_id": str(uuid.uuid4())}
        return {"error": inner}

    def rejected_param_error(self, param: str) -> ErrorSpec:
        if self.name == "cerebras":
            return (400, f"Unrecognized request argument supplied: {param}", "invalid_request_error",
                    "wrong_api_format", param)  # fmt: skip
        return (400, f"'{param}' is not supported", "invalid_request_error", "unsupported_parameter", param)

    def model_not_found(self, model: str) -> ErrorSpec:
        message = f"Model {model} does not exist or you do not have access to it."
        return (404, message, "not_found_error" if self.name == "cerebras" else "invalid_request_error",
                "model_not_found", "model")  # fmt: skip


CEREBRAS_WIRE = WireFormat(
    name="cerebras",
    models=("gpt-oss-120b", "llama3.1-8b", "qwen-3-32b"),
    rejected_params=frozenset(
        {"frequency_penalty", "presence_penalty", "logit_bias", "parallel_tool_calls", "service_tier"}
    ),
    error_shape="flat",
    errors={
        "401": (401, "Wrong API Key", "invalid_request_error", "wrong_api_key", ""),
        "429": (429, "Requests per minute limit exceeded - too many requests sent.", "too_many_requests_error",
                "request_quota_exceeded", "quota"),
        "quota": (429, "Tokens per minute limit exceeded - too many tokens processed.", "too_many_requests_error",
                  "token_quota_exceeded", "quota"),
        "overloaded": (429, "We're experiencing high traffic right now! Please try again soon.",
                       "too_many_requests_error", "queue_exceeded", "queue"),
        "503": (503, "Service temporarily unavailable. Please try again soon.", "service_unavailable_error",
                "service_unavailable", ""),
        "stream_error": (500, "Internal server error during generation", "server_error", "internal", ""),
    },
)  # fmt: skip
GROQ_WIRE = WireFormat(
    name="groq",
    models=("openai/gpt-oss-120b", "openai/gpt-oss-20b", "llama-3.1-8b-instant"),
    rejected_params=frozenset({"logprobs", "logit_bias", "top_logprobs"}),
    retry_after_on_429=True,
    usage_where="x_groq",
    errors={
        "401": (401, "Invalid API Key", "invalid_request_error", "invalid_api_key", ""),
        "429": (429, "Rate limit reached for model on requests per minute (RPM): Limit 30, Used 30, Requested 1. "
                "Please try again in 2s.", "requests", "rate_limit_exceeded", ""),
        "quota": (429, "Rate limit reached for model on tokens per minute (TPM): Limit 8000, Used 8000, "
                  "Requested 240. Please try again in {reset}s.", "tokens", "rate_limit_exceeded", ""),
        "overloaded": (498, "Flex tier capacity exceeded. This is a temporary condition, please try again.",
                       "capacity_exceeded", "capacity_exceeded", ""),
        "503": (503, "Service Unavailable", "internal_server_error", "service_unavailable", ""),
        "stream_error": (500, "Internal Server Error", "internal_server_error", "internal_server_error", ""),
    },
)  # fmt: skip
SAMBANOVA_WIRE = WireFormat(
    name="sambanova",
    models=("gpt-oss-120b", "Meta-Llama-3.3-70B-Instruct", "DeepSeek-V3.1"),
    error_shape="openai+request_id",
    usage_where="usage_chunk",
    errors={
        "401": (401, "Invalid or expired API key", "authentication_error", "invalid_authentication", ""),
        "429": (429, "Rate limit exceeded", "rate_limit_error", "insufficient_quota", ""),
        "quota": (429, "Rate limit exceeded", "rate_limit_error", "insufficient_quota", ""),
        "overloaded": (429, "Too many requests currently in flight", "rate_limit_error", "queue_full", ""),
        "503": (503, "Model temporarily unavailable due to maintenance", "server_error", "maintenance", ""),
        "stream_error": (500, "An unexpected server-side error occurred", "server_error", "internal_server_error",
                         ""),
    },
)  # fmt: skip
OPENAI_WIRE = WireFormat(
    name="openai",
    models=("gpt-oss-120b",),
    usage_where="usage_chunk",
    errors={
        "401": (401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key", ""),
        "429": (429, "Rate limit reached for requests", "requests", "rate_limit_exceeded", ""),
        "quota": (429, "You exceeded your current quota, please check your plan and billing details.",
                  "insufficient_quota", "insufficient_quota", ""),
        "overloaded": (503, "The engine is currently overloaded, please try again later", "server_error", "", ""),
        "503": (503, "The server is not ready", "server_error", "", ""),
        "stream_error": (500, "The server had an error while processing your request.", "server_error", "", ""),
    },
)  # fmt: skip
WIRE_FORMATS: dict[str, WireFormat] = {w.name: w for w in (CEREBRAS_WIRE, GROQ_WIRE, SAMBANOVA_WIRE, OPENAI_WIRE)}


def rate_limit_headers(wire: str, *, remaining_requests: int, remaining_tokens: int, reset_requests_s: float,
                       reset_tokens_s: float, limit_requests: int, limit_tokens: int) -> dict[str, str]:  # fmt: skip
    """The rate-limit headers each platform documents, in its own names and reset notation."""
    if wire == "cerebras":  # resets in seconds
        return {
            "x-ratelimit-limit-requests-day": str(limit_requests),
            "x-ratelimit-limit-tokens-minute": str(limit_tokens),
            "x-ratelimit-remaining-requests-day": str(remaining_requests),
            "x-ratelimit-remaining-tokens-minute": str(remaining_tokens),
            "x-ratelimit-reset-requests-day": f"{reset_requests_s:.6f}",
            "x-ratelimit-reset-tokens-minute": f"{reset_tokens_s:.6f}",
        }
    if wire == "sambanova":  # requests only (per minute, and per day)
        return {
            "x-ratelimit-limit-requests": str(limit_requests),
            "x-ratelimit-remaining-requests": str(remaining_requests),
            "x-ratelimit-reset-requests": f"{reset_requests_s:.2f}",
            "x-ratelimit-limit-requests-day": str(limit_requests * 200),
            "x-ratelimit-remaining-requests-day": str(remaining_requests * 200),
            "x-ratelimit-reset-requests-day": f"{reset_requests_s * 60:.0f}",
        }
    return {  # Groq and OpenAI: durations such as "2m59.56s" and "7.66s"
        "x-ratelimit-limit-requests": str(limit_requests),
        "x-ratelimit-limit-tokens": str(limit_tokens),
        "x-ratelimit-remaining-requests": str(remaining_requests),
        "x-ratelimit-remaining-tokens": str(remaining_tokens),
        "x-ratelimit-reset-requests": go_duration(reset_requests_s),
        "x-ratelimit-reset-tokens": go_duration(reset_tokens_s),
    }


def go_duration(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.2f}s" if minutes else f"{rest:.2f}s"
