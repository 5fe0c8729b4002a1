"""Stopping without cutting anyone off: SIGTERM (or Ctrl-C) starts a drain instead of uvicorn's immediate shutdown,
which would close every call's websocket with 1012 mid-sentence.

The drain: stop admitting (`GET /ready` turns 503, so load balancers move new calls elsewhere; phone calls already
reserved at the webhook are still taken), let live calls finish for up to `DRAIN_GRACE_SECONDS`, then say goodbye
on each one left and end it, and only then let uvicorn shut down. A second signal skips the rest of the grace
period (goodbyes are still said); a third exits at once.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI
from loguru import logger

from agent.server.admission import Admission
from agent.server.calls import CallRunner

GOODBYE_WAIT_S = 20.0  # for the goodbye to be spoken and the calls to close


async def drain(admission: Admission, calls: CallRunner, grace_s: float, hurry: asyncio.Event) -> None:
    """Stop admitting, wait for live (and reserved) calls up to `grace_s` or until `hurry` is set, then end the
    remaining ones with the drain goodbye (`agent/speech/phrases.py`)."""
    admission.start_drain()
    logger.info(f"draining: {admission.active} live calls, up to {grace_s:.0f} s to finish")
    deadline = time.monotonic() + grace_s
    while (admission.active or admission.reserved) and time.monotonic() < deadline and not hurry.is_set():
        await asyncio.sleep(0.2)
    if admission.active:
        logger.info(f"draining: ending {admission.active} calls with a goodbye")
        await calls.end_all()
        deadline = time.monotonic() + GOODBYE_WAIT_S
        while admission.active and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    logger.info("drained")


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with SIGTERM/SIGINT starting the drain (`drain` above) instead of the shutdown.

    `app.state` must hold `admission`, `calls` and `settings` (the app's lifespan sets `calls`)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app
        self._signals = 0
        self._hurry = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._signals += 1
        name = signal.Signals(sig).name
        if self._loop is None or not self.started or self._signals > 2:
            logger.warning(f"{name}: exiting now")
            super().handle_exit(sig, frame)
            self.force_exit = self._signals > 2
        elif self._signals == 2:
            logger.warning(f"{name} again: ending the live calls now")
            self._loop.call_soon_threadsafe(self._hurry.set)
        else:
            logger.info(f"{name}: draining before exit")
            self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        state = self.app.state
        self._drain = asyncio.create_task(
            drain(state.admission, state.calls, state.settings.drain_grace_seconds, self._hurry)
        )
        self._drain.add_done_callback(lambda _: setattr(self, "should_exit", True))
