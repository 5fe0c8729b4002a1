"""`voice-agent serve` as a process of its own (front and workers), as an operator runs it: for the tests that need
real processes and signals, and for the capacity benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from agent.llm.local_server import free_port
from agent.llm.simulator import ProviderSim
from agent.server.machine import process_tree

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Loopback:
    """A server's addresses on 127.0.0.1."""

    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@dataclass
class AgentProcess(Loopback):
    """`voice-agent serve` running as its own process (front + workers), as an operator runs it."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=5) as client:
            return await client.get(f"{self.http}{path}")

    def workers(self) -> list[int]:
        """The pids of the worker processes (the front's children that run `agent.server.worker`)."""
        return [pid for pid in process_tree(self.process.pid) if "agent.server.worker" in cmdline(pid)]

    async def exited(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not exit within {timeout_s:.0f} s:\n{self.log()[-3000:]}")
            await asyncio.sleep(0.1)
        return self.process.returncode


def on_simulator(sim: ProviderSim, settings: dict[str, str] | None = None) -> dict[str, str]:
    """A server's settings with the provider simulator (Cerebras' wire format) as its LLM, plus `settings`."""
    llm = {"LLM_PROVIDER": "cerebras", "CEREBRAS_API_KEY": sim.api_key, "CEREBRAS_BASE_URL": sim.base_url}
    return {**llm, **(settings or {})}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@asynccontextmanager
async def agent_process(
    tmp_path: Path,
    env: dict[str, str],
    port: int | None = None,
    start_timeout_s: float = 240.0,
    root: Path = ROOT,
) -> AsyncIterator[AgentProcess]:
    """Start `python -m agent.cli serve` (the code of the checkout at `root`, by default this one) with `env` as its
    settings, in `tmp_path` (no stray .env); wait until it serves /health. On exit: SIGTERM (a drain), then SIGKILL
    if it lingers."""
    port = port or free_port()
    log_path = tmp_path / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "serve", "--port", str(port)],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(root), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = AgentProcess(process=process, port=port, log_path=log_path)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited at start-up:\n{server.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not start in {start_timeout_s:.0f} s:\n{server.log()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await server.get("/health")).status_code == 200:
                    break
            await asyncio.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await server.exited(30)
            except AssertionError:
                for pid in reversed(process_tree(process.pid)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.wait()
