"""A local HTTP server that speaks Cerebras' OpenAI-compatible chat API on 127.0.0.1, at a chosen speed.

Used by the benchmark (to answer at Cerebras', Groq's, SambaNova's or an H100's published speed) and by the tests
(to exercise the client against the provider's exact wire format: `chat.completion.chunk` SSE events, reasoning
deltas, a final chunk with `usage` and `time_info`, `data: [DONE]`, and Cerebras' flat error bodies).

`ProviderSim.scenario` switches behaviour for the next requests: "ok", "401", "429", "503", "cut" (the stream
stops mid-answer), "stall" (no first token ever comes), "error_event" (an error object inside the stream),
"malformed" (a chunk whose `choices` are not objects). Reasoning tokens count against the request's token limit, as
they do at the provider: a limit they use up ends the stream with `finish_reason: "length"` and nothing to say.
`first_token_s` may be a function, drawn per request (a heavy-tailed first-token time); `open_streams` counts the
responses still streaming (to show that no stream outlives a hang-up).
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

MODELS = ("gpt-oss-120b", "llama3.1-8b", "qwen-3-32b")
ACCEPTED_PARAMS = {
    "model", "messages", "stream", "max_completion_tokens", "max_tokens", "temperature", "top_p", "seed", "stop",
    "reasoning_effort", "tools", "tool_choice", "parallel_tool_calls", "response_format", "stream_options",
    "user", "logprobs", "top_logprobs", "service_tier",
}  # fmt: skip
ERRORS = {
    "401": (401, "Wrong API Key", "invalid_request_error", "wrong_api_key"),
    "429": (429, "Requests per minute limit exceeded - too many requests sent.", "too_many_requests_error",
            "request_quota_exceeded"),
    "503": (503, "We're experiencing high traffic right now! Please try again soon.", "service_unavailable_error",
            "queue_exceeded"),
}  # fmt: skip
DEFAULT_ANSWER = (
    "Sure, here is the short answer. It comes from the simulated provider, streamed token by token, "
    "at the speed you asked for."
)


def error_body(status: int, message: str, kind: str, code: str, param: str = "") -> dict[str, Any]:
    """Cerebras' error shape: a flat object, not OpenAI's {"error": {...}}."""
    return {"message": message, "type": kind, "param": param, "code": code}


@dataclass
class ProviderSim:
    api_key: str = "test-key"
    first_token_s: float | Callable[[], float] = 0.2
    tokens_per_s: float = 3000.0
    reasoning_tokens: int = 8
    answer: str = DEFAULT_ANSWER
    scenario: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    open_streams: int = 0
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

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
        self._thread = threading.Thread(target=self._server.run, name="provider-sim", daemon=True)
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

    # -- endpoints ---------------------------------------------------------------------------------
    def _unauthorized(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse(error_body(*ERRORS["401"]), status_code=401)
        return None

    async def _models(self, request: Request) -> Response:
        if denied := self._unauthorized(request):
            return denied
        created = 1_730_000_000
        data = [{"id": m, "object": "model", "created": created, "owned_by": "Cerebras"} for m in MODELS]
        return JSONResponse({"object": "list", "data": data})

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"body": body, "client": request.client, "headers": dict(request.headers)})
        if denied := self._unauthorized(request):
            return denied
        if self.scenario in ERRORS:
            status, *rest = ERRORS[self.scenario]
            return JSONResponse(error_body(status, *rest), status_code=status)
        unknown = sorted(set(body) - ACCEPTED_PARAMS)
        if unknown:
            return JSONResponse(
                error_body(400, f"Unrecognized request argument supplied: {unknown[0]}", "invalid_request_error",
                           "wrong_api_format", unknown[0]),
                status_code=400,
            )  # fmt: skip
        if body.get("model") not in MODELS:
            return JSONResponse(
                error_body(404, f"Model {body.get('model')} does not exist or you do not have access to it.",
                           "not_found_error", "model_not_found", "model"),
                status_code=404,
            )  # fmt: skip
        return StreamingResponse(self._stream(body), media_type="text/event-stream")

    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        self.open_streams += 1
        try:
            async for event in self._events(body):
                yield event
        finally:
            self.open_streams -= 1

    async def _events(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        started = time.time()
        chunk_id = f"chatcmpl-{uuid.uuid4()}"
        model = body["model"]

        def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            payload = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": int(started),
                "model": model,
                "system_fingerprint": "fp_sim",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(payload)}\n\n".encode()

        if self.scenario == "stall":
            await asyncio.sleep(3600)
        first_token_s = self.first_token_s() if callable(self.first_token_s) else self.first_token_s
        await asyncio.sleep(first_token_s)
        yield event({"role": "assistant"})
        if self.scenario == "malformed":
            yield f"data: {json.dumps({'id': chunk_id, 'choices': ['x']})}\n\n".encode()
        gap = 1.0 / self.tokens_per_s
        words = self.answer.split(" ")
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or len(words)
        reasoning = min(self.reasoning_tokens, limit) if model.startswith("gpt-oss") else 0
        for i in range(reasoning):
            yield event({"reasoning": f"thinking{i} "})
            await asyncio.sleep(gap)
        if reasoning >= limit:
            usage = {"prompt_tokens": 42, "completion_tokens": limit, "total_tokens": 42 + limit}
            yield event({}, "length", usage=usage)
            yield b"data: [DONE]\n\n"
            return
        limit -= reasoning
        for i, word in enumerate(words[:limit]):
            if self.scenario == "cut" and i == 4:
                return  # the connection ends mid-answer: no finish_reason, no [DONE]
            if self.scenario == "error_event" and i == 4:
                err = error_body(500, "Internal server error during generation", "server_error", "internal")
                yield f"data: {json.dumps({'error': err})}\n\n".encode()
                return
            yield event({"content": word if i == 0 else " " + word})
            await asyncio.sleep(gap)
        completion = reasoning + min(limit, len(words))
        total = time.time() - started
        yield event(
            {},
            "stop",
            usage={"prompt_tokens": 42, "completion_tokens": completion, "total_tokens": 42 + completion},
            time_info={"queue_time": 0.0001, "prompt_time": 0.002, "completion_time": total - first_token_s,
                       "total_time": total, "created": started},
        )  # fmt: skip
        yield b"data: [DONE]\n\n"
