"""Provider errors, classified from the signals the provider sends: the body's `code`, then the HTTP status.

The kind decides what the failover chain does (`agent/llm/failover.py`):
- `overloaded`: short-lived (Cerebras `queue_exceeded`, SambaNova `queue_full`, a 503): hedge to the next provider;
- `quota`: a token quota is spent (Cerebras `token_quota_exceeded`, SambaNova `insufficient_quota`): fail over at
  once and rest the provider until the reset time its headers give;
- `rate_limited`: any other 429 (request quotas, Groq's `rate_limit_exceeded`): fail over, rest until `retry-after`;
- `auth`: 401/403, the key was rejected; `bad_request`: the request itself is wrong (400/404/422);
- `server`, `network`, `timeout`, `malformed`: the call broke; try the next provider.
Messages are safe to log: they never hold the API key.
"""

from __future__ import annotations

import json
from typing import Any, Literal

ErrorKind = Literal[
    "overloaded", "quota", "rate_limited", "auth", "bad_request", "server", "network", "timeout", "malformed"
]

KIND_BY_CODE: dict[str, ErrorKind] = {
    "queue_exceeded": "overloaded",  # Cerebras: "We're experiencing high traffic right now!"
    "queue_full": "overloaded",  # SambaNova: too many requests in flight
    "token_quota_exceeded": "quota",  # Cerebras: tokens per minute/hour/day spent
    "insufficient_quota": "quota",  # SambaNova: the tier's rate limit
    "request_quota_exceeded": "rate_limited",  # Cerebras: requests per minute/hour/day
    "rate_limit_exceeded": "rate_limited",  # Groq, OpenAI
    "wrong_api_key": "auth",  # Cerebras
    "invalid_api_key": "auth",  # Groq, OpenAI
    "invalid_authentication": "auth",  # SambaNova
}


class ProviderError(Exception):
    """A provider call failed, with the kind of failure and, where the provider says, when to try again."""

    def __init__(
        self,
        provider: str,
        message: str,
        status: int | None = None,
        *,
        kind: ErrorKind | None = None,
        code: str = "",
        retry_after_s: float | None = None,
        request_id: str = "",
    ) -> None:
        self.provider = provider
        self.status = status
        self.code = code
        self.kind: ErrorKind = kind or classify(status, code)
        self.retry_after_s = retry_after_s
        self.request_id = request_id
        where = f"{provider} HTTP {status}" if status else provider
        trace = f" (request {request_id})" if request_id else ""
        super().__init__(f"{where}: {message}{trace}")

    @property
    def retryable(self) -> bool:
        """Worth sending again (here or elsewhere): everything but a rejected key or a malformed request."""
        return self.kind not in ("auth", "bad_request")


def classify(status: int | None, code: str = "") -> ErrorKind:
    if code in KIND_BY_CODE:
        return KIND_BY_CODE[code]
    if status is None:
        return "network"
    if status in (401, 403):
        return "auth"
    if status == 408:
        return "timeout"
    if status == 429:
        return "rate_limited"
    if status in (498, 503):  # Groq's flex tier at capacity; a platform briefly unavailable
        return "overloaded"
    if status >= 500:
        return "server"
    return "bad_request"


def error_details(body: Any) -> tuple[str, str, str]:
    """(message, code, request_id) from any of the documented error shapes: Cerebras' flat object, OpenAI's and
    Groq's `{"error": {...}}`, SambaNova's `{"error": {...}, "request_id"}`."""
    if not isinstance(body, dict):
        return str(body)[:200], "", ""
    request_id = str(body.get("request_id") or "")
    inner = body.get("error", body)
    if isinstance(inner, str):
        return inner[:200], "", request_id
    if not isinstance(inner, dict):
        return str(body)[:200], "", request_id
    code = str(inner.get("code") or "")
    message = str(inner.get("message") or "") or json.dumps(inner)[:200]
    return " / ".join(p for p in (message, code) if p), code, request_id
