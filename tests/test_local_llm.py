"""The embedded llama.cpp server: it answers a completion, and a crash is reported with its cause."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest

from agent.llm.local_server import PORTABLE_BUILD_HINT, LocalLLMServer
from agent.llm.providers import LOCAL_MODEL_NAME

pytestmark = pytest.mark.process


async def test_the_local_server_answers_and_a_crash_names_its_cause():
    async with LocalLLMServer(n_ctx=512) as server:
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(
                f"{server.base_url}/chat/completions",
                json={"model": LOCAL_MODEL_NAME, "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 8},
            )
        # A llama.cpp built for this CPU's AMX dies here with SIGSEGV: the install must build it portable.
        assert server.crash_report() is None, server.crash_report()
        assert response.json()["choices"][0]["message"]["content"].strip()

        assert server.pid is not None
        os.kill(server.pid, signal.SIGSEGV)
        for _ in range(100):
            if report := server.crash_report():
                break
            await asyncio.sleep(0.05)
        assert report is not None and "segmentation fault" in report and PORTABLE_BUILD_HINT in report
