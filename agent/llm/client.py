"""Streaming client for OpenAI-compatible chat completions (Cerebras, Groq, SambaNova, vLLM, llama.cpp), on httpx.

One client per provider and process, over one pooled `httpx.AsyncClient`; the platform's declaration
(`agent/llm/providers.py`) supplies its quirks, so there is no subclass per platform. `connect()` opens the
connection (and checks the model against `GET /models`) before the first turn, and `keep_warm()` stops it from
idling out, so a turn never pays DNS/TCP/TLS set-up. `stream()` yields `ChatChunk`s: spoken content and (never
spoken) reasoning apart, the provider's usage, server timings and cached prompt tokens, and complete tool calls.
Every response's rate-limit headers update `rate_limits` (shown on `/metrics`, read by the failover chain).

Request bodies are serialised canonically (fixed separators, no ASCII escaping), so the same messages are the same
bytes on every turn and the providers' prompt-prefix caches can hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from loguru import logger

from agent.llm.chunks import ChatChunk, ChunkParser, cached_tokens
from agent.llm.errors import ProviderError, error_details
from agent.llm.providers import Provider
from agent.llm.ratelimits import RateLimitState, parse_reset_s
from agent.llm.sse import iter_sse_data
from agent.tools.calls import ToolCall

__all__ = ["ChatChunk", "ChatCompletionClient", "ProviderError", "StreamStats", "ToolCall"]


@dataclass
class StreamStats:
    """What one completion cost, filled in as the stream goes."""

    started: float = field(default_factory=time.perf_counter)
    first_token_s: float | None = None
    first_content_s: float | None = None
    reasoning_chars: int = 0
    usage: dict[str, Any] | None = None
    time_info: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    cached_tokens: int | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)

    def record(self, chunk: ChatChunk) -> None:
        if chunk.usage:
            self.usage = chunk.usage
            self.cached_tokens = cached_tokens(chunk.usage)
        if chunk.time_info:
            self.time_info = chunk.time_info
        self.timings.update(chunk.timings)
        self.tool_calls += chunk.tool_calls
        if chunk.content or chunk.reasoning or chunk.tool_calls:
            now = time.perf_counter() - self.started
            if self.first_token_s is None:
                self.first_token_s = now
            if chunk.content and self.first_content_s is None:
                self.first_content_s = now
            self.reasoning_chars += len(chunk.reasoning)


NO_TOOLS_NOTE = (
    "You cannot take actions or look anything up on this line (no bookings, no lookups): if the caller asks for "
    "one, say briefly that you cannot do that here."
)

CUT_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError)  # the server closed the connection under us


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
        self.rate_limits = RateLimitState()
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
                kind="bad_request",
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

    def request_body(
        self, messages: Sequence[dict[str, Any]], *, tools: Sequence[dict[str, Any]] = (), **overrides: Any
    ) -> dict[str, Any]:
        """The request for `messages`. `tools` (OpenAI tool schemas) go only to a platform that takes them, and no
        parameter the platform is documented to reject is sent."""
        platform = self.provider.platform
        body: dict[str, Any] = {
            "model": self.provider.model,
            "messages": list(messages),
            "stream": True,
            platform.token_limit_param: self.provider.max_completion_tokens,
            "temperature": self.provider.temperature,
        }
        if platform.name != "local":
            body["stream_options"] = {"include_usage": True}
        if self.provider.reasoning_effort and self.provider.model.startswith(("gpt-oss", "openai/gpt-oss")):
            body["reasoning_effort"] = self.provider.reasoning_effort
        if tools and platform.supports_tools:
            body["tools"] = list(tools)
        elif tools:  # the caller may ask for what this model cannot do: it should say so, not pretend
            body["messages"] = _with_note(body["messages"], NO_TOOLS_NOTE)
        body.update(overrides)
        dropped = sorted(set(body) & platform.rejected_params)
        if dropped:
            logger.debug(f"{platform.name} rejects {', '.join(dropped)}: not sent")
        return {k: v for k, v in body.items() if k not in platform.rejected_params}

    async def stream(
        self,
        messages: Sequence[dict[str, Any]],
        stats: StreamStats | None = None,
        *,
        tools: Sequence[dict[str, Any]] = (),
        **overrides: Any,
    ) -> AsyncIterator[ChatChunk]:
        """Stream one completion. Raises ProviderError (with its kind) on an HTTP error, an error event, a cut
        stream or a first token that does not come within the first-token deadline."""
        stats = stats or StreamStats()
        body = self.request_body(messages, tools=tools, **overrides)
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        name = self.provider.name
        parser = ChunkParser(name, self.provider.platform)
        for attempt in (1, 2):
            yielded = completed = False
            try:
                async with self._open_stream(content) as response:
                    self.rate_limits.update(self.provider.platform.rate_limit_headers, response.headers)
                    if response.status_code >= 400:
                        await response.aread()
                        raise self._http_error(response)
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
                            raise ProviderError(
                                name, f"{what} after {deadline or self._idle_timeout_s:.1f} s", kind="timeout"
                            ) from None
                        chunk = parser.parse(data)
                        stats.record(chunk)
                        finished = finished or chunk.finish_reason is not None
                        yielded = True
                        yield chunk
                    if not finished:
                        raise ProviderError(name, "stream ended before the answer was finished", kind="network")
                    completed = True
                    return
            except httpx.HTTPError as e:
                # A connection cut before the first chunk lost nothing: a pooled connection the server closed while
                # it sat idle (llama.cpp's uvicorn drops them after 5 s; httpx does not retry a POST), or llama.cpp
                # dropping the request after a withdrawn speculative one. It is asked again once.
                if attempt == 1 and not yielded and isinstance(e, CUT_CONNECTION):
                    logger.debug(f"{name}: {type(e).__name__} before the first chunk; asking again")
                    continue
                raise ProviderError(name, f"{type(e).__name__}: connection failed or was cut", kind="network") from e
            finally:
                if not completed:
                    self._rewarm()

    def _http_error(self, response: httpx.Response) -> ProviderError:
        """An HTTP error response as a ProviderError: the body's code classifies it; `retry-after` or the
        platform's rate-limit reset headers say when to come back."""
        try:
            message, code, request_id = error_details(response.json())
        except (json.JSONDecodeError, UnicodeDecodeError):
            message, code, request_id = response.text[:200] or response.reason_phrase, "", ""
        error = ProviderError(self.provider.name, message, response.status_code, code=code, request_id=request_id)
        retry_after = parse_reset_s(response.headers.get("retry-after"))
        if retry_after is None and error.kind in ("quota", "rate_limited"):
            retry_after = self.rate_limits.exhausted_reset_s()
        error.retry_after_s = retry_after
        return error

    @contextlib.asynccontextmanager
    async def _open_stream(self, content: bytes) -> AsyncIterator[httpx.Response]:
        """POST a completion request and stream its response (`stream` asks again when the connection was cut)."""
        request = self._http.build_request(
            "POST", "chat/completions", content=content, headers={"Content-Type": "application/json"}
        )
        response = await self._http.send(request, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

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
            raise ProviderError(
                self.provider.name, f"{type(e).__name__}: cannot reach {self.provider.base_url}", kind="network"
            ) from e
        self.rate_limits.update(self.provider.platform.rate_limit_headers, response.headers)
        if response.status_code >= 400:
            raise self._http_error(response)
        return response


def _with_note(messages: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """The messages with `note` appended to the system message (a copy: the conversation itself is not changed)."""
    if messages and messages[0].get("role") == "system":
        return [{**messages[0], "content": f"{messages[0].get('content', '')} {note}"}, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]
