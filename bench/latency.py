"""Voice-to-voice benchmark: this pipeline against a vanilla pipecat one (`bench/vanilla.py`), same models, same
LLM server, on the fixture recordings replayed in real time, alternating, several rounds.

The number is measured from outside both pipelines, as a caller hears it: from the end of each utterance in the
recording (by energy) to the first audible sound of the reply in the recorded output. Stage medians come from the
turn timelines (`agent/latency`). LLM servers: the embedded local model, and the provider simulator answering at
each platform's published speed for gpt-oss-120b.

    python -m bench.latency                      # every platform, 3 rounds
    python -m bench.latency --platforms local cerebras --rounds 2 --json bench.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loguru import logger
from pydantic import SecretStr

from agent.latency.turns import STAGES, summarize
from agent.llm.simulator import ProviderSim
from agent.phone_client import pair_replies
from agent.runtime import AgentRuntime, SpeechModels
from agent.settings import Settings
from agent.speech.energy import speech_spans
from bench.vanilla import build_vanilla_call
from pipelines.replay import read_call_wav, replay_call
from pipelines.voice import build_voice_call

# Published output speeds for gpt-oss-120b (tokens/s); first token assumed 200 ms everywhere (network + prefill),
# so the platforms differ only in how fast the answer is written.
PLATFORMS: dict[str, tuple[float, float] | None] = {
    "local": None,  # SmolLM2-135M via llama.cpp on this machine
    "cerebras": (0.2, 3000.0),
    "sambanova": (0.2, 600.0),
    "groq": (0.2, 476.0),
    "h100": (0.2, 280.0),
}
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
UTTERANCES = ["ill_disposed.wav", "ten_of_clubs.wav", "amiable.wav", "five_five.wav", "eight_of_spades.wav"]
ANSWER = "Sure, that is an easy one. Here is a short answer for you."


def build_call_wav(path: Path, gap_s: float) -> Path:
    """The five fixture utterances, `gap_s` of silence after each: one call."""
    import wave

    import numpy as np

    pieces = [np.zeros(int(0.5 * 16000), np.int16)]
    for name in UTTERANCES:
        pcm, _ = read_call_wav(FIXTURES / name)
        pieces += [np.frombuffer(pcm, np.int16), np.zeros(int(gap_s * 16000), np.int16)]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.concatenate(pieces).tobytes())
    return path


def heard_latencies(call_pcm: bytes, reply_pcm: bytes) -> list[float]:
    """Per utterance: end of speech in the call -> first audible sound of the reply (ms), as a caller hears it."""
    replies = [start for start, _ in speech_spans(reply_pcm, 16000, min_gap_s=0.25)]
    turns = pair_replies(speech_spans(call_pcm, 16000), replies)
    return [t["voice_to_voice_ms"] for t in turns if t["voice_to_voice_ms"] is not None]


async def bench_platform(name: str, speech: SpeechModels, call: Path, rounds: int, tts: str) -> dict[str, Any]:
    speed = PLATFORMS[name]
    sim = None
    overrides: dict[str, Any] = {"llm_provider": "local", "tts_engine": tts}
    if speed:
        sim = ProviderSim(first_token_s=speed[0], tokens_per_s=speed[1], answer=ANSWER).start()
        overrides = {
            "llm_provider": "cerebras",
            "cerebras_api_key": SecretStr(sim.api_key),
            "cerebras_base_url": sim.base_url,
            "tts_engine": tts,
        }
    call_pcm, _ = read_call_wav(call)
    results: dict[str, dict[str, list]] = {p: {"heard": [], "stages": []} for p in ("ours", "vanilla")}
    try:
        async with AgentRuntime.start(Settings.load(None, **overrides), speech=speech) as runtime:
            for round_index in range(rounds):
                order = [("ours", build_voice_call), ("vanilla", build_vanilla_call)]
                for pipeline, build in order if round_index % 2 == 0 else order[::-1]:
                    result = await replay_call(runtime, call, build=build)
                    heard = heard_latencies(call_pcm, result.reply_audio)
                    results[pipeline]["heard"] += heard
                    results[pipeline]["stages"] += [t["stages_ms"] for t in result.turns if t["stages_ms"]]
                    logger.info(f"{name} round {round_index + 1} {pipeline}: {[round(h) for h in heard]} ms")
    finally:
        if sim:
            sim.stop()
    return {pipeline: _summary(data) for pipeline, data in results.items()}


def _summary(data: dict[str, list]) -> dict[str, Any]:
    stages = {
        stage: round(statistics.median(values), 1)
        for stage, _ in STAGES
        if (values := [s[stage] for s in data["stages"] if stage in s])
    }
    return {**summarize(data["heard"]), "stage_medians_ms": stages}


def print_table(report: dict[str, Any]) -> None:
    stage_names = [s for s, _ in STAGES if s != "playout"]
    header = f"{'platform':<10} {'pipeline':<8} {'turns':>5} {'p50':>6} {'p95':>6} {'max':>6}  " + " ".join(
        f"{s[:11]:>11}" for s in stage_names
    )
    print(header)
    print("-" * len(header))
    for name, result in report["platforms"].items():
        for pipeline in ("ours", "vanilla"):
            r = result[pipeline]
            stages = " ".join(f"{r['stage_medians_ms'].get(s, float('nan')):>11.0f}" for s in stage_names)
            print(
                f"{name:<10} {pipeline:<8} {r['count']:>5} {r['p50_ms'] or 0:>6.0f} {r['p95_ms'] or 0:>6.0f} "
                f"{r['max_ms'] or 0:>6.0f}  {stages}"
            )
        ours, vanilla = result["ours"]["p50_ms"], result["vanilla"]["p50_ms"]
        if ours and vanilla:
            print(f"{'':<10} p50 ratio vanilla/ours: {vanilla / ours:.2f}x")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--platforms", nargs="+", default=list(PLATFORMS), choices=list(PLATFORMS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap", type=float, default=5.0, help="seconds of silence after each utterance")
    parser.add_argument("--tts", default="hibari", choices=["hibari", "piper"])
    parser.add_argument("--json", type=Path, help="write the full report here")
    args = parser.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="INFO", filter=lambda r: r["name"].startswith("bench"))
    speech = await asyncio.to_thread(SpeechModels.load, Settings.load(None, tts_engine=args.tts))
    call = build_call_wav(Path(tempfile.mkdtemp()) / "bench-call.wav", args.gap)
    started = time.time()
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "rounds": args.rounds,
        "tts": args.tts,
        "platforms": {},
    }
    for name in args.platforms:
        report["platforms"][name] = await bench_platform(name, speech, call, args.rounds, args.tts)
    report["seconds"] = round(time.time() - started)
    print(f"voice-to-voice as heard (ms), {report['date']} UTC, {report['machine']}, {args.rounds} rounds")
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
