"""Turn-taking benchmark: how often the agent speaks into a caller's pause, and how long it waits at a true end.

Every decision point of `bench/turn_corpus.py` (real and synthetic speech, played through an 8 kHz G.711 line) is
run through the pipeline's own turn-taking parts, frame by frame and faster than real time: the project's VAD
(`FastStopSileroVAD`, 20 ms frames as a phone stream sends them), the Whisper transcriber on the audio up to each VAD
stop, Smart Turn v3 on the same audio and the words model on the transcript with the agent's last words. What each
stop would decide is then played out on the audio's own clock, as `EndOfTurnStrategy` does: the wait is counted in
silence since the VAD stop, starts again whenever the VAD hears voice, is dropped when the VAD confirms speech, and
cannot end before the transcript and the words' score exist (their measured compute time). The answer is heard
`ANSWER_AFTER_S` after the later of the turn's end and the speculative answer's readiness (Cerebras speed: the
request goes out with the transcript, while the words are scored).

A **false start** is a pause (or a gap inside a finished utterance) in which the turn ends before the caller goes
on: the answer is then under way, and at Cerebras speed heard within ~30 ms. The **answer time** at a true end is from
the caller's last sound to the answer's first, as `bench.latency` measures it from outside. **CPU per turn** is the
turn-taking models' CPU time over a whole utterance (its true end's point): Smart Turn where the word lists asked
it; the words model at every VAD stop (the strategy until 2026-12-04) or as the strategy scores now (the agent's
words primed once, the caller's scored after `SCORE_AFTER_S` of silence).

    python -m bench.turns                          # build, measure, report on the report half; writes JSON + PNG
    python -m bench.turns --tune                   # fit the rule on the tuning half and print it
    python -m bench.turns --from bench/turns-2026-12-04.json --tune   # re-fit without re-measuring
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger
from pipecat.audio.vad.vad_analyzer import VADState

from agent.latency.turns import percentile
from agent.settings import Settings
from agent.speech.voices import HibariVoice, PiperVoice
from agent.speech.whisper import WhisperTranscriber
from agent.turns.decision import RULE, TurnEvidence, TurnRule, log_odds
from agent.turns.end_of_turn import SCORE_AFTER_S
from agent.turns.smart_turn import SmartTurnModel
from agent.turns.vad import build_vad
from agent.turns.words import TurnWordsModel, normalize
from bench.turn_baseline import MEDIUM_S, word_list_wait_s
from bench.turn_corpus import PHONE_RATE, DecisionPoint, decision_points, utterances

Waits = tuple[float, float]  # the shortest and the longest end-of-turn wait, seconds
FRAME_S = 0.02
FIT_P95_MS = 700  # the slowest answers the fit allows on the tuning half: the budget's 800 ms, less a margin
LLM_READY_S = 0.23  # speculative request to first audio at Cerebras speed: 200 ms first token + clause + voice
ANSWER_AFTER_S = 0.03  # output queue and line to the caller's ear
THRESHOLDS = [0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.993, 0.995, 0.997, 0.998, 0.999]
FORGET = "One moment."  # agent's words no decision point has: priming them takes the last point's out of the cache
FIT_THRESHOLDS = [0.9, 0.95, 0.97, 0.98, 0.985, 0.99, 0.993, 0.995, 0.997, 0.998, 0.999]


@dataclass
class Stop:
    """One VAD stop, the evidence the turn strategy would have there, and what it cost (CPU of one thread)."""

    at_s: float
    transcript: str
    words: float
    voice: float
    transcript_s: float  # after the stop: when the transcript exists (the speculative request goes out)
    ready_s: float  # after the stop: when the words' score exists too, scoring at every stop (the turn may end)
    words_cpu_ms: float  # the words model here, scoring at every stop
    voice_cpu_ms: float  # Smart Turn here
    scored: bool  # whether the strategy scores the words here (`SCORE_AFTER_S` of silence before the caller goes on)
    scored_ready_s: float | None  # after the stop: when that score exists
    scored_cpu_ms: float  # its CPU (0 when not scored, or when the words are those of the last score)


@dataclass
class Measured:
    """A decision point, measured: its VAD stops and the moments the VAD heard voice."""

    key: str
    kind: str
    source: str
    half: str
    said: str
    short: bool
    speech_end_s: float
    resume_s: float | None
    stops: list[Stop]
    voiced_s: list[float]  # frames the VAD judged voice (the strategy's silence starts again)
    starts_s: list[float]  # the VAD confirming speech (the strategy drops its decision)
    prime_cpu_ms: float  # the words model evaluating the agent's words while the caller speaks


async def measure(point: DecisionPoint, settings: Settings, models: dict[str, Any]) -> Measured:
    """Run the VAD over the point's audio in phone frames, then ask the models at each stop: at every stop (the
    strategy until 2026-12-04), and as the strategy does now (the agent's words primed, the words scored after
    `SCORE_AFTER_S` of silence). Each pass starts with the agent's words out of the words model's cache, as a new
    turn does."""
    vad = build_vad(settings, PHONE_RATE)
    vad.set_sample_rate(PHONE_RATE)
    frame = int(FRAME_S * PHONE_RATE)
    pcm = point.audio
    stopped: list[tuple[int, float]] = []
    voiced: list[float] = []
    starts: list[float] = []
    state = VADState.QUIET
    for i in range(0, len(pcm) - frame + 1, frame):
        before = vad.voiced_buffers
        new = await vad.analyze_audio(pcm[i : i + frame].tobytes())
        now = (i + frame) / PHONE_RATE
        if vad.voiced_buffers != before:
            voiced.append(now)
        if state == VADState.SPEAKING and new == VADState.QUIET:
            stopped.append((i + frame, now))
        if state == VADState.QUIET and new == VADState.SPEAKING:
            starts.append(now)
        if new in (VADState.SPEAKING, VADState.QUIET):
            state = new
    words: TurnWordsModel = models["words"]
    words.prime(FORGET)
    every = [await asyncio.to_thread(evidence_at, pcm[:end], now, point.context, models) for end, now in stopped]
    words.prime(FORGET)
    prime_ms = _cpu_ms(words.prime, point.context)[1]
    stops = []
    for seen in every:
        score_at = ended_after(voiced, starts, seen.at_s, SCORE_AFTER_S, seen.at_s)
        if score_at is None:
            stops.append(Stop(**seen.__dict__, scored=False, scored_ready_s=None, scored_cpu_ms=0.0))
            continue
        started = time.perf_counter()
        _, cpu_ms = _cpu_ms(words.probability, seen.transcript, point.context)
        ready_s = max(seen.transcript_s, score_at - seen.at_s) + time.perf_counter() - started
        stops.append(Stop(**seen.__dict__, scored=True, scored_ready_s=ready_s, scored_cpu_ms=cpu_ms))
    return Measured(
        key=point.key,
        kind=point.kind,
        source=point.source,
        half=point.half,
        said=point.said,
        short=point.short,
        speech_end_s=point.speech_end_s,
        resume_s=point.resume_s,
        stops=stops,
        voiced_s=voiced,
        starts_s=starts,
        prime_cpu_ms=prime_ms,
    )


@dataclass
class Seen:
    """A stop's evidence, scored at every stop."""

    at_s: float
    transcript: str
    words: float
    voice: float
    transcript_s: float
    ready_s: float
    words_cpu_ms: float
    voice_cpu_ms: float


def evidence_at(audio: np.ndarray, at_s: float, context: str, models: dict[str, Any]) -> Seen:
    """Blocking: the transcript, the words' and the voice's probabilities at a VAD stop, and how long the words took
    (Smart Turn runs beside the transcription, in the other thread)."""
    pcm = audio.tobytes()
    started = time.perf_counter()
    text = models["whisper"].transcribe(pcm, PHONE_RATE)
    transcribed = time.perf_counter() - started
    words, words_ms = _cpu_ms(models["words"].probability, text, context)
    ready = time.perf_counter() - started
    voice, voice_ms = _cpu_ms(models["voice"].probability, pcm, PHONE_RATE)
    return Seen(at_s, text, words, voice, transcribed, ready, words_ms, voice_ms)


def _cpu_ms(call: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """A blocking call's result and the CPU time it took in this thread (the models run one thread each here)."""
    started = time.thread_time()
    result = call(*args)
    return result, (time.thread_time() - started) * 1000


def ended_after(
    voiced_s: list[float], starts_s: list[float], at_s: float, wait_s: float, earliest: float
) -> float | None:
    """When `wait_s` of silence after a stop at `at_s` has passed (counted again from each frame the VAD hears voice
    in), and not before `earliest`; None when the VAD confirms speech first."""
    cancelled_at = next((s for s in starts_s if s > at_s), math.inf)
    silence_from = at_s
    for v in voiced_s:
        if v <= at_s:
            continue
        if max(silence_from + wait_s, earliest) <= v - FRAME_S:
            break
        silence_from = v
    end = max(silence_from + wait_s, earliest)
    return end if end < cancelled_at else None


def turn_end_s(point: Measured, stop: Stop, wait_s: float, scored: bool = False) -> float | None:
    """When the strategy would end the turn after this stop: once `wait_s` of silence has passed and the evidence
    exists (`scored`: as the strategy scores now, else scoring at every stop); None when the VAD confirms speech
    first, or the strategy never scores the stop."""
    if scored and not stop.scored:
        return None
    ready_s = stop.scored_ready_s if scored and stop.scored_ready_s is not None else stop.ready_s
    return ended_after(point.voiced_s, point.starts_s, stop.at_s, wait_s, stop.at_s + ready_s)


@dataclass
class Outcome:
    key: str
    kind: str
    short: bool
    false_start: bool
    answer_ms: float | None


@dataclass(frozen=True)
class Policy:
    """A way to end turns: the wait chosen at a stop, when the evidence exists, and what the models cost per turn."""

    wait_at: Callable[[Stop], float]
    scored: bool  # the words scored as the strategy does now (after `SCORE_AFTER_S`), else at every stop
    cpu_ms: Callable[[Measured], float]


def play(point: Measured, policy: Policy) -> Outcome:
    """What the caller lives through with this policy. The first stop whose wait runs out ends the turn; that is a
    false start when it comes before the caller's next words: before their last words (a gap inside an utterance),
    or before the VAD hears them go on after a pause. Otherwise it is the answer, heard as the caller hears it."""
    went_on = point.speech_end_s
    if point.resume_s is not None:
        went_on = min((v for v in point.voiced_s if v >= point.resume_s - FRAME_S), default=point.resume_s)
    for stop in point.stops:
        if stop.at_s >= went_on and point.kind == "pause":
            break
        end = turn_end_s(point, stop, policy.wait_at(stop), policy.scored)
        if end is None:
            continue
        if end < went_on:
            return Outcome(point.key, point.kind, point.short, True, None)
        if point.kind == "pause":
            break  # the turn ended after the caller went on: the whole sentence is answered
        heard = max(end, stop.at_s + stop.transcript_s + LLM_READY_S) + ANSWER_AFTER_S
        return Outcome(point.key, point.kind, point.short, False, (heard - point.speech_end_s) * 1000)
    return Outcome(point.key, point.kind, point.short, False, None)


def learned(rule: TurnRule, waits: Waits, scored: bool = True) -> Policy:
    """The learned rule; `scored`: with the words scored as the strategy does now, else at every VAD stop."""

    def cpu_ms(point: Measured) -> float:
        voice = sum(s.voice_cpu_ms for s in point.stops) if rule.uses_voice else 0.0
        if scored:
            return point.prime_cpu_ms + sum(s.scored_cpu_ms for s in point.stops) + voice
        return sum(s.words_cpu_ms for s in point.stops) + voice

    return Policy(lambda stop: rule.wait_s(evidence_of(stop, rule.uses_voice), *waits), scored, cpu_ms)


def evidence_of(stop: Stop, voice: bool = True) -> TurnEvidence:
    """The evidence at a stop; without the voice when the rule does not run Smart Turn (as the agent does not)."""
    return TurnEvidence(
        words=stop.words, voice=stop.voice if voice else None, word_count=len(normalize(stop.transcript).split())
    )


def _medium_voice_cpu_ms(point: Measured) -> float:
    """The word lists asked Smart Turn only where the words left the wait at medium."""
    return sum(s.voice_cpu_ms for s in point.stops if word_list_wait_s(s.transcript, 0.0) == MEDIUM_S)


# The word lists (the rule before the learned one), with Smart Turn where they asked it.
BASELINE = Policy(lambda stop: word_list_wait_s(stop.transcript, stop.voice), False, _medium_voice_cpu_ms)


def score(points: list[Measured], rule: TurnRule, waits: Waits) -> dict[str, Any]:
    return score_with(points, learned(rule, waits))


def score_with(points: list[Measured], policy: Policy) -> dict[str, Any]:
    """False-start rate over pauses, answer p50/p95 at ends (all and short replies), misses, and the models' CPU
    per turn (over the true ends: each is a whole utterance, every VAD stop in it)."""
    outcomes = [play(p, policy) for p in points]
    pauses = [o for o in outcomes if o.kind == "pause"]
    ends = [o for o in outcomes if o.kind == "end"]
    answered = [o.answer_ms for o in ends if o.answer_ms is not None and not o.false_start]
    short = [o.answer_ms for o in ends if o.short and o.answer_ms is not None and not o.false_start]
    cpu = [policy.cpu_ms(p) for p in points if p.kind == "end"]
    return {
        "pauses": len(pauses),
        "false_starts": sum(o.false_start for o in pauses),
        "false_start_rate": round(sum(o.false_start for o in pauses) / max(1, len(pauses)), 3),
        "ends": len(ends),
        "cut_in_ends": sum(o.false_start for o in ends),
        "unanswered_ends": sum(o.answer_ms is None and not o.false_start for o in ends),
        "answer_p50_ms": _ms(statistics.median(answered)) if answered else None,
        "answer_p95_ms": _ms(percentile(answered, 95)) if answered else None,
        "short_p50_ms": _ms(statistics.median(short)) if short else None,
        "short_p95_ms": _ms(percentile(short, 95)) if short else None,
        "cpu_per_turn_p50_ms": _ms(statistics.median(cpu)) if cpu else None,
        "cpu_per_turn_mean_ms": _ms(statistics.mean(cpu)) if cpu else None,
        "false_start_keys": [o.key for o in pauses if o.false_start],
        "slowest": sorted(((o.answer_ms or 0, o.key) for o in ends), reverse=True)[:5],
    }


def fit(points: list[Measured]) -> tuple[TurnRule, Waits]:
    """Logistic regression of end-vs-pause on the evidence (at every stop in a pause, and at the first stop after
    each true end); then the waits, threshold and band with the fewest false starts whose answer p95 stays
    within `FIT_P95_MS` on these points (ties: the lower p95)."""
    rows, labels = [], []
    for p in points:
        if p.kind == "end":
            chosen = [s for s in p.stops if s.at_s >= p.speech_end_s - 0.05][:1]
        else:
            chosen = [s for s in p.stops if p.speech_end_s - 0.05 <= s.at_s < (p.resume_s or math.inf)]
        for s in chosen:
            seen = evidence_of(s)
            rows.append([1.0, log_odds(seen.words), log_odds(seen.voice), float(seen.short_reply)])
            labels.append(1.0 if p.kind == "end" else 0.0)
    x, y = np.array(rows), np.array(labels)
    w = np.zeros(4)
    for _ in range(5000):
        p = 1 / (1 + np.exp(-x @ w))
        w -= 0.05 * (x.T @ (p - y) / len(y) + 1e-3 * np.r_[0, w[1:]])
    bias, words, voice, short_reply = (round(float(v), 2) for v in w)
    base = TurnRule(bias=bias, words=words, voice=voice, short_reply=short_reply)
    best: tuple[tuple[float, float], TurnRule, Waits] | None = None
    for waits in itertools.product((0.15, 0.2, 0.25, 0.3), (1.0, 1.1)):
        for threshold in FIT_THRESHOLDS:
            for band in (6.0, 8.0, 10.0):  # smooth waits: a sharp step fits these few points and no others
                rule = replace(base, threshold=threshold, band=band)
                result = score(points, rule, waits)
                if result["answer_p95_ms"] is None or result["answer_p95_ms"] > FIT_P95_MS:
                    continue
                key = (result["false_start_rate"] + result["cut_in_ends"] / result["ends"], result["answer_p95_ms"])
                if best is None or key < best[0]:
                    best = (key, rule, waits)
    return (best[1], best[2]) if best else (base, (0.3, 1.0))


def curve(points: list[Measured], rule: TurnRule, waits: Waits) -> list[dict[str, Any]]:
    return [
        {"threshold": t, **{k: v for k, v in score(points, replace(rule, threshold=t), waits).items() if k in CURVE}}
        for t in THRESHOLDS
    ]


CURVE = ("false_start_rate", "answer_p50_ms", "answer_p95_ms", "short_p95_ms")


def plot(rows: list[dict[str, Any]], chosen: dict[str, Any], before: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    xs = [r["false_start_rate"] * 100 for r in rows]
    ax.plot(xs, [r["answer_p95_ms"] for r in rows], "o-", label="answer p95")
    ax.plot(xs, [r["answer_p50_ms"] for r in rows], "s--", label="answer p50")
    for r, x in zip(rows, xs, strict=True):
        ax.annotate(
            f"{r['threshold']:g}", (x, r["answer_p95_ms"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    ax.plot([chosen["false_start_rate"] * 100], [chosen["answer_p95_ms"]], "r*", markersize=14, label="default")
    was = ([before["false_start_rate"] * 100], [before["answer_p95_ms"]])
    ax.plot(*was, "kx", markersize=10, label="word lists, before (p95)")
    ax.axvline(5, color="grey", lw=0.8, ls=":")
    ax.axhline(600, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("false starts, % of mid-utterance pauses (report half)")
    ax.set_ylabel("answer time at true ends, ms")
    ax.set_title("Turn taking: the threshold's trade-off")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def build(settings: Settings) -> list[Measured]:
    """Synthesise and measure every decision point (a few minutes on 2 cores)."""
    models = {
        "whisper": WhisperTranscriber(threads=1),
        "words": TurnWordsModel(threads=1),
        "voice": SmartTurnModel(),
    }
    models["whisper"].warm_up()
    rng = random.Random(17)
    measured: list[Measured] = []
    for utterance in utterances({"piper": PiperVoice(), "hibari": HibariVoice()}):
        for point in decision_points(utterance, models["whisper"], rng):
            measured.append(asyncio.run(measure(point, settings, models)))
    return measured


def waits_of(settings: Settings) -> Waits:
    return settings.end_of_turn_min_ms / 1000, settings.end_of_turn_max_ms / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, help="re-use the measurements of an earlier run")
    parser.add_argument("--tune", action="store_true", help="fit the rule on the tuning half and print it")
    parser.add_argument("--json", type=Path, default=Path(f"bench/turns-{time.strftime('%Y-%m-%d')}.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/turn-taking.png"))
    args = parser.parse_args()
    logger.remove()
    logger.add(lambda m: print(m, end=""), level="WARNING")
    settings = Settings.load()
    waits = waits_of(settings)
    if args.source:
        data = json.loads(args.source.read_text())
        points = [Measured(**{**p, "stops": [Stop(**s) for s in p["stops"]]}) for p in data["points"]]
    else:
        points = build(settings)
    tuning = [p for p in points if p.half == "tuning"]
    report = [p for p in points if p.half == "report"]
    rule = replace(RULE, threshold=settings.end_of_turn_threshold)
    if args.tune:
        rule, waits = fit(tuning)
        print(f"fitted on {len(tuning)} tuning points: {rule}, waits {waits}")
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "waits_s": {"shortest": waits[0], "longest": waits[1]},
        "rule": asdict(rule),
        "counts": {
            h: {k: sum(p.half == h and p.kind == k for p in points) for k in ("pause", "end")}
            for h in ("tuning", "report")
        },  # fmt: skip
        "sources": {s: sum(p.source == s for p in points) for s in sorted({p.source for p in points})},
        "tuning": score(tuning, rule, waits),
        "report": score(report, rule, waits),
        "every_stop_report": score_with(report, learned(rule, waits, scored=False)),
        "baseline_report": score_with(report, BASELINE),
        "curve": curve(report, rule, waits),
        "points": [asdict(p) for p in points],
    }
    print(json.dumps({k: v for k, v in results.items() if k != "points"}, indent=1))
    args.json.write_text(json.dumps(results, indent=1))
    plot(results["curve"], results["report"], results["baseline_report"], args.plot)


def _ms(value: float) -> float:
    return round(value, 1)


if __name__ == "__main__":
    main()
