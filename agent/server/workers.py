"""The worker pool: N warm worker processes (`worker.py`), one call each at a time, each given its call's
connection (`handoff.py`) once the front has checked and admitted it.

Each worker loads its models once, before its first call, and is reused warm (the server serves once one worker per
core is warm; the rest of the pool warms up behind them); a worker that dies (crash, OOM
kill) is replaced, and the call it was running ends with its socket closed (1011). The embedded llama.cpp
server, when the settings ask for it, runs once per machine, started here and shared by every worker.

The caller's websocket is handed over whole: the worker reads and writes the caller's socket itself (no relay in
between: README, "CPU per call"), and the front waits for the worker to say the call is over, or to die (the
caller then gets 1011 from the front). Each call's Whisper, TTS and event loop run in a process of its own, so one
call's work never stalls another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import websockets
from fastapi import WebSocket
from loguru import logger
from pydantic import SecretStr

from agent.latency.observer import TurnListener
from agent.llm.local_server import LocalLLMServer
from agent.llm.providers import wants_local_llm
from agent.protocols.websocket_transport import close_if_open
from agent.server.calls import PhoneCall, ViolationListener
from agent.server.handoff import HANDOFF, DetachedSocket, Handoff, handoff_path, send_handoff
from agent.server.machine import process_cpu_seconds
from agent.server.metrics import ProviderReading, combine_readings
from agent.settings import Settings

START_TIMEOUT_S = 180.0  # loading and warming the models on a busy 2-core machine
START_ATTEMPTS = 3
RETRY_REPLACE_S = 30.0  # a replacement that failed START_ATTEMPTS times is tried again after this
ACQUIRE_TIMEOUT_S = 30.0  # an admitted call waits this long for a worker (a crashed one being replaced)
HANDOFF_TIMEOUT_S = 2.0
IDLE_TIMEOUT_S = 15.0  # after its call's socket closed, a worker has this long to say it is idle again


class WorkerUnavailable(Exception):
    """No worker could take an admitted call."""


@dataclass
class Worker:
    """One worker process as the front sees it."""

    name: str
    socket_path: str
    process: asyncio.subprocess.Process
    control: websockets.ClientConnection
    handoff: socket.socket  # the channel calls are handed over on
    state: str = "idle"  # idle | busy | dead
    calls: int = 0
    on_turn: TurnListener | None = None
    on_violation: ViolationListener | None = None
    providers: tuple[float, list[ProviderReading]] = (0.0, [])  # (time.monotonic(), readings) as last sent
    idle_again: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: asyncio.Task[None] | None = None


def worker_settings_payload(settings: Settings, local_llm_url: str | None) -> bytes:
    """The settings a worker is started with (secrets in clear: they go through a pipe, never argv or logs)."""
    values = {
        name: value.get_secret_value() if isinstance(value, SecretStr) else value
        for name, value in settings.model_dump().items()
    }
    return json.dumps({"settings": values, "local_llm_url": local_llm_url}).encode()


class WorkerPool:
    """`WORKERS` warm worker processes; implements `CallRunner` (see `calls.py`)."""

    def __init__(self, settings: Settings, local_llm_url: str | None = None) -> None:
        self.settings = settings
        self.size = settings.worker_count
        self._payload = worker_settings_payload(settings, local_llm_url)
        self._dir = tempfile.mkdtemp(prefix="voice-agent-workers-")  # mode 0700: only this user reaches the sockets
        self._workers: dict[str, Worker] = {}
        self._changed = asyncio.Condition()
        self._stopping = False
        self._spawned = 0
        self._describe: dict[str, Any] = {}
        self._respawns: set[asyncio.Task[None]] = set()
        self._retired: list[ProviderReading] = []  # provider failures counted by workers that have died
        # Loading models is CPU-bound: starting more workers at once than there are cores only makes each slower.
        self._starting = asyncio.Semaphore(os.cpu_count() or 1)

    @classmethod
    @asynccontextmanager
    async def start(cls, settings: Settings) -> AsyncIterator[WorkerPool]:
        """The local LLM server (if the settings need it), then every worker, ready; all stopped on exit."""
        local = LocalLLMServer(threads=settings.local_llm_threads, n_ctx=settings.local_llm_ctx)
        local_needed = wants_local_llm(settings)
        if local_needed:
            await local.start()
        pool = cls(settings, local.base_url if local_needed else None)
        try:
            started = time.perf_counter()
            first = min(pool.size, os.cpu_count() or 1)  # enough to serve; the rest warm up behind them
            failures = [
                e for e in await asyncio.gather(*(pool._spawn() for _ in range(first)), return_exceptions=True) if e
            ]
            if failures:
                raise failures[0]
            for _ in range(pool.size - first):
                pool._start_in_background()
            later = f"; {pool.size - first} more warming up" if pool.size > first else ""
            logger.info(f"{first} workers ready in {time.perf_counter() - started:.1f} s{later}")
            yield pool
        finally:
            await pool.stop()
            if local_needed:
                await local.stop()

    # -- CallRunner ------------------------------------------------------------------------------
    def idle(self) -> int:
        return sum(1 for w in self._workers.values() if w.state == "idle")

    def describe(self) -> dict[str, Any]:
        return {
            **self._describe,
            "workers": self.size,
            "workers_alive": len(self._workers),
            "workers_idle": self.idle(),
        }

    def calls_cpu_seconds(self) -> dict[str, float]:
        """Each ready worker's CPU seconds so far, by name (a worker only works on a call: idle, it sleeps)."""
        return {w.name: process_cpu_seconds(w.process.pid) for w in self._workers.values()}

    def providers(self) -> list[ProviderReading]:
        """Every worker's last word on the providers, as one (see `combine_readings`)."""
        snapshots = [w.providers for w in self._workers.values()] + [(0.0, self._retired)]
        return combine_readings(snapshots, time.monotonic())

    async def run_browser(self, websocket: WebSocket, on_turn: TurnListener, on_violation: ViolationListener) -> None:
        await self._run(websocket, "/ws", "", [], on_turn, on_violation)

    async def run_phone(
        self, websocket: WebSocket, call: PhoneCall, on_turn: TurnListener, on_violation: ViolationListener
    ) -> None:
        query = urlencode({"greeting": call.greeting}) if call.greeting else ""
        path, opening = f"/phone/{call.opening.carrier}", call.opening.messages
        await self._run(websocket, path, query, opening, on_turn, on_violation)

    async def end_all(self) -> None:
        for worker in list(self._workers.values()):
            if worker.state == "busy":
                with contextlib.suppress(websockets.ConnectionClosed):
                    await worker.control.send(json.dumps({"type": "end_call"}))

    # -- calls -----------------------------------------------------------------------------------
    async def _run(
        self,
        client: WebSocket,
        path: str,
        query: str,
        opening: Sequence[str],
        on_turn: TurnListener,
        on_violation: ViolationListener,
    ) -> None:
        try:
            worker = await self._acquire()
        except WorkerUnavailable as e:
            logger.error(f"workers: {e}; closing the call")
            await close_if_open(client, 1013)
            return
        worker.on_turn, worker.on_violation = on_turn, on_violation
        try:
            detach = client.scope.get("extensions", {}).get(HANDOFF)
            detached: DetachedSocket | None = detach() if detach else None
            if detached is None:  # the caller is hanging up already (or this is not `voice-agent serve`'s server)
                logger.warning(f"workers: the caller's connection to {path} could not be handed over; call ended")
                await close_if_open(client, 1011)
                return
            messages = [*opening, *detached.messages]
            handoff = Handoff.of(path, query, client.scope.get("client"), messages, detached.unread)
            await _hand_over(worker, detached, handoff)
        finally:
            await self._finished(worker)

    async def _acquire(self) -> Worker:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(self._idle_worker), ACQUIRE_TIMEOUT_S)
            except TimeoutError:
                raise WorkerUnavailable(f"no idle worker within {ACQUIRE_TIMEOUT_S:.0f} s") from None
            worker = self._idle_worker()
            assert worker is not None
            worker.state = "busy"
            worker.idle_again.clear()
            return worker

    def _idle_worker(self) -> Worker | None:
        idle = [w for w in self._workers.values() if w.state == "idle"]
        return min(idle, key=lambda w: w.calls) if idle else None

    async def _finished(self, worker: Worker) -> None:
        """The call's socket closed; the worker is idle again once its pipeline has wound down (it says so)."""
        try:
            await asyncio.wait_for(worker.idle_again.wait(), IDLE_TIMEOUT_S)
        except TimeoutError:
            logger.error(f"workers: {worker.name} did not wind its call down in {IDLE_TIMEOUT_S:.0f} s; replacing it")
            worker.process.kill()
            return
        worker.calls += 1
        worker.on_turn = worker.on_violation = None
        if worker.state == "busy":
            async with self._changed:
                worker.state = "idle"
                self._changed.notify_all()

    # -- processes -------------------------------------------------------------------------------
    async def _spawn(self) -> None:
        """Start one worker; a worker that fails while starting (its warm-up timed out on a busy machine, say)
        is tried again, up to START_ATTEMPTS times."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                async with self._starting:
                    await self._start_worker()
                return
            except RuntimeError as e:
                if attempt == START_ATTEMPTS or self._stopping:
                    raise
                logger.warning(f"workers: {e}; trying again ({attempt}/{START_ATTEMPTS})")
                await asyncio.sleep(1.0)

    async def _start_worker(self) -> None:
        self._spawned += 1
        name = f"worker-{self._spawned}"
        path = os.path.join(self._dir, f"{name}.sock")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.server.worker", "--socket", path, "--name", name,
            stdin=asyncio.subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C goes to the front, which drains, then stops the workers
        )  # fmt: skip
        assert process.stdin is not None
        process.stdin.write(self._payload)
        await process.stdin.drain()
        process.stdin.close()
        control = await self._connect(name, path, process)
        ready = json.loads(await control.recv())
        self._describe = {"provider": ready.get("provider"), "model": ready.get("model")}
        handoff = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        handoff.settimeout(HANDOFF_TIMEOUT_S)  # a handoff is a small local write; a worker too stuck to read fails
        handoff.connect(handoff_path(path))  # the worker listens on it before it says it is ready
        worker = Worker(name=name, socket_path=path, process=process, control=control, handoff=handoff)
        worker.watcher = asyncio.create_task(self._watch(worker))
        async with self._changed:
            self._workers[name] = worker
            self._changed.notify_all()
        logger.info(f"workers: {name} (pid {process.pid}) ready")

    async def _connect(self, name: str, path: str, process: asyncio.subprocess.Process) -> websockets.ClientConnection:
        """The worker listens once its models are loaded: connecting succeeds exactly when it is ready."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode} while starting")
            try:
                return await websockets.unix_connect(path, "ws://worker/control", max_size=None, ping_interval=None)
            except (OSError, websockets.WebSocketException):
                await asyncio.sleep(0.1)
        process.kill()
        raise RuntimeError(f"{name} was not ready within {START_TIMEOUT_S:.0f} s")

    async def _watch(self, worker: Worker) -> None:
        """Reads the worker's control line until it closes; then the worker is dead and gets replaced."""
        try:
            async for raw in worker.control:
                message = json.loads(raw)
                if message["type"] == "turn" and worker.on_turn is not None:
                    result = worker.on_turn(message["event"], message["report"])
                    if result is not None:
                        await result
                elif message["type"] == "violation" and worker.on_violation is not None:
                    worker.on_violation(message["reason"])
                elif message["type"] == "providers":
                    worker.providers = (message["at"], [ProviderReading(**r) for r in message["readings"]])
                elif message["type"] == "idle":
                    worker.idle_again.set()
        except websockets.ConnectionClosed:
            pass
        except Exception:
            logger.exception(f"workers: bad message from {worker.name}")
        await self._lost(worker)

    async def _lost(self, worker: Worker) -> None:
        async with self._changed:
            worker.state = "dead"
            self._workers.pop(worker.name, None)
            self._changed.notify_all()
        failures = [ProviderReading(r.name, failures=r.failures) for r in worker.providers[1]]
        self._retired = combine_readings([(0.0, self._retired), (0.0, failures)], 0.0)
        worker.handoff.close()
        worker.idle_again.set()
        if self._stopping:
            return
        with contextlib.suppress(ProcessLookupError):
            worker.process.kill()
        code = await worker.process.wait()
        logger.error(f"workers: {worker.name} (pid {worker.process.pid}) died with code {code}; starting another")
        self._start_in_background()

    def _start_in_background(self) -> None:
        task = asyncio.create_task(self._replace())
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _replace(self) -> None:
        """Start a worker (in place of a dead one, or one warming up behind the first); if it will not start, keep
        trying (the pool runs short meanwhile, and admission counts only the workers that are there)."""
        while not self._stopping:
            try:
                await self._spawn()
                return
            except RuntimeError as e:
                logger.error(f"workers: no replacement worker ({e}); trying again in {RETRY_REPLACE_S:.0f} s")
                await asyncio.sleep(RETRY_REPLACE_S)

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._respawns):
            task.cancel()
        workers = list(self._workers.values())
        for worker in workers:
            worker.handoff.close()
            await worker.control.close()  # the worker exits when its control line closes
        for worker in workers:
            try:
                await asyncio.wait_for(worker.process.wait(), 10)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
            if worker.watcher:
                worker.watcher.cancel()
        shutil.rmtree(self._dir, ignore_errors=True)


async def _hand_over(worker: Worker, detached: DetachedSocket, handoff: Handoff) -> None:
    """Give the worker the caller's connection, then wait for the call to end: the worker says so (its close frame
    sent), dies (the front closes with 1011), or the server stops before it could (1012)."""
    try:
        send_handoff(worker.handoff, handoff, detached.fileno())
    except OSError as e:  # stuck (a small local write timed out) or gone; a half-sent handoff spoils its channel
        logger.error(f"workers: {worker.name} could not take its call ({e}); replacing it")
        detached.close(1011)
        with contextlib.suppress(ProcessLookupError):
            worker.process.kill()
        return
    logger.info(f"workers: {worker.name} has the caller's connection")
    stopping = asyncio.create_task(detached.server_stopping.wait())
    over = asyncio.create_task(worker.idle_again.wait())
    try:
        await asyncio.wait({stopping, over}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        over.cancel()
    if worker.state == "dead":
        detached.close(1011)
    elif not worker.idle_again.is_set():
        detached.close(1012)
    else:
        detached.release()
