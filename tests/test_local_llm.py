"""The embedded llama.cpp server: it answers a completion, answers requests that overlap (two calls, or a
speculative request next to a confirmed one) each to its end, and a crash is reported with its cause."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest

from agent.llm.client import ChatCompletionClient
from agent.llm.local_server import PORTABLE_BUILD_HINT, LocalLLMServer
from agent.llm.providers import LOCAL_MODEL_NAME, provider_for
from tests.conftest import local_settings

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


async def test_overlapping_requests_are_each_answered_to_the_end():
    """llama-cpp-python's server, by default, cuts the answer it is streaming short when another request arrives
    (`interrupt_requests`): one call's answer broken off by another's question, heard as an apology."""
    async with LocalLLMServer(n_ctx=1024) as server:
        provider = provider_for(local_settings(), "local", server.base_url)
        client = ChatCompletionClient(provider, first_token_timeout_s=60, idle_timeout_s=60)

        async def answer(question: str) -> str | None:
            finish = None
            async for chunk in client.stream([{"role": "user", "content": question}], max_tokens=24):
                finish = chunk.finish_reason or finish
            return finish

        try:
            first = asyncio.create_task(answer("Tell me about the sea."))
            await asyncio.sleep(0.3)  # the first is streaming when the second arrives
            finishes = await asyncio.gather(first, answer("And the mountains?"))
        finally:
            await client.aclose()
    assert all(finishes), finishes
