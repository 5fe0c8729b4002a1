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
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from loguru import logger

from agent.protocols.websocket_transport import close_if_open
from agent.runtime import AgentRuntime, check_providers
from agent.server.access import PAGE_SUBPROTOCOL, Access
from agent.server.access_log import log_config
from agent.server.admission import Admission
from agent.server.calls import CallRunner, InProcessCalls
from agent.server.carriers import add_carrier_routes
from agent.server.lifecycle import DrainingServer
from agent.server.metrics import TurnMetrics
from agent.server.workers import WorkerPool
from agent.settings import Settings

WEB_DIR = Path(__file__).resolve().parents[1] / "web"  # in the package (in a checkout: a link to web/)
MAX_WEBSOCKET_MESSAGE_BYTES = 64 * 1024
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


def create_app(settings: Settings, runtime: AgentRuntime | None = None) -> FastAPI:
    """The app. With `runtime` given (tests), its models and LLM client are reused instead of being started in the
    lifespan, under this app's `settings`."""
    metrics = TurnMetrics()

    def calls() -> CallRunner | None:
        return getattr(app.state, "calls", None)  # set in the lifespan

    admission = Admission(
        settings,
        idle_workers=lambda: runner.idle() if (runner := calls()) else 0,
        calls_cpu_seconds=lambda: runner.calls_cpu_seconds() if (runner := calls()) else None,
    )
    metrics.watch_capacity(admission)
    metrics.watch_providers(lambda: runner.providers() if (runner := calls()) else [])
    access = Access(settings.access_token)
    logger.info(f"access: {access.description}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with run_calls(settings, runtime) as runner, measure_cpu(admission):
            app.state.calls = runner
            logger.info(f"serving on http://{settings.host}:{settings.port} ({settings.instance})")
            yield

    app = FastAPI(title="voice-agent", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.admission = admission
    app.state.metrics = metrics
    app.state.recent_turns = deque(maxlen=500)  # (channel, event, report), newest last: for operators and tests

    def record_turn(channel: str) -> Callable[[str, dict[str, Any]], None]:
        def record(event: str, report: dict[str, Any]) -> None:
            metrics.record(channel, event, report)
            if event == "answered":
                admission.record_answer(report)
            app.state.recent_turns.append((channel, event, report))

        return record

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", **request.app.state.calls.describe(), "sessions": admission.active})

    @app.get("/ready")
    async def ready() -> JSONResponse:
        refusal = admission.refusal()
        body = {"ready": refusal is None, "active": admission.active, "capacity": admission.capacity()}
        return JSONResponse({**body, "reason": refusal} if refusal else body, status_code=503 if refusal else 200)

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        if not access.bearer_allowed(request):
            metrics.refused.labels("metrics", "access").inc()
            return Response("access token required", status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.websocket("/ws")
    async def browser_call(websocket: WebSocket) -> None:
        if not origin_allowed(websocket.headers.get("origin"), websocket.headers.get("host"), settings.origins):
            logger.warning(f"browser: refused a websocket from origin {websocket.headers.get('origin')!r}")
            metrics.refused.labels("browser", "origin").inc()
            await websocket.close(code=1008)
            return
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol=PAGE_SUBPROTOCOL if PAGE_SUBPROTOCOL in offered else None)
        if refusal := access.websocket_refusal(websocket):
            logger.warning(f"browser: refused a websocket from {websocket.client}: {refusal}")
            metrics.refused.labels("browser", "access").inc()
            await close_if_open(websocket, 1008, refusal)
            return
        slot = admission.admit("browser")
        if slot is None:
            await websocket.send_json({"type": "busy", "message": BUSY_MESSAGE})
            await websocket.close(code=1013)
            return
        with slot:
            try:
                await websocket.app.state.calls.run_browser(
                    websocket, record_turn("browser"), metrics.disconnect_counter("browser")
                )
            except Exception:
                logger.exception("browser: call failed")

    add_carrier_routes(app, settings, admission, metrics, record_turn("phone"))
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
        ws="websockets",
        ws_max_size=MAX_WEBSOCKET_MESSAGE_BYTES,
        ws_per_message_deflate=False,  # G.711 and PCM do not compress: deflating every 20 ms frame only costs CPU
    )
    DrainingServer(config, app).run()
