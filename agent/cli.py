"""`voice-agent` command line: `serve` (the demo server), `replay` (a recorded call through the pipeline), `call`
(call a server as a carrier would: Twilio, Telnyx or Plivo), `dial` (have a running server place an outbound call)
and `bench-llm` (time each LLM provider, or the simulator offline, and predict voice-to-voice per platform)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from loguru import logger

from agent import llm_bench as bench_llm
from agent.settings import Settings, SettingsError
from agent.telephony.registry import (  # the carriers whose protocol `call` speaks and `dial` calls through
    CARRIERS,
    DEFAULT_CARRIER,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voice-agent", description=__doc__)
    parser.add_argument("--env-file", default=".env", help="settings file read before the environment")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (pipecat's frame-level logs)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the browser demo and phone bridge server")
    serve.add_argument("--host", help="listen address (HOST)")
    serve.add_argument("--port", type=int, help="listen port (PORT)")

    replay = commands.add_parser("replay", help="play a recorded call (16/8 kHz mono WAV) into the agent")
    replay.add_argument("wav", type=Path)
    replay.add_argument("--report", type=Path, help="write the per-turn JSON report here")
    replay.add_argument("--out", type=Path, help="write the agent's replies (on the call's timeline) here")

    call = commands.add_parser(
        "call",
        help="call a server as a carrier does with a WAV as the caller (signed with the carrier's credential, if set)",
    )
    call.add_argument("wav", type=Path)
    call.add_argument(
        "--carrier",
        choices=list(CARRIERS),
        default=DEFAULT_CARRIER,
        help="the carrier's protocol",
    )
    call.add_argument(
        "--url",
        help="the server's call webhook (http/https: posted first, like the carrier; default "
        "http://127.0.0.1:7860/<carrier>/voice) or its stream (ws/wss: dialled directly)",
    )
    call.add_argument("--digits", default="", help="keys to press, as seconds:key pairs, e.g. 4.0:1,4.5:2,5.0:#")
    call.add_argument("--out", type=Path, help="write what the caller heard here")
    call.add_argument("--report", type=Path, help="write the per-turn JSON report here")

    dial = commands.add_parser("dial", help="have a running server call a number (POST /calls with OPERATOR_TOKEN)")
    dial.add_argument("number", help="the number to call, E.164 (e.g. +15551234567); it must match DIAL_ALLOWLIST")
    dial.add_argument("--carrier", choices=list(CARRIERS), default=DEFAULT_CARRIER, help="the carrier to call through")
    dial.add_argument("--greeting", help="what the agent says first (default: DIAL_GREETING)")
    dial.add_argument("--server", default="http://127.0.0.1:7860", help="the server's base URL")

    bench = commands.add_parser("bench-llm", help="time each LLM provider; predict voice-to-voice per platform")
    bench_llm.add_arguments(bench)

    args = parser.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if args.verbose else "INFO")
    try:
        settings = Settings.load(args.env_file)
        if args.command == "serve":
            from agent.server.app import serve as run_server

            overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
            run_server(Settings.load(args.env_file, **overrides))
            return 0
        if args.command == "replay":
            return asyncio.run(_replay(settings, args.wav, args.report, args.out))
        if args.command == "bench-llm":
            return bench_llm.main(settings, args)
        if args.command == "dial":
            from agent.dial_client import request_dial

            return asyncio.run(request_dial(settings, args.server, args.number, args.carrier, args.greeting))
        return _call(settings, args)
    except (SettingsError, ValueError, RuntimeError, OSError) as e:
        print(f"voice-agent: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _call(settings: Settings, args: argparse.Namespace) -> int:
    from agent.phone_client import caller_for, run_call

    credentials = CARRIERS[args.carrier].caller_credentials(settings)
    url = args.url or f"http://127.0.0.1:7860/{args.carrier}/voice"
    dialect = caller_for(args.carrier, **credentials)
    return asyncio.run(run_call(args.wav, url, dialect, digits=_digits(args.digits), out=args.out, report=args.report))


def _digits(text: str) -> list[tuple[float, str]]:
    """ "4.0:1,4.5:#" -> [(4.0, "1"), (4.5, "#")]."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        at, _, key = item.partition(":")
        try:
            pairs.append((float(at), key))
        except ValueError:
            raise ValueError(f"--digits: {item!r} is not seconds:key") from None
        if len(key) != 1 or key not in "0123456789*#ABCD":
            raise ValueError(f"--digits: {key!r} is not a key of a phone keypad")
    return pairs


async def _replay(settings: Settings, wav: Path, report: Path | None, out: Path | None) -> int:
    from agent.runtime import AgentRuntime
    from pipelines.replay import read_call_wav, replay_call, write_wav

    read_call_wav(wav)  # fail fast, before loading any model
    async with AgentRuntime.start(settings) as runtime:
        result = await replay_call(runtime, wav)
    for turn in result.turns:
        latency = turn["answer_ms"]
        filler = f", filler at {turn['filler_ms']:.0f} ms" if turn["filler_ms"] is not None else ""
        print(
            f"turn {turn['turn']}: caller: {turn['user_text']!r}\n"
            f"        agent:  {turn['bot_text']!r}\n"
            f"        answer after: {'-' if latency is None else f'{latency:.0f} ms'}{filler}"
            f"  ({turn['outcome']}{', cut off' if turn['cut'] else ''})"
        )
    s = result.summary
    if s["count"]:
        print(
            f"{s['count']} of {s['turns']} turns answered: p50 {s['p50_ms']:.0f} ms, p95 {s['p95_ms']:.0f} ms, "
            f"max {s['max_ms']:.0f} ms; {s['within_budget']} within budget"
        )
    if report:
        report.write_text(result.to_json())
    if out:
        write_wav(out, result.reply_audio, result.reply_sample_rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
