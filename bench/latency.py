"""Answer latency as a caller hears it, over the phone path: recorded calls dialled into the real server over a
carrier's media stream protocol (`agent/phone_client.py`; Twilio Media Streams unless `--carrier` names Telnyx or
Plivo), the LLM played by the provider simulator at each scenario's speed, and the answer's onset found in the
audio the caller received by transcribing it (`bench/calls.py`): an acknowledgement or an apology is not an answer.

Scenarios: Cerebras speed (200 ms to the first token, 3,000 tokens/s), a heavy-tailed first token (log-normal,
p50 200 ms, p95 600 ms), H100 speed (200 ms, 280 tokens/s); each with the acknowledgement off and on. Calls mix
questions and sentences with a mid-sentence pause (false starts are counted on those). `deepgram-cartesia` is
Cerebras speed with hosted speech (`STT_PROVIDER=deepgram`, `TTS_PROVIDER=cartesia`) against the providers' doubles
(`bench/speech_doubles/`) answering at the providers' published speeds.

The baseline is a vanilla pipecat 1.14 pipeline (`bench/vanilla.py`, pipecat's defaults, the same models and the same
trimmed voice) against ours, both replayed through the same in-process transport on the same calls, alternating;
the ratio is vanilla's answer p50 over ours.

    python -m bench.latency                          # every scenario, 2 rounds (48 turns each)
    python -m bench.latency --scenarios cerebras --rounds 1 --json bench.json
    python -m bench.latency --scenarios cerebras --rounds 1 --no-baseline --carrier telnyx
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger
from pydantic import SecretStr

from agent.latency.turns import STAGES, percentile, summarize
from agent.phone_client import caller_for, place_call
from agent.runtime import AgentRuntime, SpeechModels
from agent.server.app import create_app
from agent.settings import Settings
from agent.telephony.registry import CARRIERS
from bench.audio import load, word_error_rate
from bench.calls import PAUSED, QUESTIONS, Call, build_call, hear_answers
from bench.provider_sim import ProviderSim
from bench.serving import serving
from bench.speech_doubles.base import Faults
from bench.speech_doubles.cartesia import CartesiaDouble
from bench.speech_doubles.deepgram import DeepgramDouble
from bench.vanilla import build_vanilla_call
from pipelines.replay import replay_call
from pipelines.voice import build_voice_call

ANSWER = "Sure, that is an easy one. Here is a short answer for you."
GAP_S = 4.5
HEAVY_SIGMA = math.log(3.0) / 1.645  # log-normal first token: p50 200 ms, p95 600 ms
# The hosted providers' published speeds, as the doubles' time from a request to its first reply:
# - Deepgram Nova-3 streaming, "sub-300 ms" to the transcript (deepgram.com/learn/understanding-and-reducing-latency-
#   in-speech-to-text-apis); pipecat 1.14 measured a P99 of 350 ms from the end of speech to Deepgram's final
#   transcript (`pipecat.services.stt_latency.DEEPGRAM_TTFS_P99`, docs.pipecat.ai/guides/fundamentals/
#   stt-latency-tuning). The upper figure of the published one: the final after a `Finalize` in 300 ms.
# - Cartesia Sonic, "90ms model latency" (docs.cartesia.ai/2024-11-13/build-with-cartesia/models; sonic-turbo 40 ms;
#   Sonic 3's published time to first audio is 40-90 ms): the first audio of a request in 90 ms.
DEEPGRAM_FINAL_S = 0.300
CARTESIA_FIRST_AUDIO_S = 0.090
HOSTED_KEY = "bench-hosted-speech-key"
CARTESIA_VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"


@dataclass(frozen=True)
class Scenario:
    name: str
    tokens_per_s: float
    acknowledge: bool
    heavy_tail: bool = False
    learn_pauses: bool = False
    hosted: bool = False  # Deepgram and Cartesia (their doubles, at their published speeds) for the local models

    def first_token(self, seed: int) -> float | Callable[[], float]:
        if not self.heavy_tail:
            return 0.2
        rng = random.Random(seed)
        return lambda: rng.lognormvariate(math.log(0.2), HEAVY_SIGMA)


SCENARIOS = {
    s.name: s
    for s in [
        Scenario("cerebras", 3000, acknowledge=False),
        Scenario("cerebras-ack", 3000, acknowledge=True),
        Scenario("heavy", 3000, acknowledge=False, heavy_tail=True),
        Scenario("heavy-ack", 3000, acknowledge=True, heavy_tail=True),
        Scenario("h100", 280, acknowledge=False),
        Scenario("cerebras-learn-pauses", 3000, acknowledge=False, learn_pauses=True),
        Scenario("deepgram-cartesia", 3000, acknowledge=False, hosted=True),
    ]
}


def calls_for(rounds: int, directory: Path) -> list[Call]:
    """Two calls a round, each with half the questions and half the paused sentences, interleaved."""
    calls = []
    for round_index in range(rounds):
        for half in range(2):
            questions, paused = QUESTIONS[half::2], PAUSED[half::2]
            names = questions[:4] + paused[:2] + questions[4:] + paused[2:]
            calls.append(build_call(directory / f"call-{round_index}-{half}.wav", names, gap_s=GAP_S))
    return calls


def settings_for(sim: ProviderSim, scenario: Scenario, tts: str, hosted: HostedDoubles | None = None) -> Settings:
    return Settings.load(
        None,
        llm_provider="cerebras",
        cerebras_api_key=SecretStr(sim.api_key),
        cerebras_base_url=sim.base_url,
        max_spoken_sentences=1,
        tts_engine=tts,
        admission="count",  # one call at a time: this benchmark is about a call's latency, not admission
        end_of_turn_learn_pauses=scenario.learn_pauses,
        **({} if scenario.acknowledge else {"acknowledge_after_ms": 0}),
        **(hosted.settings if hosted else {}),
    )


@dataclass
class HostedDoubles:
    """The settings that point the agent at the doubles, and the calls' fallbacks to the local models (a scenario
    that fell back measured the local models for the rest of that call)."""

    settings: dict[str, Any]
    fallbacks: list[str]


@asynccontextmanager
async def hosted_speech(scenario: Scenario, speech: SpeechModels) -> AsyncIterator[HostedDoubles | None]:
    """For a hosted scenario, the Deepgram and Cartesia doubles at the providers' published speeds; None for a local
    one."""
    if not scenario.hosted:
        yield None
        return
    deepgram = DeepgramDouble(HOSTED_KEY, speech.transcriber, Faults(latency_s=DEEPGRAM_FINAL_S))
    cartesia = CartesiaDouble(HOSTED_KEY, speech.voice, Faults(latency_s=CARTESIA_FIRST_AUDIO_S))
    fallbacks: list[str] = []
    sink = logger.add(
        lambda m: fallbacks.append(m.record["message"]),
        level="WARNING",
        filter=lambda r: "the rest of this call" in r["message"],
    )
    try:
        async with deepgram.running(), cartesia.running():
            yield HostedDoubles(
                settings={
                    "stt_provider": "deepgram",
                    "deepgram_api_key": SecretStr(HOSTED_KEY),
                    "deepgram_base_url": deepgram.origin,
                    "tts_provider": "cartesia",
                    "cartesia_api_key": SecretStr(HOSTED_KEY),
                    "cartesia_base_url": cartesia.origin,
                    "cartesia_voice": CARTESIA_VOICE,
                },
                fallbacks=fallbacks,
            )
    finally:
        logger.remove(sink)
    if violations := deepgram.violations + cartesia.violations:
        raise RuntimeError(f"the agent broke a provider's protocol: {violations}")


async def run_scenario(
    scenario: Scenario, speech: SpeechModels, calls: list[Call], tts: str, carrier: str = "twilio"
) -> dict[str, Any]:
    sim = ProviderSim(first_token_s=scenario.first_token(seed=7), tokens_per_s=scenario.tokens_per_s, answer=ANSWER)
    sim.start()
    heard: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    try:
        async with (
            hosted_speech(scenario, speech) as hosted,
            AgentRuntime.start(settings := settings_for(sim, scenario, tts, hosted), speech=speech) as runtime,
        ):
            app = create_app(settings, runtime=runtime)
            async with serving(app) as server:
                for call in calls:
                    app.state.recent_turns.clear()
                    stream = f"{server.ws}/{carrier}/stream"  # unsigned, on this machine
                    result = await place_call(call.path, stream, dialect=caller_for(carrier), tail_s=2.5)
                    await asyncio.sleep(1.0)  # the server closes the call's last turn
                    call_reports = [r for ch, e, r in app.state.recent_turns if ch == "phone" and e == "closed"]
                    reports += [{**r, "call": str(call.path.name)} for r in call_reports]
                    ack = settings.acknowledgement if scenario.acknowledge else ""
                    per_utterance = await asyncio.to_thread(
                        hear_answers, call, result.heard_audio, 8000, speech.transcriber, ack
                    )
                    heard += per_utterance
                    logger.info(f"{scenario.name} {call.path.name}: {[u['answer_ms'] for u in per_utterance]}")
    finally:
        sim.stop()
    summary = summarize_scenario(heard, reports, calls)
    if hosted:
        summary["hosted"] = {
            "deepgram_final_ms": DEEPGRAM_FINAL_S * 1000,
            "cartesia_first_audio_ms": CARTESIA_FIRST_AUDIO_S * 1000,
            "fallbacks": hosted.fallbacks,
        }
    return summary


def summarize_scenario(heard: list[dict], reports: list[dict], calls: list[Call]) -> dict[str, Any]:
    paused = [h for h in heard if h["paused"]]
    answers = [h["answer_ms"] for h in heard if h["answer_ms"] is not None]
    stages = {
        stage: round(statistics.median(values), 1)
        for stage, _ in STAGES
        if (values := [r["stages_ms"][stage] for r in reports if stage in r["stages_ms"]])
    }
    references = " ".join(u.reference for c in calls for u in c.utterances)
    understood = " ".join(r["user_text"] for r in reports)
    return {
        "turns": len(heard),
        "answered": len(answers),
        "answer": summarize(answers),
        "first_sound": summarize([h["first_sound_ms"] for h in heard if h["first_sound_ms"] is not None]),
        "fillers": sum(h["filler"] for h in heard),
        "apologies": sum(h["apology"] for h in heard),
        "paused_turns": len(paused),
        "false_starts": sum(h["false_start"] for h in paused),
        "llm_requests_per_turn": round(sum(r["llm_requests"] for r in reports) / max(1, len(reports)), 2),
        "server_turns": len(reports),
        "stage_medians_ms": stages,
        "stt_p95_ms": round(percentile([r["stages_ms"]["stt"] for r in reports if "stt" in r["stages_ms"]], 95), 1)
        if reports
        else None,
        "wer": round(word_error_rate(references, understood), 3),
        "understood": [r["user_text"] for r in reports],
        "per_utterance": heard,
    }


async def run_baseline(speech: SpeechModels, calls: list[Call], tts: str) -> dict[str, Any]:
    """Ours and vanilla pipecat through the same replay transport, alternating, at Cerebras speed."""
    sim = ProviderSim(first_token_s=0.2, tokens_per_s=3000, answer=ANSWER).start()
    results: dict[str, list[float]] = {"ours": [], "vanilla": []}
    try:
        async with AgentRuntime.start(settings_for(sim, SCENARIOS["cerebras"], tts), speech=speech) as runtime:
            for index, call in enumerate(calls):
                order = [("ours", build_voice_call), ("vanilla", build_vanilla_call)]
                for name, build in order if index % 2 == 0 else order[::-1]:
                    replay = await replay_call(runtime, call.path, build=build)
                    heard = await asyncio.to_thread(
                        hear_answers, call, replay.reply_audio, replay.reply_sample_rate, speech.transcriber, ""
                    )
                    results[name] += [h["answer_ms"] for h in heard if h["answer_ms"] is not None]
                    logger.info(f"baseline {name} {call.path.name}: {[h['answer_ms'] for h in heard]}")
    finally:
        sim.stop()
    ours, vanilla = summarize(results["ours"]), summarize(results["vanilla"])
    ratio = vanilla["p50_ms"] / ours["p50_ms"] if ours["p50_ms"] and vanilla["p50_ms"] else None
    turns = sum(len(c.utterances) for c in calls)
    return {"ours": ours, "vanilla": vanilla, "turns": turns, "ratio_p50": None if ratio is None else round(ratio, 2)}


def whole_file_wer(speech: SpeechModels, calls: list[Call]) -> float:
    """Today's transcription, for comparison: Whisper on each fixture utterance as one whole file."""
    utterances = {u.name: u.reference for c in calls for u in c.utterances}
    hypotheses = [speech.transcriber.transcribe(load(name).tobytes(), 16000) for name in utterances]
    return round(word_error_rate(" ".join(utterances.values()), " ".join(hypotheses)), 3)


def print_report(report: dict[str, Any]) -> None:
    print(f"answer latency as heard on the phone (ms), {report['date']} UTC, {report['machine']}")
    print(
        f"{'scenario':<18}{'answered':>10}{'p50':>7}{'p95':>7}{'max':>7}{'first':>7}{'fillers':>9}"
        f"{'false st.':>11}{'req/turn':>9}{'WER':>6}  stage medians"
    )
    for name, r in report["scenarios"].items():
        a = r["answer"]
        stages = " ".join(f"{k}={v:.0f}" for k, v in r["stage_medians_ms"].items())
        print(
            f"{name:<18}{r['answered']:>5}/{r['turns']:<4}{a['p50_ms'] or 0:>7.0f}{a['p95_ms'] or 0:>7.0f}"
            f"{a['max_ms'] or 0:>7.0f}{r['first_sound']['p50_ms'] or 0:>7.0f}{r['fillers']:>9}"
            f"{r['false_starts']:>5}/{r['paused_turns']:<5}{r['llm_requests_per_turn']:>9}{r['wer']:>6}  {stages}"
        )
    print(f"word error rate of Whisper on each utterance as a whole file (the reference): {report['whole_file_wer']}")
    if baseline := report.get("baseline"):
        o, v = baseline["ours"], baseline["vanilla"]
        print(
            f"baseline (replay, Cerebras speed, {baseline['turns']} turns each): ours p50 {o['p50_ms']} p95 "
            f"{o['p95_ms']} ({o['count']} answered); vanilla pipecat p50 {v['p50_ms']} p95 {v['p95_ms']} "
            f"({v['count']} answered); vanilla/ours p50 {baseline['ratio_p50']}x"
        )


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--rounds", type=int, default=2, help="rounds of two calls (24 turns a round)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the vanilla pipecat comparison")
    parser.add_argument("--tts", default="hibari", choices=["hibari", "piper"])
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--carrier", default="twilio", choices=list(CARRIERS), help="stream protocol")
    parser.add_argument("--debug-log", type=Path, help="write the agent's DEBUG log here (each turn's STT, waits)")
    args = parser.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="INFO", filter=lambda r: r["name"].startswith(("bench", "__main__")))
    if args.debug_log:
        logger.add(args.debug_log, level="DEBUG", filter=lambda r: r["name"].startswith("agent"))
    speech = await asyncio.to_thread(SpeechModels.load, Settings.load(None, tts_engine=args.tts))
    directory = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    calls = calls_for(args.rounds, directory)
    started = time.time()
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "rounds": args.rounds,
        "tts": args.tts,
        "carrier": args.carrier,
        "scenarios": {},
    }
    for name in args.scenarios:
        report["scenarios"][name] = await run_scenario(SCENARIOS[name], speech, calls, args.tts, args.carrier)
    if not args.no_baseline:
        report["baseline"] = await run_baseline(speech, calls[:2], args.tts)
    report["whole_file_wer"] = await asyncio.to_thread(whole_file_wer, speech, calls)
    report["seconds"] = round(time.time() - started)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
