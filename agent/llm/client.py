"""Streaming client for OpenAI-compatible chat completions (Cerebras, Groq, SambaNova, llama.cpp), on httpx.

One pooled `httpx.AsyncClient` per provider and process. `connect()` opens the connection (and checks the model
against `GET /models`) before the first turn, and `keep_warm()` stops it from idling out, so a turn never pays
DNS/TCP/TLS set-up. `stream()` yields `ChatChunk`s: spoken content and (never spoken) reasoning kept apart, plus
the provider's usage and Cerebras' `time_info` when they come.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from loguru import logger

from agent.llm.providers import Provider
from agent.llm.sse import iter_sse_data


class ProviderError(Exception):
    """A provider call failed. The message is safe to log: it never holds the API key."""

    def __init__(self, provider: str, message: str, status: int | None = None) -> None:
        self.provider = provider
        self.status = status
        self.retryable = status is None or status in (408, 409, 429) or status >= 500
        where = f"{provider} HTTP {status}" if status else provider
        super().__init__(f"{where}: {message}")


@dataclass
class ChatChunk:
    """One streamed delta. `content` is what the agent says; `reasoning` is thinking, never spoken."""

    content: str = ""
    reasoning: str = ""
    usage: dict[str, Any] | None = None
    time_info: dict[str, Any] | None = None
    finish_reason: str | None = None


@dataclass
class StreamStats:
    """What one completion cost, filled in as the stream goes."""

    started: float = field(default_factory=time.perf_counter)
    first_token_s: float | None = None
    first_content_s: float | None = None
    reasoning_chars: int = 0
    usage: dict[str, Any] | None = None
    time_info: dict[str, Any] | None = None


class ChatCompletionClient:
    """Streams chat completions from one provider over a pooled, pre-warmed HTTP connection."""

    def __init__(
        self,
        provider: Provider,
        *,
        first_token_timeout_s: float = 3.0,
        idle_timeout_s: float = 5.0,
    ) -> None:
        self.provider = provider
        self._first_token_timeout_s = first_token_timeout_s
        self._idle_timeout_s = idle_timeout_s
        headers = {"Accept": "text/event-stream", "User-Agent": "voice-agent/0.1"}
        if provider.api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {provider.api_key.get_secret_value()}"
        self._http = httpx.AsyncClient(
            base_url=provider.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(connect=5.0, read=idle_timeout_s, write=5.0, pool=5.0),
            limits=httpx.Limits(max_keepalive_connections=8, keepalive_expiry=300.0),
            http2=False,
        )
        self._warm_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[None]] = set()

    async def list_models(self) -> list[str]:
        response = await self._request("GET", "models")
        body = response.json()
        return [m["id"] for m in body.get("data", []) if isinstance(m, dict) and "id" in m]

    async def connect(self) -> None:
        """Open the connection and make sure the configured model exists. Raises ProviderError if not."""
        try:
            models = await self.list_models()
        except ProviderError as e:
            if e.status in (404, 405):  # no model list on this server: nothing to check against
                return
            raise
        if models and self.provider.model not in models:
            raise ProviderError(
                self.provider.name,
                f"unknown model {self.provider.model!r}; this provider offers: {', '.join(sorted(models))}",
            )

    def keep_warm(self, interval_s: float = 20.0) -> None:
        """Ping the provider in the background so the pooled connection never goes cold."""
        if self._warm_task is None:
            self._warm_task = asyncio.create_task(self._keep_warm(interval_s), name="llm-keep-warm")

    async def _keep_warm(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self._ping()

    async def aclose(self) -> None:
        if self._warm_task:
            self._warm_task.cancel()
            self._warm_task = None
        await self._http.aclose()

    def request_body(self, messages: Sequence[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.provider.model,
            "messages": list(messages),
            "stream": True,
            self.provider.token_limit_param: self.provider.max_completion_tokens,
            "temperature": self.provider.temperature,
        }
        if self.provider.reasoning_effort and self.provider.model.startswith("gpt-oss"):
            body["reasoning_effort"] = self.provider.reasoning_effort
        body.update(overrides)
        return body

    async def stream(
        self, messages: Sequence[dict[str, Any]], stats: StreamStats | None = None, **overrides: Any
    ) -> AsyncIterator[ChatChunk]:
        """Stream one completion. Raises ProviderError on an HTTP error, an error event, a cut stream or a
        first token that does not come within the first-token deadline."""
        stats = stats or StreamStats()
        body = self.request_body(messages, **overrides)
        name = self.provider.name
        completed = False
        try:
            async with self._http.stream("POST", "chat/completions", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise ProviderError(name, _error_message(response), response.status_code)
                events = iter_sse_data(response.aiter_lines())
                finished = False
                while True:
                    deadline = self._first_token_timeout_s if stats.first_token_s is None else None
                    try:
                        data = await asyncio.wait_for(anext(events), deadline or self._idle_timeout_s)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        what = "no first token" if deadline else "stream stalled"
                        raise ProviderError(name, f"{what} after {deadline or self._idle_timeout_s:.1f} s") from None
                    chunk = _parse_chunk(name, data)
                    if chunk.usage:
                        stats.usage = chunk.usage
                    if chunk.time_info:
                        stats.time_info = chunk.time_info
                    if chunk.content or chunk.reasoning:
                        now = time.perf_counter() - stats.started
                        if stats.first_token_s is None:
                            stats.first_token_s = now
                        if chunk.content and stats.first_content_s is None:
                            stats.first_content_s = now
                        stats.reasoning_chars += len(chunk.reasoning)
                    finished = finished or chunk.finish_reason is not None
                    yield chunk
                if not finished:
                    raise ProviderError(name, "stream ended before the answer was finished")
                completed = True
        except httpx.HTTPError as e:
            raise ProviderError(name, f"{type(e).__name__}: connection failed or was cut") from e
        finally:
            if not completed:
                self._rewarm()

    def _rewarm(self) -> None:
        """A stream left unfinished (barge-in, error) closes its connection: open a fresh one in the background
        so the next turn does not pay the TCP/TLS set-up."""
        if self._warm_task is not None:  # only once the runtime has asked to keep the pool warm
            task = asyncio.ensure_future(self._ping())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _ping(self) -> None:
        try:
            await self._request("GET", "models")
        except ProviderError as e:
            logger.debug(f"keep-warm ping failed: {e}")

    async def _request(self, method: str, path: str) -> httpx.Response:
        try:
            response = await self._http.request(method, path)
        except httpx.HTTPError as e:
            raise ProviderError(self.provider.name, f"{type(e).__name__}: cannot reach {self.provider.base_url}") from e
        if response.status_code >= 400:
            raise ProviderError(self.provider.name, _error_message(response), response.status_code)
        return response


def _parse_chunk(provider: str, data: str) -> ChatChunk:
    try:
        event = json.loads(data)
    except json.JSONDecodeError:
        raise ProviderError(provider, f"malformed stream event: {data[:80]!r}") from None
    if not isinstance(event, dict):
        raise ProviderError(provider, f"malformed stream event: {data[:80]!r}")
    if "error" in event or str(event.get("type", "")).endswith("error"):
        raise ProviderError(provider, _describe_error(event), event.get("status_code"))
    chunk = ChatChunk(usage=event.get("usage"), time_info=event.get("time_info"))
    for choice in event.get("choices") or []:
        delta = choice.get("delta") or {}
        chunk.content += delta.get("content") or ""
        chunk.reasoning += delta.get("reasoning") or delta.get("reasoning_content") or ""
        chunk.finish_reason = choice.get("finish_reason") or chunk.finish_reason
    return chunk


def _error_message(response: httpx.Response) -> str:
    try:
        return _describe_error(response.json())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:200] or response.reason_phrase


def _describe_error(body: Any) -> str:
    """Both shapes: Cerebras' flat {"message", "type", "code"} and OpenAI's {"error": {...}}."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            parts = [str(inner.get(k)) for k in ("message", "code") if inner.get(k)]
            if parts:
                return " / ".join(parts)
        elif isinstance(inner, str):
            return inner
    return str(body)[:200]
