"""A provider simulator: a real HTTP server on 127.0.0.1 speaking a chosen provider's documented wire format.

`ProviderSim(wire="cerebras" | "groq" | "sambanova" | "openai")` answers `GET /v1/models` and streaming
`POST /v1/chat/completions` at a chosen speed (first token after `first_token_s`, then `tokens_per_s`), in that
platform's format (`agent/llm/sim_formats.py`): its chunks, usage and timings, its rate-limit headers on every
response, its error bodies and statuses, and a 400 for each parameter it rejects. It keeps a prompt-prefix cache
and reports `usage.prompt_tokens_details.cached_tokens` when a request starts with messages it has seen.

`scenario` switches behaviour for the next requests: "ok", "401", "429" (request rate limit), "quota" (token quota
spent, with reset headers), "overloaded" (Cerebras `queue_exceeded`), "503", "cut" (the stream stops mid-answer),
"stall" (no first token ever comes), "error_event" (an error object inside the stream), "malformed" (a chunk whose
`choices` are not objects). Reasoning tokens count against the request's token limit, as they do at the provider: a
limit they use up ends the stream with `finish_reason: "length"` and nothing to say. `tool_calls` scripts
function calls: a request that offers `tools` (and does not already carry their results) is answered with those
calls, their arguments streamed in small pieces across chunks. `answer` may be a function of the request's
messages (a model that answers each question its own way: a turn-completion marker, say).

It lives in the package so that `voice-agent bench-llm` runs offline from an installed wheel; the tests and
`bench/latency.py` use it too.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from agent.llm.sim_formats import OPENAI_PARAMS, WIRE_FORMATS, ErrorSpec, WireFormat, rate_limit_headers

Event = Callable[..., bytes]
DEFAULT_ANSWER = (
    "Sure, here is the short answer. It comes from the simulated provider, streamed token by token, "
    "at the speed you asked for."
)
ARGUMENT_PIECE_CHARS = 7  # tool-call arguments are streamed in pieces this long
MAX_BODY_BYTES = 1_000_000


class Pacer:
    """Streams at a rate by the wall clock: token n goes out at start + n / rate, so the event loop's sleep
    granularity (~1 ms) does not slow a 3000 tokens/s platform down to a third of its speed."""

    def __init__(self, tokens_per_s: float) -> None:
        self._gap = 1.0 / tokens_per_s
        self._start = time.perf_counter()
        self._sent = 0

    async def next_token(self) -> None:
        self._sent += 1
        delay = self._start + self._sent * self._gap - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


@dataclass
class ProviderSim:
    api_key: str = "test-key"
    first_token_s: float | Callable[[], float] = 0.2  # a function is drawn per request (a heavy tail)
    tokens_per_s: float = 3000.0
    reasoning_tokens: int = 8
    answer: str | Callable[[list[dict[str, Any]]], str] = DEFAULT_ANSWER  # a function is asked per request
    scenario: str = "ok"
    wire: str = "cerebras"
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    quota_reset_s: float = 7.5  # "quota": when the spent token bucket refills
    request_reset_s: float = 2.0  # "429": when the spent request bucket refills
    limit_requests: int = 14_400
    limit_tokens: int = 60_000
    requests: list[dict[str, Any]] = field(default_factory=list)
    open_streams: int = 0  # responses still streaming: no stream may outlive a hang-up
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def format(self) -> WireFormat:
        return WIRE_FORMATS[self.wire]

    @property
    def models(self) -> tuple[str, ...]:
        return self.format.models

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> ProviderSim:
        with socket.socket() as s:
            s.bind(("127.0.0.1", self.port))
            self.port = s.getsockname()[1]
        app = Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", timeout_keep_alive=120)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"provider-sim-{self.wire}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("provider simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server:
            self._server.should_exit = True
        if self._thread:
            self._thread.join(timeout=5)

    # -- rate limits -------------------------------------------------------------------------------
    def _headers(self, tokens: int = 0) -> dict[str, str]:
        tokens_spent = self.scenario == "quota" and self.wire != "sambanova"  # SambaNova limits requests only
        requests_spent = self.scenario == "429" or (self.scenario == "quota" and self.wire == "sambanova")
        headers = rate_limit_headers(
            self.wire,
            remaining_requests=0 if requests_spent else max(0, self.limit_requests - len(self.requests)),
            remaining_tokens=0 if tokens_spent else max(0, self.limit_tokens - tokens),
            reset_requests_s=(self.quota_reset_s if self.scenario == "quota" else self.request_reset_s)
            if requests_spent
            else 33_011.38,
            reset_tokens_s=self.quota_reset_s if tokens_spent else 11.38,
            limit_requests=self.limit_requests,
            limit_tokens=self.limit_tokens,
        )
        if self.wire == "groq":
            headers["x-request-id"] = f"req_{uuid.uuid4().hex[:26]}"
        return headers

    def _error(self, spec: ErrorSpec, tokens: int = 0) -> Response:
        status, message, *rest = spec
        spec = (status, message.replace("{reset}", f"{self.quota_reset_s:.2f}"), *rest)
        headers = self._headers(tokens)
        if status == 429 and self.format.retry_after_on_429:
            headers["retry-after"] = str(self.quota_reset_s if self.scenario == "quota" else self.request_reset_s)
        return JSONResponse(self.format.error_body(spec), status_code=status, headers=headers)

    # -- endpoints ---------------------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def _models(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._error(self.format.errors["401"])
        data = [{"id": m, "object": "model", "created": 1_730_000_000, "owned_by": self.wire} for m in self.models]
        return JSONResponse({"object": "list", "data": data}, headers=self._headers())

    async def _chat(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw[:MAX_BODY_BYTES])
        except json.JSONDecodeError:
            return self._error((400, "Request body is not valid JSON", "invalid_request_error", "", ""))
        if not isinstance(body, dict):
            return self._error((400, "Request body must be a JSON object", "invalid_request_error", "", ""))
        self.requests.append({"body": body, "raw": raw, "client": request.client, "headers": dict(request.headers)})
        if not self._authorized(request):
            return self._error(self.format.errors["401"])
        prompt_tokens = estimate_tokens(json.dumps(body.get("messages", [])))
        if self.scenario in self.format.errors and self.scenario != "stream_error":
            return self._error(self.format.errors[self.scenario], prompt_tokens)
        for param in sorted(body):
            if param not in OPENAI_PARAMS or param in self.format.rejected_params:
                return self._error(self.format.rejected_param_error(param), prompt_tokens)
        if body.get("model") not in self.models:
            return self._error(self.format.model_not_found(str(body.get("model"))), prompt_tokens)
        cached = self._cached_tokens(body.get("messages") or [])
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 1000
        return StreamingResponse(
            self._stream(body, prompt_tokens, cached),
            media_type="text/event-stream",
            headers=self._headers(prompt_tokens + int(limit)),
        )

    def _cached_tokens(self, messages: list[Any]) -> int:
        """Tokens of the longest run of leading messages identical to the start of an earlier request (clearing
        `requests` empties the cache)."""
        seen = {
            json.dumps(earlier[:n], sort_keys=True)
            for r in self.requests[:-1]
            if isinstance(earlier := r["body"].get("messages"), list)
            for n in range(1, len(earlier) + 1)
        }
        hit = max(
            (n for n in range(1, len(messages) + 1) if json.dumps(messages[:n], sort_keys=True) in seen), default=0
        )
        return estimate_tokens(json.dumps(messages[:hit])) if hit else 0

    # -- the stream --------------------------------------------------------------------------------
    async def _stream(self, body: dict[str, Any], prompt_tokens: int, cached: int) -> AsyncIterator[bytes]:
        self.open_streams += 1
        try:
            async for piece in self._events(body, prompt_tokens, cached):
                yield piece
        finally:
            self.open_streams -= 1

    async def _events(self, body: dict[str, Any], prompt_tokens: int, cached: int) -> AsyncIterator[bytes]:
        started = time.time()
        chunk_id = f"chatcmpl-{uuid.uuid4()}"
        model = body["model"]
        x_groq_id = f"req_{uuid.uuid4().hex[:26]}"

        def event(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
            payload: dict[str, Any] = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": int(started),
                "model": model,
                "system_fingerprint": "fp_sim",
                "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(payload)}\n\n".encode()

        if self.scenario == "stall":
            await asyncio.sleep(3600)
        await asyncio.sleep(self.first_token_s() if callable(self.first_token_s) else self.first_token_s)
        first_at = time.time()
        groq_id = {"x_groq": {"id": x_groq_id}} if self.wire == "groq" else {}
        yield event({"role": "assistant", "content": ""}, **groq_id)
        if self.scenario == "malformed":
            yield f"data: {json.dumps({'id': chunk_id, 'choices': ['x']})}\n\n".encode()
        pace = Pacer(self.tokens_per_s)
        words = (self.answer(body.get("messages") or []) if callable(self.answer) else self.answer).split(" ")
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or len(words) + self.reasoning_tokens
        reasoning = min(self.reasoning_tokens, limit) if model.startswith(("gpt-oss", "openai/gpt-oss")) else 0
        for i in range(reasoning):
            yield event({"reasoning": f"thinking{i} "})
            await pace.next_token()
        completion = reasoning
        calls = self._scripted_calls(body)
        if reasoning >= limit:  # the limit spent on thinking: nothing to say, as at the provider
            finish = "length"
        elif calls:
            async for piece in self._stream_tool_calls(calls, event, pace):
                completion += 1
                yield piece
            finish = "tool_calls"
        else:
            for i, word in enumerate(words[: limit - reasoning]):
                if self.scenario == "cut" and i == 4:
                    return  # the connection ends mid-answer: no finish_reason, no [DONE]
                if self.scenario == "error_event" and i == 4:
                    error = self.format.error_body(self.format.errors["stream_error"])
                    yield f"data: {json.dumps(error if 'error' in error else {'error': error})}\n\n".encode()
                    return
                yield event({"content": word if i == 0 else " " + word})
                completion += 1
                await pace.next_token()
            finish = "stop"
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        for piece in self._finish(event, finish, usage, body, started=started, first_at=first_at, x_groq_id=x_groq_id):
            yield piece
        yield b"data: [DONE]\n\n"

    def _scripted_calls(self, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        messages = body.get("messages") or []
        answered = bool(messages) and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"
        return self.tool_calls if body.get("tools") and not answered else []

    async def _stream_tool_calls(
        self, calls: list[tuple[str, dict[str, Any]]], event: Event, pace: Pacer
    ) -> AsyncIterator[bytes]:
        for index, (name, arguments) in enumerate(calls):
            call_id = f"call_{uuid.uuid4().hex[:24]}"
            head = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            yield event({"tool_calls": [head]})
            text = json.dumps(arguments)
            for start in range(0, len(text), ARGUMENT_PIECE_CHARS):
                piece = text[start : start + ARGUMENT_PIECE_CHARS]
                yield event({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                await pace.next_token()

    def _finish(
        self,
        event: Event,
        finish: str,
        usage: dict[str, Any],
        body: dict[str, Any],
        *,
        started: float,
        first_at: float,
        x_groq_id: str,
    ) -> list[bytes]:
        """The closing chunk(s), with usage and timings where this platform puts them."""
        now = time.time()
        completion = usage["completion_tokens"]
        where = self.format.usage_where
        if where == "x_groq":
            groq_usage = {**usage, "queue_time": 0.012, "prompt_time": 0.004, "completion_time": now - first_at,
                          "total_time": now - started}  # fmt: skip
            return [event({}, finish, x_groq={"id": x_groq_id, "usage": groq_usage})]
        if where == "usage_chunk":
            if self.wire == "sambanova":
                usage |= {"time_to_first_token": first_at - started, "total_latency": now - started,
                          "completion_tokens_per_sec": completion / max(now - started, 1e-6),
                          "is_last_response": True, "start_time": started, "end_time": now}  # fmt: skip
            elif not (body.get("stream_options") or {}).get("include_usage"):
                return [event({}, finish)]
            return [event({}, finish), event(None, usage=usage)]
        time_info = {"queue_time": 0.0001, "prompt_time": 0.002, "completion_time": now - first_at,
                     "total_time": now - started, "created": started}  # fmt: skip
        return [event({}, finish, usage=usage, time_info=time_info)]
