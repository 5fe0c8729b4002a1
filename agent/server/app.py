"""The FastAPI app behind `voice-agent serve`.

Routes: `/` the demo page (from `web/`), `/ws` the page's call socket, the phone bridges (`/<carrier>/...`
for each carrier of the registry: `server/carriers.py`) and `POST /calls` (outbound calls), `/metrics` Prometheus (turn
latencies, each LLM provider's rate limits and failures, refusals, outbound calls, capacity), `/health`
(liveness), `/ready` (503 when full or draining). This process terminates every websocket, checks who may call
(`server/access.py` for `/ws` and `/metrics`, each carrier's gate, `telephony/gate.py`, for the phone), admits each
call by load (`admission.py`; phone calls through `phone_slots.py`), then runs it in a warm worker process
(`workers.py`), or in this process with `WORKERS=0`. Everything loads and warms up in the lifespan, before the
first caller is accepted. Every socket's frames are limited to 64 KiB and every call's input is bounded by
`protocols/input_guard.py`.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from loguru import logger

from agent.latency.observer import TurnListener
from agent.protocols.websocket_transport import close_if_open
from agent.runtime import AgentRuntime, check_providers
from agent.server.access import PAGE_SUBPROTOCOL, Access
from agent.server.access_log import log_config
from agent.server.admission import Admission
from agent.server.calls import CallRunner, InProcessCalls
from agent.server.carriers import add_carrier_routes
from agent.server.handoff import MAX_WEBSOCKET_MESSAGE_BYTES, HandoffWebSocketProtocol
from agent.server.lifecycle import DrainingServer
from agent.server.metrics import ProviderReading, TurnMetrics
from agent.server.workers import WorkerPool
from agent.settings import Settings

WEB_DIR = Path(__file__).resolve().parents[1] / "web"  # in the package (in a checkout: a link to web/)
BUSY_MESSAGE = "The agent is busy with other calls right now; please try again in a minute."
PAGE_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'self'",
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
}


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Allowed origins from settings; with none configured, only the page's own origin (same host and port)."""
    if not origin:
        return False
    origin = origin.rstrip("/")
    if allowed:
        return origin in allowed or "*" in allowed
    return bool(host) and urlsplit(origin).netloc == host


class CallsSlot:
    """Where calls run, for the parts built before the lifespan starts it (the admission asks how many workers are
    idle and what the calls cost the CPU; /metrics reads the providers): nothing until then."""

    def __init__(self) -> None:
        self.runner: CallRunner | None = None

    def idle(self) -> int:
        return self.runner.idle() if self.runner else 0

    def calls_cpu_seconds(self) -> dict[str, float] | None:
        return self.runner.calls_cpu_seconds() if self.runner else None

    def providers(self) -> list[ProviderReading]:
        return self.runner.providers() if self.runner else []


@dataclass
class TurnRecorder:
    """Where the front keeps every turn report: /metrics, the admission's record of answers, and the recent turns
    (channel, event, report; newest last) that operators and tests read."""

    metrics: TurnMetrics
    admission: Admission
    recent: deque[tuple[str, str, dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=500))

    def listener(self, channel: str) -> TurnListener:
        return functools.partial(self.record, channel)

    def record(self, channel: str, event: str, report: dict[str, Any]) -> None:
        self.metrics.record(channel, event, report)
        if event == "answered":
            self.admission.record_answer(report)
        self.recent.append((channel, event, report))


routes = APIRouter()


@routes.get("/")
async def page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)


@routes.get("/health")
async def health(request: Request) -> JSONResponse:
    state = request.app.state
    return JSONResponse({"status": "ok", **state.calls.describe(), "sessions": state.admission.active})


@routes.get("/ready")
async def ready(request: Request) -> JSONResponse:
    admission: Admission = request.app.state.admission
    refusal = admission.refusal()
    body = {"ready": refusal is None, "active": admission.active, "capacity": admission.capacity()}
    return JSONResponse({**body, "reason": refusal} if refusal else body, status_code=503 if refusal else 200)


@routes.get("/metrics")
async def prometheus(request: Request) -> Response:
    state = request.app.state
    if not state.access.bearer_allowed(request):
        state.metrics.refused.labels("metrics", "access").inc()
        return Response("access token required", status_code=401, headers={"WWW-Authenticate": "Bearer"})
    return Response(state.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")


@routes.websocket("/ws")
async def browser_call(websocket: WebSocket) -> None:
    """The page's call: origin, then the access token, then admission; the call runs where calls run."""
    state = websocket.app.state
    metrics: TurnMetrics = state.metrics
    if not origin_allowed(websocket.headers.get("origin"), websocket.headers.get("host"), state.settings.origins):
        logger.warning(f"browser: refused a websocket from origin {websocket.headers.get('origin')!r}")
        metrics.refused.labels("browser", "origin").inc()
        await websocket.close(code=1008)
        return
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=PAGE_SUBPROTOCOL if PAGE_SUBPROTOCOL in offered else None)
    if refusal := state.access.websocket_refusal(websocket):
        logger.warning(f"browser: refused a websocket from {websocket.client}: {refusal}")
        metrics.refused.labels("browser", "access").inc()
        await close_if_open(websocket, 1008, refusal)
        return
    slot = state.admission.admit("browser")
    if slot is None:
        await websocket.send_json({"type": "busy", "message": BUSY_MESSAGE})
        await websocket.close(code=1013)
        return
    with slot:
        try:
            await state.calls.run_browser(
                websocket, state.turns.listener("browser"), metrics.disconnect_counter("browser")
            )
        except Exception:
            logger.exception("browser: call failed")


@asynccontextmanager
async def serving_calls(app: FastAPI) -> AsyncIterator[None]:
    """The app's lifespan: calls' runtime (or workers) started and warm, the CPU measured for the admission."""
    state = app.state
    async with run_calls(state.settings, state.runtime) as runner, measure_cpu(state.admission):
        state.calls = state.calls_slot.runner = runner
        logger.info(f"serving on http://{state.settings.host}:{state.settings.port} ({state.settings.instance})")
        yield


def create_app(settings: Settings, runtime: AgentRuntime | None = None) -> FastAPI:
    """The app. With `runtime` given (tests), its models and LLM client are reused instead of being started in the
    lifespan, under this app's `settings`."""
    calls = CallsSlot()
    admission = Admission(settings, idle_workers=calls.idle, calls_cpu_seconds=calls.calls_cpu_seconds)
    metrics = TurnMetrics()
    metrics.watch_capacity(admission)
    metrics.watch_providers(calls.providers)
    access = Access(settings.access_token)
    logger.info(f"access: {access.description}")
    turns = TurnRecorder(metrics, admission)

    app = FastAPI(title="voice-agent", lifespan=serving_calls, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.calls_slot = calls
    app.state.admission = admission
    app.state.metrics = metrics
    app.state.access = access
    app.state.turns = turns
    app.state.recent_turns = turns.recent
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    app.include_router(routes)
    add_carrier_routes(app, settings, admission, metrics, turns.listener("phone"))
    return app


@asynccontextmanager
async def run_calls(settings: Settings, runtime: AgentRuntime | None) -> AsyncIterator[CallRunner]:
    """Where calls run: on `runtime` in this process (tests), in this process (WORKERS=0), or in worker processes."""
    if runtime is not None:
        yield InProcessCalls(replace(runtime, settings=settings))
    elif settings.worker_count == 0:
        async with AgentRuntime.start(settings) as started:
            yield InProcessCalls(started)
    else:
        async with WorkerPool.start(settings) as pool:
            yield pool


@asynccontextmanager
async def measure_cpu(admission: Admission) -> AsyncIterator[None]:
    sampler = asyncio.create_task(admission.measure_cpu())
    try:
        yield
    finally:
        sampler.cancel()


def serve(settings: Settings) -> None:
    """Check the providers' keys and models, then serve. A rejected key or an unknown model is raised before the
    server starts (the CLI reports it in one line); the runtime (or the workers) start in the lifespan. SIGTERM and
    Ctrl+C drain first (`lifecycle.py`), then the lifespan stops the workers and the embedded LLM server."""
    asyncio.run(check_providers(settings))
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=log_config(),
        ws=HandoffWebSocketProtocol,  # a call's connection is handed to its worker (`handoff.py`)
        ws_max_size=MAX_WEBSOCKET_MESSAGE_BYTES,
        ws_per_message_deflate=False,  # G.711 and PCM do not compress: deflating every 20 ms frame only costs CPU
    )
    DrainingServer(config, app).run()
