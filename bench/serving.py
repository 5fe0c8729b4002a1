"""Real servers on 127.0.0.1 for the tests and the benchmarks: the agent's app under uvicorn (with `serve`'s
websocket frame limit), sharing the caller's runtime. (`voice-agent serve` as a process of its own, with its
workers, is `server_process.py`'s `agent_process`.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from agent.server.access_log import log_config
from agent.server.app import MAX_WEBSOCKET_MESSAGE_BYTES
from bench.server_process import Loopback, free_port


@dataclass
class RunningServer(Loopback):
    app: FastAPI
    server: uvicorn.Server


@asynccontextmanager
async def serving(app: FastAPI, port: int | None = None, *, logged: bool = False) -> AsyncIterator[RunningServer]:
    """`app` under uvicorn on 127.0.0.1 (on `port`, when the app must know its own address beforehand); `logged`:
    with `serve`'s request log, as an operator runs it."""
    port = port or free_port()
    logs = {"log_level": "info", "log_config": log_config()} if logged else {"log_level": "warning"}
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ws="websockets", ws_max_size=MAX_WEBSOCKET_MESSAGE_BYTES, **logs
    )
    server = uvicorn.Server(config)
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
