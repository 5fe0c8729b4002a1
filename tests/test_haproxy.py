"""Two `voice-agent serve` servers behind a real HAProxy (Debian's package) running deploy/haproxy.cfg as shipped,
all on 127.0.0.1, in signed mode as a deployment runs them (PUBLIC_URL is HAProxy's address), with real phone calls
placed the way Twilio places them (signed webhook, then the signed stream it names, with the call's token): calls
spread over both servers; a draining server takes no new call while its live call goes on to the end; killing one
server does not disturb the other's call; with no server left, each carrier (Twilio, Telnyx, Plivo) still gets its
busy answer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from agent.phone_client import place_call
from bench.audio import build_call
from bench.provider_sim import ProviderSim
from bench.server_process import ROOT, agent_process, free_port, on_simulator
from tests.servers import wait_until

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
AUTH_TOKEN = "haproxy-test-auth-token"
BUSY_ANSWERS = {
    "twilio": '<Response><Reject reason="busy"/></Response>',
    "telnyx": '<Response><Reject reason="busy"/></Response>',
    "plivo": '<Response><Hangup reason="busy"/></Response>',
}
pytestmark = [
    pytest.mark.slow,
    pytest.mark.process,
    pytest.mark.skipif(not Path(HAPROXY).exists(), reason="Debian's haproxy is not installed"),
]


@contextlib.contextmanager
def haproxy(tmp_path: Path, listen: int, servers: list[int]):
    env = {
        **os.environ,
        "VOICE_AGENT_LISTEN": f"127.0.0.1:{listen}",
        **{f"VOICE_AGENT_{i}": f"127.0.0.1:{port}" for i, port in enumerate(servers, 1)},
    }
    config = str(ROOT / "deploy" / "haproxy.cfg")
    subprocess.run([HAPROXY, "-c", "-q", "-f", config], env=env, check=True)
    with (tmp_path / "haproxy.log").open("wb") as log:
        process = subprocess.Popen([HAPROXY, "-db", "-f", config], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(10)


async def active(server) -> int:
    return (await server.get("/ready")).json()["active"]


def at(server, count: int):
    async def condition() -> bool:
        return await active(server) == count

    return condition


def marked_down(server):
    """HAProxy checks /ready every second and marks a server down at the first 503: give it two checks."""

    async def condition() -> bool:
        if (await server.get("/ready")).status_code != 503:
            return False
        await asyncio.sleep(2.2)
        return True

    return condition


async def test_two_servers_behind_haproxy(tmp_path):
    sim = ProviderSim(answer="Sure. That is an easy one to answer.").start()
    ports = [free_port(), free_port()]
    listen = free_port()
    settings = on_simulator(
        sim,
        {
            "WORKERS": "2",
            "MAX_SPOKEN_SENTENCES": "1",
            "ADMISSION": "count",
            "PUBLIC_URL": f"http://127.0.0.1:{listen}",  # what Twilio dials and signs: HAProxy's address
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "STREAM_TOKEN_SECRET": "shared-by-both-servers-0123456789",
        },
    )
    webhook = f"http://127.0.0.1:{listen}/twilio/voice"
    long_call = build_call(
        tmp_path / "long.wav", [0.4, "ten_of_clubs.wav", 3.5, "amiable.wav", 3.5, "eight_of_spades.wav", 1.0]
    )
    short_call = build_call(tmp_path / "short.wav", [0.4, "ten_of_clubs.wav", 20.0])
    try:
        async with contextlib.AsyncExitStack() as stack:
            servers = [
                agent_process(tmp_path, {**settings, "INSTANCE_NAME": f"agent-{i}"}, port)
                for i, port in enumerate(ports, 1)
            ]
            one, two = await asyncio.gather(*(stack.enter_async_context(server) for server in servers))
            stack.enter_context(haproxy(tmp_path, listen, ports))
            await wait_until(lambda: _up(listen), 15)

            # Calls spread: the second call goes to the server without an open call (leastconn).
            first = asyncio.create_task(place_call(long_call, webhook, auth_token=AUTH_TOKEN, tail_s=2.5))
            await wait_until(lambda: _total([one, two], 1), 15)
            drained, other = (one, two) if await active(one) == 1 else (two, one)
            second = asyncio.create_task(place_call(short_call, webhook, auth_token=AUTH_TOKEN, max_tail_s=30))
            await wait_until(at(other, 1), 15)
            assert await active(drained) == 1

            # A draining server takes no new call (though it has a free worker); its live call goes on.
            drained.process.send_signal(signal.SIGTERM)
            await wait_until(marked_down(drained), 10)
            third = asyncio.create_task(place_call(short_call, webhook, auth_token=AUTH_TOKEN, max_tail_s=30))
            await wait_until(at(other, 2), 15)
            assert await active(drained) == 1

            # Killing the other server (front and workers) leaves the draining server's call undisturbed.
            other.process.send_signal(signal.SIGKILL)
            for pid in other.workers():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            dropped = await asyncio.gather(second, third)
            assert all(r is not None and r.closed_by_server for r in dropped)
            result = await first
            assert result is not None and not result.closed_by_server  # the caller hung up, nobody cut it off
            assert [t["first_sound_ms"] is not None for t in result.turns] == [True, True, True], result.turns

            # The drained server exits once its last call is over. No server left: every carrier still hears busy.
            assert await drained.exited(30) == 0
            for carrier, busy_answer in BUSY_ANSWERS.items():
                async with httpx.AsyncClient() as client:
                    busy = await client.post(f"http://127.0.0.1:{listen}/{carrier}/voice", data={"From": "+1555"})
                assert busy.status_code == 200 and busy.text.endswith(busy_answer), (carrier, busy.text)
    finally:
        sim.stop()


async def _up(port: int) -> bool:
    async with httpx.AsyncClient() as client:
        with contextlib.suppress(httpx.HTTPError):
            return (await client.get(f"http://127.0.0.1:{port}/ready")).status_code == 200
    return False


async def _total(servers, count: int) -> bool:
    return sum([await active(s) for s in servers]) == count
