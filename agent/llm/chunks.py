"""Stream events of a chat completion turned into `ChatChunk`s, the platform's quirks read from its declaration.

A chunk carries spoken content and (never spoken) reasoning apart, the usage and server timings wherever the
platform puts them (Cerebras `time_info`, Groq `x_groq.usage`, SambaNova `usage.time_to_first_token`), and, on the
chunk that finishes the answer, the complete tool calls assembled from their streamed deltas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agent.llm.errors import ProviderError, classify, error_details
from agent.llm.providers import KeyPath, Platform
from agent.tools.calls import ToolCall, ToolCallAssembler


@dataclass
class ChatChunk:
    """One streamed delta. `content` is what the agent says; `reasoning` is thinking, never spoken."""

    content: str = ""
    reasoning: str = ""
    usage: dict[str, Any] | None = None
    time_info: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)  # server-side seconds: queue_s, prompt_s, ttft_s...
    finish_reason: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)  # complete calls, on the finishing chunk only


def dig(event: Any, path: KeyPath) -> Any:
    for key in path:
        if not isinstance(event, dict):
            return None
        event = event.get(key)
    return event


def cached_tokens(usage: dict[str, Any] | None) -> int | None:
    """`usage.prompt_tokens_details.cached_tokens`, where the provider reports its prompt cache."""
    value = dig(usage, ("prompt_tokens_details", "cached_tokens"))
    return int(value) if isinstance(value, int | float) else None


class ChunkParser:
    """Parses one completion's stream events; keeps the tool calls being assembled across them."""

    def __init__(self, provider: str, platform: Platform) -> None:
        self._provider = provider
        self._platform = platform
        self._calls = ToolCallAssembler()
        self._calls_emitted = False

    def parse(self, data: str) -> ChatChunk:
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            raise ProviderError(self._provider, f"malformed stream event: {data[:80]!r}", kind="malformed") from None
        if not isinstance(event, dict):
            raise ProviderError(self._provider, f"malformed stream event: {data[:80]!r}", kind="malformed")
        if "error" in event or str(event.get("type", "")).endswith("error"):
            message, code, request_id = error_details(event)
            status = event.get("status_code") if isinstance(event.get("status_code"), int) else None
            kind = classify(status or 500, code)  # an error inside a stream is the server's
            raise ProviderError(self._provider, message, status, code=code, request_id=request_id, kind=kind)
        chunk = ChatChunk(time_info=event.get("time_info") if isinstance(event.get("time_info"), dict) else None)
        for path in self._platform.usage_paths:
            usage = dig(event, path)
            if isinstance(usage, dict):
                chunk.usage = usage
                break
        for name, path in self._platform.timing_paths.items():
            value = dig(event, path)
            if isinstance(value, int | float):
                chunk.timings[name] = float(value)
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict):
                raise ProviderError(self._provider, f"malformed stream event: {data[:80]!r}", kind="malformed")
            delta = choice.get("delta") or {}
            chunk.content += delta.get("content") or ""
            chunk.reasoning += delta.get("reasoning") or delta.get("reasoning_content") or ""
            try:
                self._calls.add(delta.get("tool_calls"))
            except ValueError as e:
                raise ProviderError(self._provider, str(e), kind="malformed") from None
            chunk.finish_reason = choice.get("finish_reason") or chunk.finish_reason
        if chunk.finish_reason and self._calls and not self._calls_emitted:
            chunk.tool_calls = self._take_calls()
        return chunk

    def _take_calls(self) -> list[ToolCall]:
        """The assembled calls, handed out once."""
        if self._calls_emitted or not self._calls:
            return []
        self._calls_emitted = True
        return self._calls.complete()
