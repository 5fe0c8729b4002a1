"""Capacity benchmark: how many phone calls at once one `voice-agent serve` answers within the latency budget.

Calls are placed the whole way Twilio places them (the incoming-call webhook, then the Media Stream its TwiML
names) by simulated callers playing the same recorded call (three real utterances, `tests/fixtures`); the LLM is
the provider simulator at Cerebras' speed (200 ms to the first token, 3000 tokens/s); the acknowledgement is off
(ACKNOWLEDGE_AFTER_MS=0), so every answer is a real one. Latency is the caller's: from the end of each utterance in
the recording to the first sound of the reply on the line.

Three servers, each a real process, up at once in the same run (each level's rounds alternate between them):
  single   today's single process (WORKERS=0): every call on one event loop, admission by count only
  workers  the front and N warm worker processes, admission by count only: what the workers alone change
  admitted the front and workers with admission by load (the default): calls beyond what the machine can answer
           within the budget are turned away with Twilio's busy Reject instead of being answered slowly

    python -m bench.capacity                              # levels 1 2 4 8, 2 rounds each
    python -m bench.capacity --levels 1 2 4 --rounds 1 --json capacity.json
    python -m bench.capacity --soak 30                    # 30 minutes of back-to-back calls, memory every minute
    python -m bench.capacity --servers admitted --workers auto --levels 6 12 --spread 15
                                                          # a default server; calls start at random within 15 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loguru import logger

from agent.latency.turns import summarize
from agent.phone_client import PhoneCallResult, call_unless_rejected
from agent.server.machine import CpuMeter, pss_bytes, tree_pss_bytes
from bench.audio import build_call
from bench.provider_sim import ProviderSim
from bench.server_process import AgentProcess, agent_process, on_simulator

CALL = [0.5, "ill_disposed.wav", 4.0, "ten_of_clubs.wav", 4.0, "amiable.wav", 3.0]
ANSWER = "Sure, that is an easy one. Here is a short answer for you."
BUDGET_MS = 800.0
MB = 1024 * 1024


def server_settings(sim: ProviderSim, kind: str, workers: int | str) -> dict[str, str]:
    common = {
        "ACKNOWLEDGE_AFTER_MS": "0",
        "LATENCY_BUDGET_MS": str(BUDGET_MS),
        "MAX_SESSIONS": "64",
    }
    if kind == "single":
        return on_simulator(sim, {**common, "WORKERS": "0", "ADMISSION": "count"})
    if kind == "workers":
        return on_simulator(sim, {**common, "WORKERS": str(workers), "ADMISSION": "count"})
    return on_simulator(sim, {**common, "WORKERS": str(workers), "ADMISSION": "load"})


async def offer(
    server: AgentProcess, call: Path, calls: int, spread_s: float = 0.0, seed: int = 0
) -> list[PhoneCallResult | None]:
    """`calls` callers dial at the same moment, or, with `spread_s`, each at a random moment within that many
    seconds (as real calls come); None for each one the webhook turned away (busy)."""
    webhook = f"{server.http}/twilio/voice"
    starts = random.Random(seed).sample(range(int(spread_s * 1000) + calls), calls) if spread_s else [0] * calls

    async def caller(start_ms: int) -> PhoneCallResult | None:
        await asyncio.sleep(start_ms / 1000)
        return await call_unless_rejected(call, webhook, tail_s=2.5)

    return await asyncio.gather(*(caller(ms) for ms in starts))


async def settled(server: AgentProcess, timeout_s: float = 120.0) -> None:
    """Until the last round's calls are over and every worker is up (those warming up behind the first too) and idle
    again (wound down, tidied up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = (await server.get("/health")).json()
        workers = health.get("workers", 0)
        if health["sessions"] == 0 and health.get("workers_idle", 0) == health.get("workers_alive", 0) == workers:
            return
        await asyncio.sleep(0.5)
    logger.warning(f"{server.http}: still busy after {timeout_s:.0f} s")


async def background_cpu() -> float:
    """The machine's CPU busy share over one second while no benchmark call runs: other people's load."""
    meter = CpuMeter()
    meter.sample()
    await asyncio.sleep(1.0)
    meter.sample()
    return round(meter.busy_percent())


def level_summary(results: list[PhoneCallResult | None], offered: int) -> dict[str, Any]:
    taken = [r for r in results if r is not None]
    turns = [t["first_sound_ms"] for r in taken for t in r.turns]
    answered = [ms for ms in turns if ms is not None]
    return {
        "offered": offered,
        "admitted": len(taken),
        "busy": offered - len(taken),
        "turns": len(turns),
        "answered": len(answered),
        **summarize(answered),
    }


async def bench_servers(
    kinds: list[str],
    sim: ProviderSim,
    call: Path,
    levels: list[int],
    rounds: int,
    workers: int | str,
    tmp: Path,
    spread_s: float = 0.0,
) -> dict[str, Any]:
    """All the servers up at once; each level's rounds alternate between them, so that a change in the machine's
    other load over the run weighs on every server alike."""
    async with contextlib.AsyncExitStack() as stack:
        servers = dict(
            zip(
                kinds,
                await asyncio.gather(
                    *(stack.enter_async_context(agent_process(tmp, server_settings(sim, k, workers))) for k in kinds)
                ),
                strict=True,
            )
        )
        for server in servers.values():
            await offer(server, call, 1)  # a first call, not counted: the single process warms up lazily on it
        report: dict[str, Any] = {k: {"levels": {}, "pss_mb": {}, "background_cpu_percent": []} for k in kinds}
        for level in levels:
            results: dict[str, list[PhoneCallResult | None]] = {k: [] for k in kinds}
            for round_index in range(rounds):
                order = kinds[round_index % len(kinds) :] + kinds[: round_index % len(kinds)]
                for kind in order:
                    await settled(servers[kind])
                    report[kind]["background_cpu_percent"].append(await background_cpu())
                    results[kind] += await offer(servers[kind], call, level, spread_s, seed=level * 100 + round_index)
                    logger.info(f"{kind}: {level} calls at once, round {round_index + 1} done")
            for kind in kinds:
                report[kind]["levels"][level] = level_summary(results[kind], level * rounds)
                report[kind]["pss_mb"][level] = round(tree_pss_bytes(servers[kind].process.pid) / MB)
        return report


def within_budget(report: dict[str, Any]) -> int:
    """The highest level whose admitted calls all got answers, with p95 within the budget."""
    best = 0
    for level, row in report["levels"].items():
        if row["admitted"] and row["answered"] == row["turns"] and (row["p95_ms"] or 0) <= BUDGET_MS:
            best = max(best, int(level))
    return best


def print_table(report: dict[str, Any]) -> None:
    print(f"caller-side answer time (ms), {report['date']} UTC, {report['machine']}, {report['rounds']} rounds/level")
    print(f"{'server':<9} {'calls':>5} {'admitted':>8} {'busy':>5} {'answered':>9} {'p50':>6} {'p95':>6} {'PSS MB':>7}")
    for kind, result in report["servers"].items():
        for level, row in result["levels"].items():
            print(
                f"{kind:<9} {level:>5} {row['admitted']:>8} {row['busy']:>5} {row['answered']:>4}/{row['turns']:<4} "
                f"{row['p50_ms'] or 0:>6.0f} {row['p95_ms'] or 0:>6.0f} {result['pss_mb'][level]:>7}"
            )
        cpu = result["background_cpu_percent"]
        print(
            f"{kind:<9} highest level within the {BUDGET_MS:.0f} ms budget: {result['within_budget']}; "
            f"the machine's other load before its rounds: {min(cpu)}-{max(cpu)}% CPU"
        )


async def soak(sim: ProviderSim, call: Path, minutes: float, concurrent: int, workers: int, tmp: Path) -> dict:
    """`concurrent` callers dial back to back for `minutes` (a caller turned away tries again 5 s later); memory
    (PSS of the front and of each worker) and the minute's answer times sampled each minute."""
    async with agent_process(tmp, server_settings(sim, "admitted", workers)) as server:
        started = time.monotonic()
        samples: list[dict[str, Any]] = []
        minute: list[float] = []
        answered_calls = busy = 0

        async def caller() -> None:
            nonlocal answered_calls, busy
            while time.monotonic() - started < minutes * 60:
                result = await call_unless_rejected(call, f"{server.http}/twilio/voice", tail_s=2.5)
                if result is None:
                    busy += 1
                    await asyncio.sleep(5.0)
                else:
                    answered_calls += 1
                    minute.extend(t["first_sound_ms"] for t in result.turns if t["first_sound_ms"])

        async def sampler() -> None:
            while True:
                await asyncio.sleep(60)
                workers_mb = [round(pss_bytes(pid) / MB) for pid in server.workers()]
                total, front = tree_pss_bytes(server.process.pid), pss_bytes(server.process.pid)
                row = {"minute": len(samples) + 1, "pss_mb": round(total / MB), "front_mb": round(front / MB)}
                row |= {"workers_mb": workers_mb, "calls": answered_calls, "busy": busy, **summarize(minute)}
                samples.append(row)
                minute.clear()
                logger.info(f"soak: {row}")

        sampling = asyncio.create_task(sampler())
        await asyncio.gather(*(caller() for _ in range(concurrent)))
        sampling.cancel()
        return {
            "minutes": minutes,
            "concurrent": concurrent,
            "samples": samples,
            "pss_slope_mb_per_hour": slope_per_hour([(r["minute"], r["pss_mb"]) for r in samples]),
            "pss_first_last_mb": [samples[0]["pss_mb"], samples[-1]["pss_mb"]] if samples else [],
        }


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (minute, MB) points, in MB per hour: a leak's rate, robust to one noisy sample."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return round(60 * sum((x - mean_x) * (y - mean_y) for x, y in points) / var, 1)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8], help="calls at once")
    parser.add_argument("--rounds", type=int, default=2, help="times each level is offered")
    parser.add_argument(
        "--workers", default="", help="worker processes, or auto as a default server (default: the highest level)"
    )
    parser.add_argument(
        "--spread", type=float, default=0.0, help="each call starts at a random moment within this many seconds"
    )
    parser.add_argument("--servers", nargs="+", default=["single", "workers", "admitted"])
    parser.add_argument("--soak", type=float, metavar="MINUTES", help="run the soak instead, this many minutes")
    parser.add_argument("--soak-calls", type=int, default=2, help="callers at once during the soak")
    parser.add_argument("--json", type=Path, help="write the full report here")
    args = parser.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="INFO", filter=lambda r: r["name"].startswith(("bench", "__main__")))
    tmp = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
    call = build_call(tmp / "call.wav", CALL)
    sim = ProviderSim(first_token_s=0.2, tokens_per_s=3000.0, answer=ANSWER).start()
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "rounds": args.rounds,
    }
    try:
        if args.soak:
            report["soak"] = await soak(sim, call, args.soak, args.soak_calls, int(args.workers or 2), tmp)
            for row in report["soak"]["samples"]:
                print(row)
            soaked = report["soak"]
            trend = soaked["pss_slope_mb_per_hour"]
            print(f"PSS first/last minute: {soaked['pss_first_last_mb']} MB; trend {trend} MB/h")
        else:
            workers = args.workers or max(args.levels)
            report["workers"] = workers
            report["spread_s"] = args.spread
            report["servers"] = await bench_servers(
                args.servers, sim, call, args.levels, args.rounds, workers, tmp, args.spread
            )
            for result in report["servers"].values():
                result["within_budget"] = within_budget(result)
            print_table(report)
    finally:
        sim.stop()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


async def main_until_terminated() -> int:
    """`main()`, with SIGTERM cancelling it as Ctrl-C does: the servers it started are stopped on the way out, not
    left running as orphans."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await main()
    except asyncio.CancelledError:
        print("terminated: the servers started are stopped", file=sys.stderr)
        return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(asyncio.run(main_until_terminated()))
