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
from agent.llm.providers import Provider, cerebras_provider, fallback_provider, local_provider, wants_local_llm
from agent.settings import Settings
from agent.speech.voices import Voice, load_voice
from agent.speech.whisper import WhisperTranscriber


@dataclass
class SpeechModels:
    """The local speech models: heavy to load, safe to share between calls and runtimes."""

    transcriber: WhisperTranscriber
    voice: Voice
    phrases: dict[str, list[bytes]]  # pre-synthesised audio of the phrases said without an LLM

    @classmethod
    def load(cls, settings: Settings) -> SpeechModels:
        transcriber = WhisperTranscriber(threads=settings.stt_threads, window_s=settings.stt_window_ms / 1000)
        transcriber.warm_up()
        voice = load_voice(settings.tts_engine)
        phrases = {text: list(voice.synthesize(text)) for text in filter(None, [settings.acknowledgement])}
        return cls(transcriber=transcriber, voice=voice, phrases=phrases)


@dataclass
class AgentRuntime:
    settings: Settings
    speech: SpeechModels
    llm: ChatCompletionClient
    fallback: ChatCompletionClient | None = None

    @property
    def provider(self) -> Provider:
        return self.llm.provider

    @property
    def budget(self) -> LatencyBudget:
        return LatencyBudget.from_settings(self.settings.latency_budget_ms, self.settings.latency_stage_budgets_ms)

    @classmethod
    @asynccontextmanager
    async def start(
        cls, settings: Settings, speech: SpeechModels | None = None, local_llm_url: str | None = None
    ) -> AsyncIterator[AgentRuntime]:
        """Load, connect and warm everything. With `local_llm_url` (a worker process), the embedded LLM server
        already runs there (one per machine, started by the front process) instead of being started here."""
        started = time.perf_counter()
        # Parsed here too so that a bad LATENCY_STAGE_BUDGETS_MS is a start-up error, not a first-turn one.
        budget = LatencyBudget.from_settings(settings.latency_budget_ms, settings.latency_stage_budgets_ms)
        logger.debug(f"latency budget {budget.total_ms:.0f} ms, stages {budget.allocations_ms}")
        primary_is_local = wants_local_llm(settings)
        local_server = None
        if needs_local_llm(settings) and not local_llm_url:
            local_server = LocalLLMServer(threads=settings.local_llm_threads, n_ctx=settings.local_llm_ctx)
        server_started = asyncio.create_task(local_server.start()) if local_server else None
        clients: list[ChatCompletionClient] = []
        try:
            speech = speech or await asyncio.to_thread(SpeechModels.load, settings)
            if server_started:
                await server_started
            local_url = local_llm_url or (local_server.base_url if local_server else "")
            primary = local_provider(settings, local_url) if primary_is_local else cerebras_provider(settings)
            backup = fallback_provider(settings, local_url)
            for provider in filter(None, [primary, backup]):
                client = ChatCompletionClient(
                    provider,
                    first_token_timeout_s=settings.llm_first_token_timeout_ms / 1000,
                    idle_timeout_s=settings.llm_stream_idle_timeout_ms / 1000,
                )
                clients.append(client)
                await client.connect()
                await _warm(client, settings.system_prompt)
                client.keep_warm()
            runtime = cls(settings=settings, speech=speech, llm=clients[0], fallback=clients[1] if backup else None)
            logger.info(
                f"runtime ready in {time.perf_counter() - started:.1f} s; LLM: {primary.describe()}"
                + (f"; fallback: {backup.describe()}" if backup else "")
            )
            yield runtime
        finally:
            for client in clients:
                await client.aclose()
            if server_started and not server_started.done():
                server_started.cancel()
            if local_server:
                await local_server.stop()


def needs_local_llm(settings: Settings) -> bool:
    """Whether the embedded llama.cpp server must run: as the provider, or as the hedging fallback."""
    return wants_local_llm(settings) or settings.fallback_base_url == "local"


async def _warm(client: ChatCompletionClient, system_prompt: str) -> None:
    """One tiny completion with the real system prompt: primes the server's prompt cache and our pool."""
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": "Hi."}]
    async for _ in client.stream(messages, **{client.provider.token_limit_param: 1}):
        pass
