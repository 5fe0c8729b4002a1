"""Rate-limit state read from a provider's response headers, kept per provider for `/metrics` and failover.

Each platform names its headers in its declaration (`agent/llm/providers.py`). Reset times come as seconds
(Cerebras: `11.38`), as Go-style durations (Groq, OpenAI: `2m59.56s`, `120ms`), or as a Unix time; all become
seconds from now.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import httpx

from agent.llm.providers import RateLimitHeaders

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_EPOCH_2001 = 1e9  # a reset larger than this is a Unix time, not a duration


def parse_reset_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds until a reset given as seconds, a duration ("1m2.5s", "120ms") or a Unix time; None if unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            return None
        return sum(float(n) * _UNIT_S[u] for n, u in parts)
    if number > _EPOCH_2001:
        return max(0.0, number - (time.time() if now is None else now))
    return max(0.0, number)


def _count(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


@dataclass
class RateLimitState:
    """The last rate-limit headers a provider sent: what is left and when each bucket refills."""

    remaining_requests: float | None = None
    remaining_tokens: float | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None
    updated_at: float | None = None  # time.monotonic() of the response they came with

    def update(self, names: RateLimitHeaders, headers: httpx.Headers) -> None:
        seen = False
        for attr, header, parse in (
            ("remaining_requests", names.remaining_requests, _count),
            ("remaining_tokens", names.remaining_tokens, _count),
            ("reset_requests_s", names.reset_requests, parse_reset_s),
            ("reset_tokens_s", names.reset_tokens, parse_reset_s),
        ):
            if header and header in headers:
                setattr(self, attr, parse(headers[header]))
                seen = True
        if seen:
            self.updated_at = time.monotonic()

    def reset_in_s(self, reset_s: float | None) -> float | None:
        """A reset read from the headers, counted down to now."""
        if reset_s is None or self.updated_at is None:
            return None
        return max(0.0, reset_s - (time.monotonic() - self.updated_at))

    def exhausted_reset_s(self) -> float | None:
        """Seconds until every spent bucket has refilled; None when the headers show no spent bucket."""
        spent = [
            reset
            for remaining, reset in ((self.remaining_tokens, self.reset_tokens_s),
                                     (self.remaining_requests, self.reset_requests_s))
            if remaining is not None and remaining <= 0 and reset is not None
        ]  # fmt: skip
        return max(spent) if spent else None
