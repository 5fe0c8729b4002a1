"""The FastAPI app behind `voice-agent serve`.

Routes: `/` the demo page (from `web/`), `/ws` the page's call socket, the phone bridges (`/twilio/...`,
`/telnyx/...`, `/plivo/...`: `server/carriers.py`) and `POST /calls` (outbound calls), `/metrics` Prometheus (turn
latencies, each LLM provider's rate limits and failures, refusals), `/health`.
Models load and warm up in the lifespan, before the first caller is accepted; every call then runs its own pipeline
on the shared runtime, up to `MAX_SESSIONS` at once. Who may use `/ws` and `/metrics` is `server/access.py`'s rule,
who may call each carrier's gate (`telephony/gate.py`); every socket's frames are limited to 64 KiB and every
call's input is bounded by `protocols/input_guard.py`.
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

from agent.llm.failover import ProviderChain
from agent.protocols.input_guard import InputGuard
from agent.protocols.websocket_transport import close_if_open
from agent.runtime import AgentRuntime, check_providers
from agent.server.access import PAGE_SUBPROTOCOL, Access
from agent.server.carriers import add_carrier_routes
from agent.server.metrics import TurnMetrics
from agent.settings import Settings
from pipelines.browser import run_browser_call

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
MAX_WEBSOCKET_MESSAGE_BYTES = 64 * 1024
BUSY_MESSAGE = "The agent is busy with other calls right now; please try again in a minute."
PAGE_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'self'",
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
}


class SessionSlots:
    """At most `limit` calls at once, across the browser and the phone."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def claim(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active = max(0, self.active - 1)


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
    slots = SessionSlots(settings.max_sessions)
    access = Access(settings.access_token)
    logger.info(f"access: {access.description}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            app.state.runtime = replace(runtime, settings=settings)
            yield
            return
        async with AgentRuntime.start(settings) as started:
            app.state.runtime = started
            logger.info(f"serving on http://{settings.host}:{settings.port}")
            yield

    app = FastAPI(title="voice-agent", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.slots = slots
    app.state.metrics = metrics

    def provider_chain() -> ProviderChain | None:
        runtime = getattr(app.state, "runtime", None)
        return runtime.chain if runtime else None

    metrics.watch_providers(provider_chain)
    app.state.recent_turns = deque(maxlen=500)  # (channel, event, report), newest last: for operators and tests

    def record_turn(channel: str) -> Callable[[str, dict[str, Any]], None]:
        def record(event: str, report: dict[str, Any]) -> None:
            metrics.record(channel, event, report)
            app.state.recent_turns.append((channel, event, report))

        return record

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        provider = request.app.state.runtime.provider
        return JSONResponse(
            {"status": "ok", "provider": provider.name, "model": provider.model, "sessions": slots.active}
        )

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
        if not slots.claim():
            await websocket.send_json({"type": "busy", "message": BUSY_MESSAGE})
            await websocket.close(code=1013)
            return
        metrics.sessions.labels("browser").inc()
        try:
            guard = InputGuard(
                "browser", settings.session_idle_timeout_seconds, on_violation=metrics.disconnect_counter("browser")
            )
            await run_browser_call(websocket, websocket.app.state.runtime, record_turn("browser"), guard)
        except Exception:
            logger.exception("browser: call failed")
        finally:
            slots.release()
            metrics.sessions.labels("browser").dec()

    app.state.phone_slots = add_carrier_routes(app, settings, slots, metrics, record_turn("phone"))
    return app


def serve(settings: Settings) -> None:
    """Check the providers' keys and models, then serve. A rejected key or an unknown model is raised before the
    server starts (the CLI reports it in one line); the runtime itself starts in the lifespan, so that a shutdown
    (SIGTERM, Ctrl+C) closes it, the embedded LLM server included."""
    asyncio.run(check_providers(settings))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        ws="websockets",
        ws_max_size=MAX_WEBSOCKET_MESSAGE_BYTES,
    )
