"""Process-wide runtime: everything heavy, loaded and warmed once before the first caller is accepted.

`AgentRuntime.start(settings)` loads Whisper and the TTS voice, picks the LLM provider (Cerebras with a key,
else the embedded llama.cpp server it starts), opens and warms the provider connection, and checks the model.
Every call's pipeline then shares these objects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from loguru import logger

from agent.latency.turns import LatencyBudget
from agent.llm.client import ChatCompletionClient
from agent.llm.local_server import LocalLLMServer
from agent.llm.providers import Provider, cerebras_provider, local_provider, wants_local_llm
from agent.settings import Settings
from agent.speech.voices import Voice, load_voice
from agent.speech.whisper import WhisperTranscriber


@dataclass
class SpeechModels:
    """The local speech models: heavy to load, safe to share between calls and runtimes."""

    transcriber: WhisperTranscriber
    voice: Voice

    @classmethod
    def load(cls, settings: Settings) -> SpeechModels:
        transcriber = WhisperTranscriber(threads=settings.stt_threads)
        transcriber.warm_up()
        return cls(transcriber=transcriber, voice=load_voice(settings.tts_engine))


@dataclass
class AgentRuntime:
    settings: Settings
    transcriber: WhisperTranscriber
    voice: Voice
    llm: ChatCompletionClient

    @property
    def provider(self) -> Provider:
        return self.llm.provider

    @property
    def budget(self) -> LatencyBudget:
        return LatencyBudget(total_ms=self.settings.latency_budget_ms)

    @classmethod
    @asynccontextmanager
    async def start(cls, settings: Settings, speech: SpeechModels | None = None) -> AsyncIterator[AgentRuntime]:
        started = time.perf_counter()
        local_server: LocalLLMServer | None = None
        if wants_local_llm(settings):
            local_server = LocalLLMServer(threads=settings.local_llm_threads, n_ctx=settings.local_llm_ctx)
            provider = local_provider(settings, local_server.base_url)
            server_started = asyncio.create_task(local_server.start())
        else:
            provider = cerebras_provider(settings)
            server_started = None
        try:
            speech = speech or await asyncio.to_thread(SpeechModels.load, settings)
            if server_started:
                await server_started
            llm = ChatCompletionClient(
                provider,
                first_token_timeout_s=settings.llm_first_token_timeout_s,
                idle_timeout_s=settings.llm_stream_idle_timeout_s,
            )
            runtime = cls(settings=settings, transcriber=speech.transcriber, voice=speech.voice, llm=llm)
            try:
                await llm.connect()
                await runtime._warm_llm()
                llm.keep_warm()
                logger.info(f"runtime ready in {time.perf_counter() - started:.1f} s; LLM: {provider.describe()}")
                yield runtime
            finally:
                await llm.aclose()
        finally:
            if server_started and not server_started.done():
                server_started.cancel()
            if local_server:
                await local_server.stop()

    async def _warm_llm(self) -> None:
        """One tiny completion with the real system prompt: primes the server's prompt cache and our pool."""
        messages = [
            {"role": "system", "content": self.settings.system_prompt},
            {"role": "user", "content": "Hi."},
        ]
        async for _ in self.llm.stream(messages, **{self.provider.token_limit_param: 1}):
            pass
