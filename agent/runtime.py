"""Process-wide runtime: everything heavy, loaded and warmed once before the first caller is accepted.

`AgentRuntime.start(settings)` loads Whisper, the turn words model (and Smart Turn, when the end-of-turn rule gives the
voice a weight) and the TTS voice (and synthesises the fixed phrases), builds the provider chain (`LLM_PROVIDER`, then
`LLM_FALLBACKS`; the embedded llama.cpp server is started when `local` is in it), opens and warms each provider's
connection, checks its model, and builds the tool registry. Every call's pipeline then shares these objects.

Start-up is resilient: a provider that is down, overloaded or out of quota at start-up (a 429, a 503, a cut
connection) is logged and the server starts anyway; each turn then fails over along the chain or apologises. Only
a configuration error stops start-up: a rejected key (401/403) or a model the provider does not have, reported as
a `SettingsError` that names the variable; the hosted speech providers (`STT_PROVIDER`, `TTS_PROVIDER`) are checked
the same way, by one websocket handshake each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from loguru import logger
from threadpoolctl import threadpool_limits

from agent.frames import PhraseKind
from agent.latency.turns import LatencyBudget
from agent.llm.client import ChatCompletionClient, ProviderError
from agent.llm.failover import ProviderChain
from agent.llm.local_server import LocalLLMServer
from agent.llm.providers import PLATFORMS, Provider, chain_names, provider_for, wants_local_llm
from agent.settings import Settings, SettingsError
from agent.speech.phrases import Phrase, synthesize_phrases
from agent.speech.providers import check_hosted_speech
from agent.speech.voices import Voice, load_voice
from agent.speech.whisper import WhisperTranscriber
from agent.tools.catalog import build_registry
from agent.tools.registry import ToolRegistry
from agent.turns.decision import RULE
from agent.turns.judge import ProviderJudge
from agent.turns.smart_turn import SmartTurnModel
from agent.turns.vad import silero_session
from agent.turns.words import TurnWordsModel


@dataclass
class SpeechModels:
    """The local speech models: heavy to load, safe to share between calls and runtimes."""

    transcriber: WhisperTranscriber
    voice: Voice
    smart_turn: SmartTurnModel | None  # None when the end-of-turn rule gives the voice no weight
    turn_words: TurnWordsModel
    phrases: dict[PhraseKind, Phrase]  # what the agent says without the LLM, synthesised once

    @classmethod
    def load(cls, settings: Settings) -> SpeechModels:
        # numpy's BLAS (OpenBLAS) splits a product over every core, and its threads then spin, waiting for the next:
        # Whisper's feature extraction alone kept a second core busy through each decode, doubling its CPU time. The
        # products here are small; one thread does them as fast, and the calls in this process share the cores.
        threadpool_limits(1, user_api="blas")
        transcriber = WhisperTranscriber(threads=settings.stt_threads, min_window_s=settings.stt_min_window_ms / 1000)
        transcriber.warm_up()
        silero_session()  # every call's VAD shares it
        voice = load_voice(settings.tts_engine)
        return cls(
            transcriber=transcriber,
            voice=voice,
            smart_turn=SmartTurnModel() if RULE.uses_voice else None,
            turn_words=TurnWordsModel(),
            phrases=synthesize_phrases(voice, settings.acknowledgement),
        )


@dataclass
class AgentRuntime:
    """The shared models, the provider chain and the tools: what every call's pipeline is built from."""

    settings: Settings
    speech: SpeechModels
    chain: ProviderChain
    tools: ToolRegistry

    @property
    def llm(self) -> ChatCompletionClient:
        """The primary provider's client."""
        return self.chain.primary

    @property
    def provider(self) -> Provider:
        return self.llm.provider

    @property
    def judge(self) -> ProviderJudge | None:
        """The provider as the judge of each caller turn (END_OF_TURN_JUDGE=provider), or None."""
        return ProviderJudge.from_settings(self.settings)

    @property
    def system_prompt(self) -> str:
        """SYSTEM_PROMPT, with the turn-completion protocol when the provider judges the turns."""
        return system_prompt_for(self.settings)

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
        names = chain_names(settings)
        if settings.end_of_turn_judge == "provider" and names[0] == "local":
            raise SettingsError(
                "END_OF_TURN_JUDGE=provider needs a remote model as LLM_PROVIDER (the local one cannot judge turns)"
            )
        for name in names:  # a missing key or URL is a settings error before anything heavy is loaded
            if name != "local":
                provider_for(settings, name)
        await check_hosted_speech(settings)
        tools = build_registry(settings)
        local_server = None
        if wants_local_llm(settings) and not local_llm_url:
            local_server = LocalLLMServer(threads=settings.local_llm_threads, n_ctx=settings.local_llm_ctx)
        server_started = asyncio.create_task(local_server.start()) if local_server else None
        clients: dict[str, ChatCompletionClient] = {}
        failures: list[tuple[ChatCompletionClient, ProviderError]] = []

        async def open_provider(name: str, local_url: str = "") -> None:
            client = ChatCompletionClient(
                provider_for(settings, name, local_url),
                first_token_timeout_s=settings.first_token_timeout_s(name),
                idle_timeout_s=settings.llm_stream_idle_timeout_ms / 1000,
            )
            clients[name] = client
            if error := await _open(client, system_prompt_for(settings), primary=name == names[0]):
                failures.append((client, error))

        try:
            for name in names:  # remote providers first: a rejected key stops start-up before models load
                if name != "local":
                    await open_provider(name)
            speech = speech or await asyncio.to_thread(SpeechModels.load, settings)
            if server_started and local_server:
                await server_started
                local_llm_url = local_server.base_url
            if "local" in names:
                await open_provider("local", local_llm_url or "")
                if local_server and (crash := local_server.crash_report()):
                    logger.error(crash)
            chain = ProviderChain([clients[name] for name in names])
            for client, error in failures:
                chain.failed(client, error)
            runtime = cls(settings=settings, speech=speech, chain=chain, tools=tools)
            logger.info(
                f"runtime ready in {time.perf_counter() - started:.1f} s; LLM: {chain.describe()}; "
                f"tools: {', '.join(runtime.tools.names) or 'none'}"
            )
            yield runtime
        finally:
            for client in clients.values():
                await client.aclose()
            if server_started and not server_started.done():
                server_started.cancel()
            if local_server:
                await local_server.stop()


async def check_providers(settings: Settings) -> None:
    """Ask each remote provider of the chain for its models: raises SettingsError for a rejected key or an unknown
    model (a provider that is down is left for the runtime to log), and the hosted speech providers' keys the same
    way. `voice-agent serve` runs it before listening."""
    await check_hosted_speech(settings)
    for name in chain_names(settings):
        if name == "local":
            continue
        client = ChatCompletionClient(provider_for(settings, name))
        try:
            await client.connect()
        except ProviderError as e:
            _raise_if_misconfigured(client, e)
        finally:
            await client.aclose()


def system_prompt_for(settings: Settings) -> str:
    judge = ProviderJudge.from_settings(settings)
    return judge.system_prompt(settings.system_prompt) if judge else settings.system_prompt


async def _open(client: ChatCompletionClient, system_prompt: str, *, primary: bool) -> ProviderError | None:
    """Connect, check the model and warm one provider. A rejected key or an unknown model stops start-up with a
    SettingsError naming the variable; a provider that is merely unavailable is logged and its error returned."""
    client.keep_warm()
    try:
        await client.connect()
        await _warm(client, system_prompt)
    except ProviderError as e:
        _raise_if_misconfigured(client, e)
        role = "primary provider" if primary else "fallback"
        logger.warning(f"LLM {role} {client.provider.describe()} is unavailable at start-up ({e}); serving anyway")
        return e
    return None


def _raise_if_misconfigured(client: ChatCompletionClient, error: ProviderError) -> None:
    """A rejected key or a model the provider does not have: a SettingsError naming the variable to fix."""
    provider = client.provider
    platform = PLATFORMS[provider.name]
    if error.kind == "auth":
        raise SettingsError(f"{platform.key_env} was rejected by {provider.name} ({error})") from None
    if error.kind == "bad_request" and platform.env_prefix:
        raise SettingsError(f"{platform.env_prefix}_MODEL: {error}") from None


async def _warm(client: ChatCompletionClient, system_prompt: str) -> None:
    """One tiny completion with the real system prompt: primes the server's prompt cache and our pool. A failure
    is raised to `_open`, which logs it and serves anyway (a cold local model on a busy machine, a provider down)."""
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": "Hi."}]
    async for _ in client.stream(messages, **{client.provider.token_limit_param: 1}):
        pass
