"""Real servers on 127.0.0.1 for the tests: the agent's app under uvicorn, sharing the session's runtime.
(`voice-agent serve` as a process of its own, with its workers, is `bench/server_process.py`'s `agent_process`.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from bench.server_process import LocalServer, free_port


@dataclass
class RunningServer(LocalServer):
    app: FastAPI
    server: uvicorn.Server


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[RunningServer]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield RunningServer(app=app, port=port, server=server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def wait_until(condition, timeout_s: float = 10.0, interval_s: float = 0.2) -> None:
    """Like `wait_for`, for an async condition (one that asks a server)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval_s)
