"""A worker process: runs one call at a time on its own runtime (Whisper, the voice, the LLM connection), loaded
and warmed once before it takes its first call, then reused warm call after call.

The front process starts it as `python -m agent.server.worker --socket PATH --name NAME` and writes its settings
(JSON, secrets included) to its stdin; nothing secret is on the command line. It serves on a Unix socket in a
directory only this user can enter; only the front talks to it:

- `/control`: the front's line to the worker. Out: `ready` once, every turn report, the input bound a caller broke
  (`violation`), the LLM providers' state (`providers`, after every turn and call), `idle` after each call.
  In: `end_call` (say the drain goodbye and end the live call). When the front closes it, the worker exits.

Calls come on `<socket>.handoff` (`handoff.py`): the caller's connection itself, terminated and checked by the
front (origin, access, signature, stream token, admission) before any worker saw it, with what the front had read
of it (a phone stream's opening messages first, as the carrier sent them), headed for `/ws` (the page) or
`/phone/<carrier>` (`?greeting=` for an outbound call). The calls run here exactly as in a single-process server
(`calls.py`'s `InProcessCalls`: the same pipelines, the same input bounds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import uvicorn
from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect
from loguru import logger
from starlette.types import Scope

from agent.latency.observer import TurnListener
from agent.runtime import AgentRuntime
from agent.server.calls import InProcessCalls, PhoneCall, ViolationListener
from agent.server.handed_socket import HandedSocket
from agent.server.handoff import MAX_WEBSOCKET_MESSAGE_BYTES, Handoff, handoff_path, receive_handoff
from agent.settings import Settings
from agent.telephony.gate import OPENING_TIMEOUT_S
from agent.telephony.registry import CARRIERS
from agent.telephony.tokens import GateRefused
from pipelines.replay import replay_call, write_wav

REHEARSAL = "Hello, can you hear me?"

_libc_name = ctypes.util.find_library("c")
LIBC = ctypes.CDLL(_libc_name) if _libc_name and sys.platform.startswith("linux") else None  # for malloc_trim


def _release_memory() -> None:
    """Between calls: collect the call's garbage cycles now (a full collection would otherwise come at some
    random moment of a later call, and until then the memory stays taken), and give freed heap back to the OS."""
    gc.collect()
    if LIBC is not None:
        LIBC.malloc_trim(0)


async def rehearse(runtime: AgentRuntime) -> None:
    """One short call through the whole pipeline (at the phone's 8 kHz, the agent's own voice as the caller) before
    the first real one: whatever a first call sets up lazily (VAD sessions, Whisper's first decode, pipecat's
    first pipeline, the voice's first sentence) is done now, not on a caller's time."""
    voice = runtime.speech.voice
    speech = np.frombuffer(b"".join(voice.synthesize(REHEARSAL)), np.int16)
    audio = np.concatenate([np.zeros(2400, np.int16), soxr.resample(speech, voice.sample_rate, 8000)])
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "rehearsal.wav"
        write_wav(path, np.concatenate([audio, np.zeros(16000, np.int16)]).tobytes(), 8000)
        result = await replay_call(runtime, path, max_tail_s=10)
    logger.info(f"rehearsal call: {sum(t['outcome'] == 'answered' for t in result.turns)} turn(s) answered")


class FrontLine:
    """What the worker tells the front over `/control`, queued until the control line sends it: every turn report,
    the input bounds callers broke, the LLM providers' state (after every turn and call), `idle` after each call."""

    def __init__(self) -> None:
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def providers(self, calls: InProcessCalls) -> None:
        readings = [asdict(reading) for reading in calls.providers()]
        self.put({"type": "providers", "at": time.monotonic(), "readings": readings})

    def reports(self, channel: str, calls: InProcessCalls) -> ChannelReports:
        return ChannelReports(self, channel, calls)

    def call_over(self, calls: InProcessCalls) -> None:
        _release_memory()
        self.providers(calls)
        self.put({"type": "idle"})

    def put(self, message: dict[str, Any]) -> None:
        self._outbox.put_nowait(message)

    async def next_message(self) -> dict[str, Any]:
        return await self._outbox.get()

    async def send_all(self, websocket: WebSocket) -> None:
        """Send what is queued, as it comes, until cancelled."""
        while True:
            await websocket.send_json(await self.next_message())


@dataclass
class ChannelReports:
    """One call's listeners: its turns and broken input bounds, reported to the front under its channel."""

    front: FrontLine
    channel: str
    calls: InProcessCalls

    def turn(self, event: str, report: dict[str, Any]) -> None:
        self.front.put({"type": "turn", "channel": self.channel, "event": event, "report": report})
        if event == "closed":
            self.front.providers(self.calls)

    def violation(self, reason: str) -> None:
        self.front.put({"type": "violation", "channel": self.channel, "reason": reason})

    @property
    def listeners(self) -> tuple[TurnListener, ViolationListener]:
        return self.turn, self.violation


routes = APIRouter()


@routes.websocket("/control")
async def control(websocket: WebSocket) -> None:
    """The front's line: `ready` first, then the queued reports; `end_call` in; closed by the front = exit."""
    await websocket.accept()
    state = websocket.app.state
    calls: InProcessCalls = state.calls
    front: FrontLine = state.front
    provider = calls.runtime.provider
    await websocket.send_json({"type": "ready", "provider": provider.name, "model": provider.model})
    front.providers(calls)
    sender = asyncio.create_task(front.send_all(websocket))
    try:
        while True:
            message = await websocket.receive_json()
            if message.get("type") == "end_call":
                await calls.end_all()
    except (WebSocketDisconnect, json.JSONDecodeError, RuntimeError):
        logger.info("the front closed the control line: exiting")
        state.on_orphaned()
    finally:
        sender.cancel()


async def browser_call(websocket: WebSocket) -> None:
    await websocket.accept()
    calls: InProcessCalls = websocket.app.state.calls
    front: FrontLine = websocket.app.state.front
    try:
        await calls.run_browser(websocket, *front.reports("browser", calls).listeners)
    except Exception:
        logger.exception("browser: call failed")
    finally:
        front.call_over(calls)


async def phone_call(websocket: WebSocket, carrier: str) -> None:
    await websocket.accept()
    calls: InProcessCalls = websocket.app.state.calls
    front: FrontLine = websocket.app.state.front
    greeting = websocket.query_params.get("greeting", "")
    try:
        if carrier not in CARRIERS:
            raise GateRefused("carrier", f"no carrier {carrier[:20]!r}")
        async with asyncio.timeout(OPENING_TIMEOUT_S):  # the opening the front checked, handed over as it was sent
            opening = await CARRIERS[carrier].serializer.read_opening(websocket)
        await calls.run_phone(websocket, PhoneCall(opening, greeting), *front.reports("phone", calls).listeners)
    except (GateRefused, TimeoutError) as e:
        logger.warning(f"{carrier[:20]}: the handed-over stream did not start properly: {e}")
        await websocket.close(code=1008)
    except Exception:
        logger.exception(f"{carrier[:20]}: call failed")
    finally:
        front.call_over(calls)


class HandedCalls:
    """The calls the front hands over (`handoff.py`): each socket received on the handoff channel is served as
    the websocket it is, by the route it was headed for."""

    def __init__(self, app: FastAPI, path: str) -> None:
        self._app = app
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(1)
        self._listener.setblocking(False)
        self._calls: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        """Take handoffs from the front, over each connection it makes, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            channel, _ = await loop.sock_accept(self._listener)
            channel.setblocking(False)
            self._track(asyncio.create_task(self._receive(channel)))

    async def _receive(self, channel: socket.socket) -> None:
        with channel:
            while True:
                try:
                    handoff, sock = await receive_handoff(channel)
                except EOFError:
                    return
                self._track(asyncio.create_task(self.run(handoff, sock)))

    async def run(self, handoff: Handoff, sock: socket.socket) -> None:
        """One handed-over call, from the messages the front read to the socket's close."""
        handed = await HandedSocket.open(
            sock, handoff.asgi_messages(), handoff.unread_bytes(), MAX_WEBSOCKET_MESSAGE_BYTES
        )
        websocket = WebSocket(self._scope(handoff), handed.receive, handed.send)
        try:
            if handoff.path == "/ws":
                await browser_call(websocket)
            elif handoff.path.startswith("/phone/"):
                await phone_call(websocket, handoff.path.removeprefix("/phone/"))
            else:
                logger.error(f"handoff: no route {handoff.path[:40]!r}")
                await websocket.close(code=1011)
        finally:
            await handed.finish()

    def _scope(self, handoff: Handoff) -> Scope:
        return {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "scheme": "ws",
            "path": handoff.path,
            "raw_path": handoff.path.encode(),
            "query_string": handoff.query.encode(),
            "root_path": "",
            "headers": [],
            "client": handoff.client,
            "server": None,
            "subprotocols": [],
            "app": self._app,
        }

    def _track(self, task: asyncio.Task[None]) -> None:
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def close(self) -> None:
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        self._listener.close()


@asynccontextmanager
async def warm_runtime(app: FastAPI) -> AsyncIterator[None]:
    """The worker's lifespan: its runtime started, rehearsed and frozen before the first call; then the handoff
    channel open (the front connects to it once the worker is ready)."""
    async with AgentRuntime.start(app.state.settings, local_llm_url=app.state.local_llm_url) as runtime:
        app.state.calls = InProcessCalls(runtime)
        await rehearse(runtime)
        gc.collect()
        gc.freeze()  # the models and everything loaded so far stay: later collections skip them
        handed = HandedCalls(app, app.state.handoff_path)
        serving = asyncio.create_task(handed.serve())
        try:
            yield
        finally:
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            await handed.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(app.state.handoff_path)


def create_worker_app(
    settings: Settings, local_llm_url: str | None, on_orphaned: Callable[[], None], handoff_path: str
) -> FastAPI:
    """The worker's app. `on_orphaned` is called when the front's control line closes (the worker should exit);
    the front hands calls over on `handoff_path`."""
    app = FastAPI(lifespan=warm_runtime, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.handoff_path = handoff_path
    app.state.local_llm_url = local_llm_url
    app.state.on_orphaned = on_orphaned
    app.state.front = FrontLine()
    app.include_router(routes)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.server.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="the Unix socket to serve on")
    parser.add_argument("--name", default="worker", help="the worker's name in logs")
    args = parser.parse_args(argv)
    payload = json.loads(sys.stdin.read())
    settings = Settings.load(None, **payload["settings"])
    logger.remove()
    logger.add(sys.stderr, level="INFO", format=f"{{time:HH:mm:ss.SSS}} | {{level: <7}} | {args.name} | {{message}}")
    server: uvicorn.Server | None = None

    def exit_now() -> None:
        if server is not None:
            server.should_exit = True

    app = create_worker_app(settings, payload.get("local_llm_url"), exit_now, handoff_path(args.socket))
    server = uvicorn.Server(
        uvicorn.Config(app, uds=args.socket, log_level="warning", ws="websockets-sansio", ws_per_message_deflate=False)
    )
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
