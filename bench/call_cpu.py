"""CPU per call: what one phone call costs the server, split by what the call is doing and by pipeline stage.

One `voice-agent serve` (front and one warm worker, the LLM the provider simulator at Cerebras' speed, local Whisper
and voice) takes recorded calls placed the whole way Twilio places them. For each call it reads every thread's CPU
time of the server's processes from /proc (native threads included: Whisper's, the voice's, llama.cpp's) every
SAMPLE_S, and attributes each interval to what the call was doing then:

  silence   nobody speaks: the agent listens
  caller    the caller speaks (the recording's speech, with the VAD's and the transcript's work just after it)
  agent     the agent's voice plays on the caller's handset

and, with py-spy sampling the worker's Python stacks (`--nonblocking`, so the call is not paused), splits each
thread's CPU by stage: transport (websocket, serializer), vad, resampling, stt, end_of_turn, llm_client, tts,
pipeline (pipecat's queues, tasks, observers), other; threads py-spy sees no Python in are the models' native thread
pools (`model_pools`). The front process is all `relay` (it carries the call's messages to the worker and back).

With `--baseline PATH` (another checkout of this project, e.g. a `git worktree` of an older commit) the same calls
run on that checkout's server too, alternating call by call in the same run, and the report gives the ratio.

    python -m bench.call_cpu                                  # silent, long and short calls, 3 of each
    python -m bench.call_cpu --baseline /tmp/base --json bench/call-cpu-2026-12-04.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from agent.llm.simulator import ProviderSim
from agent.phone_client import PhoneCallResult, call_unless_rejected
from agent.server.machine import process_tree
from agent.speech.energy import speech_spans
from bench.audio import build_call
from bench.server_process import ROOT, AgentProcess, agent_process, on_simulator
from pipelines.replay import read_call_wav

CALLS: dict[str, list[str | float]] = {
    "silent": [30.0],
    "long": [0.5, "dashwood.wav", 6.0, "respectable.wav", 6.0, "cold_hearted.wav", 6.0],
    "short": [0.5, "ill_disposed.wav", 4.0, "ten_of_clubs.wav", 4.0, "amiable.wav", 3.0],
}
ANSWER = "Sure, that is an easy one. Here is a short answer for you."
SAMPLE_S = 0.25
CALLER_TAIL_S = 1.0  # the caller state lasts this long past the speech: the VAD stop, the transcript, the decision
TICK = os.sysconf("SC_CLK_TCK")
STATES = ("silence", "caller", "agent")

# Stage of a sampled stack: the frame nearest the leaf that matches one of these decides (so pipecat pushing a
# frame on from inside the VAD's processor counts as pipeline, the VAD's model inside it as vad).
STAGE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (stage, re.compile(pattern))
    for stage, pattern in [
        ("stt", r"Whisper|faster_whisper|ctranslate2"),
        ("end_of_turn", r"TurnWords|EndOfTurn|SmartTurn|llama_|ggml_|Llama\."),
        ("tts", r"TTS|Voice\.|piper|Phrase"),
        ("vad", r"VAD|Silero|vad\.py"),
        ("resampling", r"soxr|[Rr]esampl"),
        ("llm_client", r"LLMService|httpx|httpcore|h11|sse|ChainClient|race\.py"),
        ("transport", r"websocket|WebSocket|[Ss]erializ|Transport|input_guard|stream_messages|line\.py|g711|relay"),
        ("pipeline", r"FrameProcessor|Observer|Queue|queue|Pipeline|task_manager|TaskManager"),
    ]
]
STAGES = ("relay", "transport", "vad", "resampling", "stt", "end_of_turn", "llm_client", "tts", "pipeline", "other")
IDLE_LEAF = re.compile(r"epoll_wait|pthread_cond|futex|sem_wait|nanosleep|poll \(|select \(|acquire_lock|do_waitpid")


def thread_cpu(pids: list[int]) -> dict[tuple[int, int], float]:
    """CPU seconds (user + system) of every thread of `pids`, by (pid, tid)."""
    seconds = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            seconds[(pid, int(task.name))] = (int(fields[11]) + int(fields[12])) / TICK
    return seconds


@dataclass
class CpuTimeline:
    """Per-thread CPU of a server's processes, sampled every SAMPLE_S over a call."""

    root: int
    samples: list[tuple[float, dict[tuple[int, int], float]]] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), thread_cpu(process_tree(self.root))))
            await asyncio.sleep(SAMPLE_S)

    def by_thread(self) -> dict[tuple[int, int], float]:
        first, last = self.samples[0][1], self.samples[-1][1]
        return {key: last[key] - first.get(key, 0.0) for key in last if last[key] > first.get(key, 0.0)}

    def by_state(self, origin: float, caller: list[tuple[float, float]], agent: list[tuple[float, float]]) -> dict:
        """CPU seconds and wall seconds spent in each state; an interval takes the state at its middle."""
        cpu = dict.fromkeys(STATES, 0.0)
        wall = dict.fromkeys(STATES, 0.0)
        for (t0, a), (t1, b) in zip(self.samples, self.samples[1:], strict=False):
            middle = (t0 + t1) / 2 - origin
            state = (
                "agent"
                if _inside(middle, agent, 0.0)
                else "caller"
                if _inside(middle, caller, CALLER_TAIL_S)
                else "silence"
            )
            cpu[state] += sum(b[k] - a.get(k, 0.0) for k in b)
            wall[state] += t1 - t0
        return {"cpu_s": cpu, "wall_s": wall}


def _inside(t: float, spans: list[tuple[float, float]], tail_s: float) -> bool:
    return any(start <= t <= end + tail_s for start, end in spans)


def stage_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for stage, pattern in STAGE_PATTERNS:
            if pattern.search(frame):
                return stage
    return "other"


def read_spy(path: Path) -> dict[int, Counter[str]]:
    """py-spy's raw output: busy samples per thread id, by stage (idle waits left out)."""
    shares: dict[int, Counter[str]] = defaultdict(Counter)
    if not path.exists():
        return shares
    for line in path.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not stack_text:
            continue
        stack = stack_text.split(";")
        match = re.search(r"thread \((\d+)\)", stack[0])
        if match is None or IDLE_LEAF.search(stack[-1]):
            continue
        shares[int(match.group(1))][stage_of(stack[1:])] += int(count)
    return shares


@contextlib.asynccontextmanager
async def spying(pid: int, out: Path) -> AsyncIterator[None]:
    """py-spy sampling `pid`'s threads' Python stacks without pausing it, while the block runs."""
    spy = subprocess.Popen(
        ["py-spy", "record", "--nonblocking", "--threads", "--rate", "100", "--format", "raw",
         "--output", str(out), "--pid", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
        try:
            await asyncio.to_thread(spy.wait, 30)
        except subprocess.TimeoutExpired:
            spy.kill()


async def measure_call(server: AgentProcess, kind: str, wav: Path, tmp: Path, spy: bool) -> dict[str, Any]:
    """One call on `server`: its CPU by thread, state and stage, and its answer times."""
    front, workers = server.process.pid, server.workers()
    timeline = CpuTimeline(front)
    spy_out = tmp / f"spy-{kind}-{time.monotonic_ns()}.txt"
    async with contextlib.AsyncExitStack() as stack:
        if spy and workers:
            await stack.enter_async_context(spying(workers[0], spy_out))
        sampler = asyncio.create_task(timeline.run())
        origin = time.monotonic()
        result: PhoneCallResult | None = await call_unless_rejected(wav, f"{server.http}/twilio/voice", tail_s=1.0)
        await asyncio.sleep(SAMPLE_S)
        sampler.cancel()
        timeline.samples.append((time.monotonic(), thread_cpu(process_tree(front))))
    if result is None:
        raise RuntimeError(f"{server.http} turned the call away")
    pcm, rate = read_call_wav(wav)
    wall = timeline.samples[-1][0] - timeline.samples[0][0]
    threads = timeline.by_thread()
    spied = read_spy(spy_out)
    stages: Counter[str] = Counter()
    for (pid, tid), seconds in threads.items():
        if pid == front:
            stages["relay"] += seconds
        elif tid in spied:
            busy = sum(spied[tid].values())
            for stage, count in spied[tid].items():
                stages[stage] += seconds * count / busy
        else:
            stages["model_pools"] += seconds
    cpu = sum(threads.values())
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 3),
        "core_percent": round(100 * cpu / wall, 2),
        "states": timeline.by_state(origin, speech_spans(pcm, rate), speech_spans(result.heard_audio, 8000)),
        "stages_cpu_s": {k: round(v, 3) for k, v in stages.items()},
        "answers_ms": [t["first_sound_ms"] for t in result.turns],
    }


def summarize_calls(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Median share of a core over the calls; per state and per stage, shares of a core over all the calls."""
    wall = sum(c["wall_s"] for c in calls)
    state_cpu = {s: sum(c["states"]["cpu_s"][s] for c in calls) for s in STATES}
    state_wall = {s: sum(c["states"]["wall_s"][s] for c in calls) for s in STATES}
    stages = Counter[str]()
    for c in calls:
        stages.update(c["stages_cpu_s"])
    percents = [c["core_percent"] for c in calls]
    return {
        "calls": len(calls),
        "core_percent_median": round(statistics.median(percents), 2),
        "core_percent_max": round(max(percents), 2),
        "cpu_s_per_call_minute": round(60 * sum(c["cpu_s"] for c in calls) / wall, 2),
        "state_core_percent": {
            s: round(100 * state_cpu[s] / state_wall[s], 2) if state_wall[s] else None for s in STATES
        },
        "state_wall_s": {s: round(state_wall[s], 1) for s in STATES},
        "stage_core_percent": {k: round(100 * v / wall, 2) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])},
        "answers_ms": [ms for c in calls for ms in c["answers_ms"]],
    }


def server_settings(sim: ProviderSim) -> dict[str, str]:
    return on_simulator(sim, {"WORKERS": "1", "ACKNOWLEDGE_AFTER_MS": "0", "MAX_SESSIONS": "4"})


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    sim = ProviderSim(first_token_s=0.2, tokens_per_s=3000.0, answer=ANSWER).start()
    roots = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    calls = {kind: build_call(tmp / f"{kind}.wav", CALLS[kind]) for kind in args.calls}
    measured: dict[str, dict[str, list[dict[str, Any]]]] = {name: defaultdict(list) for name in roots}
    try:
        async with contextlib.AsyncExitStack() as stack:
            servers = {
                name: await stack.enter_async_context(agent_process(tmp, server_settings(sim), root=root))
                for name, root in roots.items()
            }
            for server in servers.values():  # warm: the first call on a worker is not counted
                await call_unless_rejected(calls[args.calls[-1]], f"{server.http}/twilio/voice", tail_s=1.0)
            for round_index in range(args.rounds):
                for kind, wav in calls.items():
                    names = list(servers)
                    if round_index % 2:
                        names.reverse()
                    for name in names:
                        await asyncio.sleep(2.0)  # the last call's wind-down is not this call's cost
                        call = await measure_call(servers[name], kind, wav, tmp, spy=not args.no_spy)
                        measured[name][kind].append(call)
                        logger.info(f"{name} {kind} round {round_index + 1}: {call['core_percent']}% of a core")
    finally:
        sim.stop()
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "servers": {name: {k: summarize_calls(v) for k, v in kinds.items()} for name, kinds in measured.items()},
        "calls": {name: dict(kinds) for name, kinds in measured.items()},
    }
    if args.baseline:
        report["ratio_this_to_baseline"] = {
            kind: round(
                report["servers"]["this"][kind]["core_percent_median"]
                / report["servers"]["baseline"][kind]["core_percent_median"],
                2,
            )
            for kind in args.calls
        }
    return report


def print_table(report: dict[str, Any]) -> None:
    print(f"CPU per call, {report['date']} UTC, {report['machine']}; % of one core")
    print(f"{'server':<9} {'call':<7} {'n':>2} {'median':>7} {'max':>6} {'silence':>8} {'caller':>7} {'agent':>6}")
    for name, kinds in report["servers"].items():
        for kind, row in kinds.items():
            states = row["state_core_percent"]
            cells = " ".join(
                f"{'-' if states[s] is None else states[s]:>{w}}" for s, w in zip(STATES, (8, 7, 6), strict=True)
            )
            print(
                f"{name:<9} {kind:<7} {row['calls']:>2} {row['core_percent_median']:>7} "
                f"{row['core_percent_max']:>6} {cells}"
            )
    print("by stage (% of one core over the calls):")
    for name, kinds in report["servers"].items():
        for kind, row in kinds.items():
            stages = ", ".join(f"{k} {v}" for k, v in row["stage_core_percent"].items())
            print(f"  {name:<9} {kind:<7} {stages}")
    if "ratio_this_to_baseline" in report:
        print(f"this / baseline (median % of a core): {report['ratio_this_to_baseline']}")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.call_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", nargs="+", choices=list(CALLS), default=list(CALLS))
    parser.add_argument("--rounds", type=int, default=3, help="calls of each kind per server")
    parser.add_argument("--baseline", type=Path, help="another checkout of this project, measured alongside")
    parser.add_argument("--no-spy", action="store_true", help="no py-spy: CPU by state only")
    parser.add_argument("--json", type=Path, help="write the full report here")
    args = parser.parse_args(argv)
    if not args.no_spy and shutil.which("py-spy") is None:
        parser.error("py-spy is not installed (pip install '.[bench]'), or pass --no-spy")
    logger.remove()
    logger.add(sys.stderr, level="INFO", filter=lambda r: r["name"].startswith(("bench", "__main__")))
    tmp = Path(tempfile.mkdtemp(prefix="bench-call-cpu-"))
    report = await run(args, tmp)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
