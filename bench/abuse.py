"""What a hostile client costs everyone else: another caller's answer time, and the server's memory, while one
client abuses the server, against the same call with nobody abusing it, alternating, several rounds.

The server is `voice-agent serve` in its own process (local models, unsigned on 127.0.0.1); the caller is
`voice-agent call`'s client dialling the stream with two fixture questions; latency is measured as the caller
hears it (end of each utterance -> first sound of the reply). The attacker runs in a third process at the lowest
CPU priority, standing in for a machine elsewhere (on this 2-core box it still competes for the CPU a little).
Memory is the server process's resident set, its peak during the call above its level just before. The abuses
(each kept up for the whole call, reconnecting when cut):

- `phone_flood`: an admitted stream sending speech at 10x real time
- `silence_flood`: the same with silence: the cost of the socket and the guard alone, without the speech pipeline
- `monologue`: for comparison, no abuse of the socket at all: a second caller talking without a pause, in real time
- `page_flood`: the page socket sending audio at 10x real time
- `malformed`: an admitted stream sending malformed and nested-JSON messages, 500 a second
- `oversize`: 1 MiB websocket frames, one socket after another
- `forged`: stream upgrades from another machine (through a proxy), refused, one after another

    python -m bench.abuse                        # every abuse, 3 rounds
    python -m bench.abuse --abuses phone_flood --rounds 2 --json abuse.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import websockets

from agent.phone_client import place_call, to_phone_audio
from bench.audio import build_call, load
from bench.server_process import Loopback, free_port
from bench.twilio_wire import media_message, start_message

CALL = [0.5, "ill_disposed.wav", 4.0, "ten_of_clubs.wav", 4.0]
ABUSE_SPEED = 10


class Server(Loopback):
    """`voice-agent serve` in a subprocess on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__(port=free_port())
        # HOST and PORT go on the command line: in the environment, the local llama.cpp server would read them too.
        env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT")}
        env.update(LLM_PROVIDER="local", MAX_SPOKEN_SENTENCES="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        env.update(LLM_FIRST_TOKEN_TIMEOUT_MS="10000")  # the start-up warm-up survives a machine busy elsewhere
        self.log = tempfile.NamedTemporaryFile(prefix="abuse-server-", suffix=".log", delete=False)  # noqa: SIM115
        command = ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "--env-file", "", *command], env=env, stdout=self.log, stderr=self.log
        )

    async def ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.http}/health")).status_code == 200:
                        return
                await asyncio.sleep(0.5)
        raise RuntimeError(f"the server did not start; its log: {self.log.name}")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


async def flood(url: str, messages: list[str | bytes], per_tick: int, opening: list[str], **connect: Any) -> None:
    """Send `messages` round and round, `per_tick` every 20 ms, reconnecting whenever the server cuts us."""
    while True:
        with contextlib.suppress(websockets.WebSocketException, OSError):
            async with websockets.connect(url, **connect) as ws:
                for message in opening:
                    await ws.send(message)
                for i in range(10**9):
                    await ws.send(messages[i % len(messages)])
                    if i % per_tick == 0:
                        await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)


async def knock(url: str, first: bytes | None = None, **connect: Any) -> None:
    """Open sockets one after another (sending `first`, if given), each refused or closed by the server."""
    while True:
        with contextlib.suppress(websockets.WebSocketException, OSError):
            async with websockets.connect(url, **connect) as ws:
                if first is not None:
                    await ws.send(first)
                await ws.recv()
        await asyncio.sleep(0.01)


def abuses(port: int) -> dict[str, Callable[[], Awaitable[None]]]:
    speech = to_phone_audio(load("ten_of_clubs.wav").tobytes(), 16000)
    phone_frames = [media_message(speech[i : i + 160].ljust(160, b"\xff")) for i in range(0, len(speech), 160)]
    pcm = load("ill_disposed.wav").tobytes()
    page_frames = [pcm[i : i + 640].ljust(640, b"\x00") for i in range(0, len(pcm), 640)]
    malformed = ["{", "[" * 60_000, json.dumps({"event": "media", "media": "x"}), "x" * 60_000]
    http, stream, page = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/twilio/stream", f"ws://127.0.0.1:{port}/ws"
    return {
        "phone_flood": lambda: flood(stream, phone_frames, ABUSE_SPEED, [start_message()]),
        "silence_flood": lambda: flood(stream, [media_message(b"\xff" * 160)], ABUSE_SPEED, [start_message()]),
        "monologue": lambda: flood(stream, phone_frames, 1, [start_message()]),
        "page_flood": lambda: flood(page, page_frames, ABUSE_SPEED, [], origin=http),
        "malformed": lambda: flood(stream, malformed, 10, [start_message()]),
        "oversize": lambda: knock(stream, b"\x00" * 2**20),
        "forged": lambda: knock(stream, additional_headers={"X-Forwarded-For": "203.0.113.9"}),
    }


async def measured_call(server: Server, wav: Path) -> tuple[list[float], float]:
    """The caller's heard latencies and the server's peak memory growth during the call (MB)."""
    baseline = peak = server.rss_mb()

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, server.rss_mb())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        result = await place_call(wav, f"{server.ws}/twilio/stream")
    finally:
        sampler.cancel()
    return [t["first_sound_ms"] for t in result.turns if t["first_sound_ms"] is not None], peak - baseline


def summary(latencies: list[float], turns: int, growth: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] if ordered else None
    return {
        "answered": f"{len(latencies)}/{turns}",
        "p50_ms": round(statistics.median(ordered)) if ordered else None,
        "p95_ms": None if p95 is None else round(p95),
        "memory_growth_mb_max": round(max(growth), 1),
    }


async def run(names: list[str], rounds: int) -> dict[str, Any]:
    server = Server()
    try:
        await server.ready()
        with tempfile.TemporaryDirectory() as tmp:
            wav = build_call(Path(tmp) / "call.wav", CALL)
            await measured_call(server, wav)  # warm-up: the first call of a process allocates for good
            results: dict[str, Any] = {}
            for name in names:
                quiet: tuple[list[float], list[float]] = ([], [])
                loud: tuple[list[float], list[float]] = ([], [])
                for _ in range(rounds):
                    latencies, growth = await measured_call(server, wav)
                    quiet[0].extend(latencies)
                    quiet[1].append(growth)
                    attacker = subprocess.Popen(
                        [
                            "nice",
                            "-n",
                            "19",
                            sys.executable,
                            "-m",
                            "bench.abuse",
                            "--attack",
                            name,
                            "--port",
                            str(server.port),
                        ],
                        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    await asyncio.sleep(3.0)  # the abuse is in full swing before the caller dials
                    try:
                        latencies, growth = await measured_call(server, wav)
                    finally:
                        attacker.terminate()
                        attacker.wait(10)
                    loud[0].extend(latencies)
                    loud[1].append(growth)
                    await asyncio.sleep(6)  # let the server drop the attacker's socket and settle
                turns = 2 * rounds
                results[name] = {
                    "alone": summary(quiet[0], turns, quiet[1]),
                    "abused": summary(loud[0], turns, loud[1]),
                }
                alone, abused = results[name]["alone"], results[name]["abused"]
                if alone["p95_ms"] is not None and abused["p95_ms"] is not None:
                    results[name]["p95_delta_ms"] = abused["p95_ms"] - alone["p95_ms"]
                    results[name]["p50_ratio"] = round(abused["p50_ms"] / alone["p50_ms"], 2)
                print(name, json.dumps(results[name]), flush=True)
            return results
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--abuses", nargs="+", default=["phone_flood", "page_flood", "malformed", "oversize", "forged"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--attack", help=argparse.SUPPRESS)  # internal: be the attacker of a server on --port
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.attack:
        asyncio.run(abuses(args.port)[args.attack]())
        return 0
    results = asyncio.run(run(args.abuses, args.rounds))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
