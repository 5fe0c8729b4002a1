"""`voice-agent serve` as an operator runs it: a front process and two warm worker processes. Real phone calls
(a carrier's webhook, then its media stream: Twilio's, Telnyx's and Plivo's; recorded speech; the LLM is the
provider simulator speaking Cerebras' wire format), real processes, real signals. The front shows what the workers
see (provider rate limits, input bounds broken), and a worker's runtime shares the machine's one embedded LLM
server."""

from __future__ import annotations

import asyncio
import os
import re
import signal

import httpx
import pytest
import websockets

from agent import settings as settings_module
from agent.phone_client import caller_for, place_call
from agent.runtime import AgentRuntime
from agent.server.machine import process_tree, tree_pss_bytes
from agent.server.metrics import ProviderReading, combine_readings
from bench.audio import build_call
from bench.provider_sim import ProviderSim
from bench.server_process import agent_process, cmdline, free_port, on_simulator
from bench.twilio_wire import start_message
from tests.carrier_doubles import PLIVO_ID, PLIVO_TOKEN, PlivoDouble
from tests.conftest import local_settings
from tests.servers import wait_until

pytestmark = pytest.mark.process

MB = 1024 * 1024


def plivo_caller():
    """Plivo as it places calls to this server: signed, from the account the server is configured with."""
    return caller_for("plivo", auth_token=PLIVO_TOKEN, auth_id=PLIVO_ID)


@pytest.fixture(scope="module")
async def plivo():
    """Plivo's REST API, played by its double: it places our outbound calls and answers them as a callee."""
    async with PlivoDouble(plivo_caller).running() as double:
        yield double


@pytest.fixture(scope="module")
async def server(tmp_path_factory, plivo):
    sim = ProviderSim(answer="Sure. That is easy.").start()  # short answers keep the calls short
    port = free_port()
    settings = {
        "WORKERS": "2",
        "MAX_SPOKEN_SENTENCES": "1",
        "ADMISSION": "count",  # this file is about the workers; admission by load has its own tests
        "SESSION_IDLE_TIMEOUT_SECONDS": "3",  # the calls below talk or send silence all along: only the idle one is cut
        # Plivo signed, and able to dial (through its double); Twilio and Telnyx unsigned, called from this machine.
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TWILIO_ALLOW_UNSIGNED": "true",
        "PLIVO_AUTH_ID": PLIVO_ID,
        "PLIVO_AUTH_TOKEN": PLIVO_TOKEN,
        "PLIVO_API_BASE_URL": plivo.base_url,
        "PLIVO_FROM_NUMBER": "+15550001000",
        "DIAL_ALLOWLIST": "+1555",
        "MACHINE_DETECTION": "false",
    }
    try:
        async with agent_process(tmp_path_factory.mktemp("workers"), on_simulator(sim, settings), port) as running:
            yield running
    finally:
        sim.stop()


# One question, and the caller on the line long enough for its answer on a busy machine (the caller hangs up once
# the line has been quiet for the call's tail after the recording).
SHORT_CALL = [0.3, "ten_of_clubs.wav", 3.0]
CALLERS = {"telnyx": lambda: caller_for("telnyx"), "plivo": plivo_caller}


def llm_servers() -> list[int]:
    return [pid for pid in process_tree() if "llama_cpp.server" in cmdline(pid)]


@pytest.mark.slow
async def test_a_worker_runtime_shares_the_machine_s_local_llm_server(local_runtime, speech):
    url = local_runtime.llm.provider.base_url
    running = llm_servers()
    async with AgentRuntime.start(local_settings(), speech=speech, local_llm_url=url) as runtime:
        assert runtime.provider.base_url == url
        assert llm_servers() == running  # none started for this runtime


@pytest.mark.parametrize(
    ("cores", "available_gb", "expected"),
    [(2, 24, 8), (8, 24, 32), (2, 2, 3), (1, 0.5, 2)],  # four per core, as memory allows, at least two
)
def test_auto_workers_follow_the_cores_and_the_memory(monkeypatch, cores, available_gb, expected):
    monkeypatch.setattr(settings_module.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(settings_module, "available_memory_bytes", lambda: int(available_gb * 1024**3))
    assert local_settings(workers="auto").worker_count == expected
    assert local_settings(workers=5).worker_count == 5


def answered(result) -> list[bool]:
    return [t["first_sound_ms"] is not None for t in result.turns]


async def answered_turns(server) -> float:
    """Phone turns answered so far, from the server's /metrics."""
    metrics = (await server.get("/metrics")).text
    found = re.search(r'voice_agent_answer_seconds_count\{channel="phone"\} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


def no_live_call(server):
    async def condition() -> bool:
        return (await server.get("/ready")).json()["active"] == 0

    return condition


@pytest.mark.slow
async def test_memory_stays_flat_over_sequential_calls_in_warm_workers(server, tmp_path):
    workers = server.workers()
    assert len(workers) == 2
    call = build_call(tmp_path / "short.wav", SHORT_CALL)
    pss = []
    for _ in range(8):
        result = await place_call(call, f"{server.http}/twilio/voice", tail_s=0.8)
        assert answered(result) == [True], result.turns
        await wait_until(no_live_call(server))
        await asyncio.sleep(0.5)  # the worker winds its call down and tidies up
        pss.append(tree_pss_bytes(server.process.pid))
    growth = (pss[-1] - pss[0]) / MB
    print(f"PSS (front, workers, LLM) after call 1: {pss[0] / MB:.0f} MB, after call 8: {pss[-1] / MB:.0f} MB")
    assert growth <= 30, [round(p / MB) for p in pss]
    assert server.workers() == workers  # reused warm: no process was started for these calls


@pytest.mark.parametrize("carrier", ["telnyx", "plivo"])
@pytest.mark.slow
async def test_telnyx_and_plivo_calls_are_admitted_and_answered_in_a_worker(server, carrier, tmp_path):
    """The front reserves the call at the carrier's webhook, names itself in the stream URL, claims the slot at
    the stream's start and relays the carrier's own opening (Telnyx: `connected` + `start`; Plivo: `start` alone)
    to a warm worker, which reads it again and runs the call: answered, marks (Plivo: checkpoints) echoed."""
    call = build_call(tmp_path / "short.wav", SHORT_CALL)
    workers = server.workers()
    result = await place_call(call, f"{server.http}/{carrier}/voice", dialect=CALLERS[carrier](), tail_s=0.8)
    assert re.fullmatch(rf"ws://127\.0\.0\.1:\d+/{carrier}/stream/[\w.-]+", result.invite.url), result.invite.url
    assert answered(result) == [True], result.turns
    assert any(name.startswith("answer-") for name in result.marks_echoed), result.marks_echoed
    assert re.search(rf"\| worker-\d+ \| {carrier}: call {re.escape(result.call_sid)} stream", server.log())
    await wait_until(no_live_call(server))
    assert (await server.get("/ready")).json()["active"] == 0 and server.workers() == workers


@pytest.mark.slow
async def test_an_outbound_call_opens_with_its_greeting_in_a_worker(server, plivo, tmp_path):
    """`POST /calls` reserves the slot through the admission and has Plivo dial; the callee's answer webhook (named
    after this instance) finds the reservation, and the greeting travels with the relayed stream to the worker,
    which says it before the callee speaks."""
    plivo.callee_wav = build_call(tmp_path / "callee.wav", [4.0, "ten_of_clubs.wav", 2.0])
    async with httpx.AsyncClient() as client:
        body = {"to": "+15551234567", "carrier": "plivo", "greeting": "Hello, this is the clinic calling."}
        response = await client.post(f"{server.http}/calls", json=body)
    assert response.status_code == 201, response.text
    await wait_until(lambda: _has_calls(plivo), 15)
    [call] = plivo.calls.values()
    await asyncio.wait_for(call.task, 60)
    result = call.result
    assert result.reply_starts and result.reply_starts[0] < result.turns[0]["speech_start_s"], result.reply_starts
    assert re.search(rf"\| worker-\d+ \| plivo: call {re.escape(result.call_sid)} stream", server.log())
    assert not plivo.errors, plivo.errors
    await wait_until(no_live_call(server))


async def _has_calls(double) -> bool:
    return bool(double.calls)


def test_provider_readings_from_several_workers_combine():
    older = ProviderReading("cerebras", {"requests": 90}, {"requests": 30.0}, resting_s=0.0, failures={"quota": 1})
    newer = ProviderReading("cerebras", {"requests": 80}, {"requests": 20.0}, resting_s=5.0, failures={"network": 2})
    retired = ProviderReading("cerebras", failures={"quota": 3})
    [combined] = combine_readings([(110.0, [newer]), (100.0, [older]), (0.0, [retired])], now=112.0)
    assert combined.remaining == {"requests": 80}  # the newest headers, their reset counted down to now
    assert combined.reset_s == {"requests": 18.0}
    assert combined.resting_s == 3.0
    assert combined.failures == {"quota": 4, "network": 2}  # a worker that died keeps its failures counted


@pytest.mark.slow
async def test_the_front_shows_what_the_workers_see(server):
    """The provider's rate-limit headers the workers read and an input bound a caller broke in a worker reach the
    front's /metrics; the idle caller is cut with the worker's 1008 "idle", relayed by the front."""
    metrics = (await server.get("/metrics")).text
    assert re.search(r'^voice_agent_llm_ratelimit_remaining\{limit="requests",provider="cerebras"\} \d', metrics, re.M)
    assert 'voice_agent_llm_provider_resting_seconds{provider="cerebras"} 0.0' in metrics
    async with websockets.connect(f"{server.ws}/twilio/stream") as silent:
        await silent.send(start_message())
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(20):
                async for _ in silent:
                    pass
    assert silent.close_code == 1008 and silent.close_reason == "idle"
    metrics = (await server.get("/metrics")).text
    assert 'voice_agent_input_disconnects_total{channel="phone",reason="idle"} 1.0' in metrics
    await wait_until(no_live_call(server))


@pytest.mark.slow
async def test_calls_are_isolated_and_a_crashed_worker_is_replaced(server, tmp_path):
    call = build_call(tmp_path / "long.wav", [0.4, "ten_of_clubs.wav", 3.5, "amiable.wav", 2.5])
    webhook = f"{server.http}/twilio/voice"
    workers = server.workers()
    before = await answered_turns(server)
    calls = [asyncio.create_task(place_call(call, webhook, tail_s=2.5)) for _ in range(2)]

    async def both_answered_once() -> bool:
        return await answered_turns(server) >= before + 2

    await wait_until(both_answered_once, 30)
    assert (await server.get("/ready")).status_code == 503  # both workers busy: full
    started = re.findall(r"\| (worker-\d+) \| twilio: call (CA\w+) stream", server.log())
    assert len({name for name, _ in started[-2:]}) == 2, started  # each call in a worker of its own
    os.kill(workers[0], signal.SIGKILL)
    survivor, dropped = sorted(await asyncio.gather(*calls), key=lambda r: r.closed_by_server)
    assert answered(survivor) == [True, True], survivor.turns  # answered after the crash too: it never noticed
    assert dropped.closed_by_server and not all(answered(dropped)), dropped.turns

    async def replaced() -> bool:
        return len(server.workers()) == 2 and workers[0] not in server.workers()

    await wait_until(replaced, 120)
    await wait_until(lambda: _ready(server), 30)  # the new worker is warm and takes calls


async def _ready(server) -> bool:
    return (await server.get("/ready")).status_code == 200
