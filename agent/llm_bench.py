"""`voice-agent bench-llm`: how fast each configured LLM provider starts talking, and what that means for a call.

For each provider (the chain from `LLM_PROVIDER`/`LLM_FALLBACKS`, or `--providers`), N short voice prompts go out
one after another over the warm pooled connection, and each answer is timed: time to the first spoken token
(reasoning is not speech), output tokens per second, and time to the first speakable clause (what this pipeline
hands to TTS first: `ClauseSplitter` in `agent/speech/clauses.py`). `--offline` runs the same against the provider
simulator, one per platform, answering at each platform's published gpt-oss-120b speed (Cerebras ~3000 tokens/s,
SambaNova ~600, Groq ~476, an NVIDIA H100 server ~280) after a 200 ms first token.

The what-if table combines those published speeds with this pipeline's own stages, measured here (Whisper on a
synthesised question, the TTS voice's first audio for a clause) or given with `--stt-ms`/`--tts-ms`, to predict the
voice-to-voice time on each platform:

    vad_stop (VAD_STOP_MS + ~100 ms Silero smoothing) + stt + max(end-of-turn rest, LLM first token)
    + first clause at the platform's speed + tts

where the end-of-turn rest is what remains of END_OF_TURN_MIN_MS after STT; with SPECULATE the request already
runs during that rest, so only the part of the first-token time that sticks out of it counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from agent.llm.client import ChatCompletionClient, ProviderError, StreamStats
from agent.llm.local_server import LocalLLMServer
from agent.llm.providers import PLATFORMS, Provider, chain_names, provider_for
from agent.llm.simulator import ProviderSim
from agent.runtime import SpeechModels
from agent.settings import Settings
from agent.speech.clauses import ClauseSplitter

PROMPTS = [
    "What time do you open tomorrow?",
    "Can I book a table for two tonight?",
    "Do you have vegetarian dishes?",
    "Where are you located?",
    "Is there parking nearby?",
    "How late is the kitchen open?",
    "Can I bring my dog?",
    "Do you take card payments?",
    "Is it quiet enough for a meeting?",
    "What's the soup of the day?",
]
SILERO_SMOOTHING_MS = 100.0  # measured: the VAD lets go ~100 ms after VAD_STOP_MS (README, Latency)
ASSUMED_FIRST_TOKEN_MS = 200.0  # network + prefill where no provider was measured (Cerebras' published figure)
# Offline: which wire format plays which platform of the race, at its published speed.
OFFLINE = {"cerebras": "cerebras", "sambanova": "sambanova", "groq": "groq", "openai": "openai"}
SIM_ANSWER = (
    "Sure, we open at nine tomorrow morning, and the kitchen runs until ten at night. "
    "Would you like me to book you a table while we are talking?"
)


@dataclass
class Sample:
    first_token_ms: float | None
    first_clause_ms: float | None
    tokens_per_s: float | None
    clause_tokens: int | None
    error: str = ""


@dataclass
class ProviderResult:
    provider: str
    model: str
    samples: list[Sample] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def pick(name: str) -> list[float]:
            return [v for s in self.samples if (v := getattr(s, name)) is not None]

        return {
            "provider": self.provider,
            "model": self.model,
            "answered": sum(not s.error for s in self.samples),
            "asked": len(self.samples),
            "first_token_ms": percentiles(pick("first_token_ms")),
            "first_clause_ms": percentiles(pick("first_clause_ms")),
            "tokens_per_s": percentiles(pick("tokens_per_s")),
            "clause_tokens": percentiles([float(v) for v in pick("clause_tokens")]),
            "errors": sorted({s.error for s in self.samples if s.error}),
        }


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 1), "p95": round(p95, 1)}


async def measure_answer(client: ChatCompletionClient, messages: list[dict[str, Any]], settings: Settings) -> Sample:
    """One completion, timed: first spoken token, first clause ready for TTS, output speed."""
    stats = StreamStats()
    clauses = ClauseSplitter(
        min_clause_words=settings.first_clause_min_words, max_first_words=settings.first_clause_max_words
    )
    first_clause_s: float | None = None
    content_chunks = clause_tokens = 0
    try:
        async for chunk in client.stream(messages, stats):
            if not chunk.content:
                continue
            content_chunks += 1
            if first_clause_s is None and clauses.add(chunk.content):
                first_clause_s = time.perf_counter() - stats.started
                clause_tokens = content_chunks
    except ProviderError as e:
        return Sample(None, None, None, None, error=e.kind)
    ended_s = time.perf_counter() - stats.started
    if first_clause_s is None and content_chunks:  # a one-clause answer: the whole of it is the first clause
        first_clause_s, clause_tokens = ended_s, content_chunks
    tokens = (stats.usage or {}).get("completion_tokens") or content_chunks
    writing_s = ended_s - (stats.first_token_s or ended_s)
    return Sample(
        first_token_ms=None if stats.first_content_s is None else stats.first_content_s * 1000,
        first_clause_ms=None if first_clause_s is None else first_clause_s * 1000,
        tokens_per_s=tokens / writing_s if writing_s > 0 and tokens > 1 else None,
        clause_tokens=clause_tokens or None,
    )


async def bench_provider(provider: Provider, settings: Settings, prompts: list[str]) -> ProviderResult:
    client = ChatCompletionClient(
        provider, first_token_timeout_s=settings.first_token_timeout_s(provider.name), idle_timeout_s=10.0
    )
    result = ProviderResult(provider.name, provider.model)
    system = {"role": "system", "content": settings.system_prompt}
    try:
        await client.connect()
        await measure_answer(client, [system, {"role": "user", "content": "Hi."}], settings)  # warm, not counted
        for prompt in prompts:
            result.samples.append(await measure_answer(client, [system, {"role": "user", "content": prompt}], settings))
    except ProviderError as e:
        result.samples.append(Sample(None, None, None, None, error=f"{e.kind}: {e}"))
    finally:
        await client.aclose()
    return result


@asynccontextmanager
async def offline_providers(settings: Settings, first_token_ms: float) -> AsyncIterator[list[Provider]]:
    """One simulator per platform of the race, each answering at that platform's published speed."""
    sims = []
    try:
        providers = []
        for name, wire in OFFLINE.items():
            speed = PLATFORMS[name].published_tokens_per_s or 280.0
            sim = ProviderSim(wire=wire, first_token_s=first_token_ms / 1000, tokens_per_s=speed, answer=SIM_ANSWER)
            sims.append(sim.start())
            prefix = PLATFORMS[name].env_prefix.lower()
            simulated = settings.model_copy(
                update={
                    f"{prefix}_api_key": SecretStr(sim.api_key),
                    f"{prefix}_base_url": sim.base_url,
                    f"{prefix}_model": sim.models[0],
                }
            )
            providers.append(provider_for(simulated, name))
        yield providers
    finally:
        for sim in sims:
            sim.stop()


@asynccontextmanager
async def configured_providers(settings: Settings, names: list[str]) -> AsyncIterator[list[Provider]]:
    async with AsyncExitStack() as stack:
        local_url = ""
        if "local" in names:
            server = LocalLLMServer(threads=settings.local_llm_threads, n_ctx=settings.local_llm_ctx)
            await server.start()
            stack.push_async_callback(server.stop)
            local_url = server.base_url
        yield [provider_for(settings, name, local_url) for name in names]


def measure_speech_stages(settings: Settings) -> tuple[float, float]:
    """(STT ms, TTS ms) on this machine: Whisper on a synthesised question, the voice's first audio for a clause
    (medians of three, after a warm-up)."""
    speech = SpeechModels.load(settings.model_copy(update={"acknowledgement": ""}))
    voice = speech.voice
    question = b"".join(voice.synthesize("Can I book a table for two tonight?"))
    stt, tts = [], []
    for _ in range(4):
        started = time.perf_counter()
        speech.transcriber.transcribe(question, voice.sample_rate)
        stt.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        next(iter(voice.synthesize("Sure, we open at nine,")))
        tts.append((time.perf_counter() - started) * 1000)
    return statistics.median(stt[1:]), statistics.median(tts[1:])


def what_if(settings: Settings, stt_ms: float, tts_ms: float, measured: dict[str, dict[str, Any]]) -> list[dict]:
    """Predicted voice-to-voice per platform of the race, from its published speed and this pipeline's stages."""
    vad_stop = settings.vad_stop_ms + SILERO_SMOOTHING_MS
    rest = max(0.0, settings.end_of_turn_min_ms - stt_ms)
    clause_tokens = statistics.median(
        [s["clause_tokens"]["p50"] for s in measured.values() if s["clause_tokens"]["p50"]] or [8.0]
    )
    rows = []
    for name in ("cerebras", "sambanova", "groq", "openai"):
        platform = PLATFORMS[name]
        speed = platform.published_tokens_per_s or 280.0
        first_token = (measured.get(name) or {}).get("first_token_ms", {}).get("p50") or ASSUMED_FIRST_TOKEN_MS
        llm_wait = max(rest, first_token) if settings.speculate else rest + first_token
        clause = clause_tokens / speed * 1000
        rows.append({
            "platform": "NVIDIA H100 server" if name == "openai" else platform.label,
            "tokens_per_s": speed,
            "first_token_ms": round(first_token),
            "first_clause_ms": round(clause, 1),
            "voice_to_voice_ms": round(vad_stop + stt_ms + llm_wait + clause + tts_ms),
        })  # fmt: skip
    return rows


def print_report(report: dict[str, Any]) -> None:
    def cell(stat: dict[str, float | None], key: str) -> str:
        return "-" if stat[key] is None else f"{stat[key]:.0f}"

    print("| provider | model | answered | first token p50 / p95 ms | tokens/s p50 | first clause p50 / p95 ms |")
    print("|---|---|---|---|---|---|")
    for r in report["providers"]:
        errors = f" ({', '.join(r['errors'])})" if r["errors"] else ""
        print(
            f"| {r['provider']} | {r['model']} | {r['answered']}/{r['asked']}{errors} | "
            f"{cell(r['first_token_ms'], 'p50')} / {cell(r['first_token_ms'], 'p95')} | "
            f"{cell(r['tokens_per_s'], 'p50')} | "
            f"{cell(r['first_clause_ms'], 'p50')} / {cell(r['first_clause_ms'], 'p95')} |"
        )
    stages = report["stages_ms"]
    print(
        f"\nWhat if (stages here: vad_stop {stages['vad_stop']:.0f} ms, stt {stages['stt']:.0f} ms "
        f"[{stages['source']}], end-of-turn min {stages['end_of_turn_min']:.0f} ms, tts {stages['tts']:.0f} ms, "
        f"speculation {'on' if stages['speculate'] else 'off'}):\n"
    )
    print("| platform | published tokens/s | first token ms | first clause ms | predicted voice-to-voice ms |")
    print("|---|---|---|---|---|")
    for row in report["what_if"]:
        print(
            f"| {row['platform']} | {row['tokens_per_s']:.0f} | {row['first_token_ms']} | "
            f"{row['first_clause_ms']:.1f} | **{row['voice_to_voice_ms']}** |"
        )


async def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[: args.prompts]
    if args.offline:
        source = offline_providers(settings, args.first_token_ms)
    else:
        source = configured_providers(settings, args.providers or chain_names(settings))
    async with source as providers:
        results = [await bench_provider(p, settings, prompts) for p in providers]
    summaries = [r.summary() for r in results]
    if args.stt_ms is not None and args.tts_ms is not None:
        stt_ms, tts_ms, origin = args.stt_ms, args.tts_ms, "given"
    else:
        measured_stt, measured_tts = await asyncio.to_thread(measure_speech_stages, settings)
        stt_ms = measured_stt if args.stt_ms is None else args.stt_ms
        tts_ms = measured_tts if args.tts_ms is None else args.tts_ms
        origin = "measured"
    return {
        "offline": args.offline,
        "prompts": len(prompts),
        "providers": summaries,
        "stages_ms": {
            "vad_stop": settings.vad_stop_ms + SILERO_SMOOTHING_MS,
            "stt": stt_ms,
            "end_of_turn_min": settings.end_of_turn_min_ms,
            "tts": tts_ms,
            "speculate": settings.speculate,
            "source": origin,
        },
        "what_if": what_if(settings, stt_ms, tts_ms, {s["provider"]: s for s in summaries}),
        "samples": {r.provider: [asdict(s) for s in r.samples] for r in results},
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--offline", action="store_true", help="bench the provider simulator at published speeds")
    parser.add_argument("--providers", nargs="+", choices=list(PLATFORMS), help="providers to bench (default: chain)")
    parser.add_argument("--prompts", type=int, default=10, help="short voice prompts per provider (default 10)")
    parser.add_argument("--first-token-ms", type=float, default=ASSUMED_FIRST_TOKEN_MS, help="offline first token")
    parser.add_argument("--stt-ms", type=float, help="STT stage time to use instead of measuring it")
    parser.add_argument("--tts-ms", type=float, help="TTS stage time to use instead of measuring it")
    parser.add_argument("--json", type=Path, help="write the full report (every sample) here")


def main(settings: Settings, args: argparse.Namespace) -> int:
    if args.prompts < 1:
        raise ValueError("--prompts must be at least 1")
    report = asyncio.run(run(settings, args))
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if all(p["answered"] for p in report["providers"]) else 1
