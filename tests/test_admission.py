"""Admission by load: the decisions on given measurements, then the real thing on a server (webhook TwiML, /ready,
/metrics, the drain's goodbye) with real calls."""

from __future__ import annotations

import asyncio
import random
import re

import httpx
import numpy as np
import pytest
import soxr

from agent.latency.turns import LatencyBudget, Turn
from agent.llm.simulator import ProviderSim
from agent.phone_client import call_unless_rejected, place_call
from agent.runtime import AgentRuntime
from agent.server.admission import Admission, CallCpu
from agent.server.app import create_app
from agent.server.lifecycle import drain
from agent.server.machine import CpuMeter
from agent.speech.phrases import DRAIN_GOODBYE
from bench.audio import build_call, word_error_rate
from bench.serving import serving
from tests.conftest import local_settings, sim_settings
from tests.servers import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scripted_cpu(busy_percent: float) -> CpuMeter:
    """A meter over two samples of the given busy share (the meter's own arithmetic, /proc not read)."""
    samples = iter([(0.0, 0.0), (busy_percent, 100.0)])
    meter = CpuMeter(read=lambda: next(samples))
    meter.sample()
    meter.sample()
    return meter


def admission(idle: int = 4, cpu: float = 10.0, cores: int = 8, **settings) -> tuple[Admission, Clock]:
    clock = Clock()
    values = {"max_sessions": 8, "admission": "load", "admission_min_turns": 2, **settings}
    gate = Admission(
        local_settings(**values), idle_workers=lambda: idle, cpu=scripted_cpu(cpu), clock=clock, cores=cores
    )
    return gate, clock


def answer(gate: Admission, level: int, *ms: float) -> None:
    """File answers as if `level` calls were live."""
    for value in ms:
        gate.answers.add(level, value)


def test_the_first_call_is_taken_even_on_a_busy_machine():
    gate, _ = admission(cpu=99.0)
    answer(gate, 1, 2000, 2500, 3000)  # even when single calls were slow (a slow provider)
    slot = gate.admit("browser")
    assert slot is not None and gate.active == 1
    assert gate.admit("browser") is None  # but not a second one: the CPU is saturated
    slot.release()
    slot.release()  # twice is harmless
    assert gate.active == 0


def test_a_level_that_answered_over_budget_reopens_when_the_levels_below_say_it_fits():
    gate, clock = admission()
    answer(gate, 1, 500, 520, 560)
    answer(gate, 2, 700, 760)
    first = gate.admit("phone")
    assert gate.admit("phone") is not None  # level 2 answered within the 800 ms budget
    answer(gate, 3, 900, 1100)  # level 3 was slow, and slower than single calls by far
    assert gate.capacity() == 2
    assert gate.admit("phone") is None
    assert "3 calls over 800 ms" in (gate.refusal() or "")
    clock.now += 121  # every turn has left the window, but what one and two calls cost is still known
    assert "3 calls predicted over" in (gate.refusal() or "")
    answer(gate, 1, *[410] * 20)
    answer(gate, 2, *[460] * 20)  # calls got faster (a busy neighbour left): three are predicted at ~510 ms
    assert gate.admit("phone") is not None
    assert first is not None


def test_an_unmeasured_level_is_predicted_from_the_levels_below():
    gate, clock = admission()
    answer(gate, 1, 500, 520, 500)
    answer(gate, 2, 580, 600, 590)  # each added call costs ~80 ms: 3 calls ~680, 4 ~760 ms (over 720: budget - 10%)
    gate.admit("phone"), gate.admit("phone")
    assert gate.refusal() is None and gate.capacity() == 3
    answer(gate, 2, 700, 720, 740)  # now the second call costs ~220 ms: a third would answer at ~960
    assert gate.capacity() == 2
    assert "3 calls predicted over 720 ms" in (gate.refusal() or "")
    assert gate.admit("phone") is None
    clock.now += 121
    answer(gate, 2, 700, 720, 740)  # busy ever since: the single calls left the window, their cost is still known
    assert gate.capacity() == 2 and "3 calls predicted" in (gate.refusal() or "")


def test_the_next_level_is_predicted_from_what_each_live_call_costs_the_cpu():
    gate, _ = admission(idle=8, max_sessions=16)
    for level in (1, 2, 3):
        answer(gate, level, 500, 520, 510)  # up to three calls answered as fast as one
    for _ in range(30):
        gate.call_cpu.observe(5.0, 0)  # other work: 5 % of the machine
    for _ in range(30):
        gate.call_cpu.observe(5.0 + 3 * 20.0, 3)  # three calls live, each 20 % of the machine
    for _ in range(3):
        gate.admit("phone")
    assert gate.call_cpu.predicted(4) == pytest.approx(85.0, abs=1.0)
    assert gate.refusal() is None  # a fourth: 85 % busy, under 90
    gate.admit("phone")
    assert "CPU predicted 105% busy at 5 calls" in (gate.refusal() or "")
    assert gate.capacity() == 4


def test_other_work_on_the_machine_is_not_billed_to_the_calls():
    measured, inferred = CallCpu(), CallCpu()
    for _ in range(30):  # two live calls use 16 % of the machine; a neighbour (or a worker warming up) 50 % more
        measured.observe(busy_percent=70.0, live=2, calls_percent=16.0)
        inferred.observe(busy_percent=70.0, live=2)
    assert measured.per_call == pytest.approx(8.0) and measured.background == pytest.approx(54.0)
    assert measured.predicted(4) == pytest.approx(86.0)
    assert inferred.predicted(4) == pytest.approx(140.0)  # without the workers' own CPU, the calls take the blame


def test_the_machine_ramps_up_by_what_it_has_answered_within_budget():
    fresh, _ = admission(idle=8, max_sessions=16)
    assert fresh.capacity() == 2  # nothing measured: two may try
    gate, _ = admission(idle=8, max_sessions=16)
    answer(gate, 1, 500, 520, 510)
    answer(gate, 2, 520, 530, 525)  # two calls as fast as one: the line would let any number in
    assert gate.capacity() == 3  # but only one more than the two proven
    answer(gate, 3, 530, 535, 540)
    assert gate.capacity() == 4
    answer(gate, 4, *[750] * 20)  # four close to the budget: within it, but not by the margin: no fifth
    assert gate.capacity() == 4
    assert "5 calls predicted over 720 ms" in (gate._load_refusal(5) or "")
    gate.call_cpu.observe(3.0, 0)
    for _ in range(30):
        gate.call_cpu.observe(3.0 + 2 * 8.0, 2)  # each call 8 % of the machine: six would be 51 %, under 54
    assert gate.capacity() == 4  # the measured answers still say no fifth
    roomy, _ = admission(idle=8, max_sessions=16)
    roomy.call_cpu.observe(3.0, 0)
    for _ in range(30):
        roomy.call_cpu.observe(3.0 + 2 * 8.0, 2)
    assert roomy.capacity() == 6  # nothing measured against it: the CPU has room for every turn


def simulate(gate: Admission, clock: Clock, starts: list[float], answer_ms, busy_percent) -> list[list[float]]:
    """Calls that start at `starts` (seconds) on a machine that answers a turn in `answer_ms(live calls)` and is
    `busy_percent(live calls)` busy, its CPU read every second as the server does; each call lasts 20 s with turns at
    5, 11 and 17 s. The answers of each admitted call."""
    events = [(t, "call", i) for i, t in enumerate(starts)] + [(float(t), "tick", -1) for t in range(60)]
    slots: dict[int, object] = {}
    answers: dict[int, list[float]] = {}
    origin = clock.now
    events.sort()
    while events:
        at, kind, call = events.pop(0)
        clock.now = origin + at
        if kind == "tick":
            gate.call_cpu.observe(busy_percent(gate.active), gate.active)
        elif kind == "call" and (slot := gate.admit("phone")) is not None:
            slots[call], answers[call] = slot, []
            events += [(at + t, "turn", call) for t in (5, 11, 17)] + [(at + 20, "end", call)]
        elif kind == "turn":
            ms = answer_ms(gate.active)
            answers[call].append(ms)
            gate.record_answer({"answer_ms": ms})
        elif kind == "end":
            slots.pop(call).release()
        events.sort()
    return list(answers.values())


@pytest.mark.parametrize("arrivals", ["random", "all at once"])
def test_calls_are_admitted_as_far_as_the_machine_answers_them_within_budget(arrivals):
    """A machine whose answers slow down with load (675 ms at 4 calls, 850 at 5), each call 12 % of it: however the
    calls come, none admitted is answered over the budget; at random moments the machine fills up to four (freely by
    the CPU: 52 %), the fifth predicted too slow from three and four; all at once it takes the two a fresh server may
    try."""
    gate, clock = admission(idle=16, max_sessions=16, admission_min_turns=3, cores=2)
    rng = random.Random(7)
    starts = sorted(rng.uniform(0, 15) for _ in range(12)) if arrivals == "random" else [0.0] * 12
    calls = simulate(gate, clock, starts, lambda live: 450 + 25 * (max(1, live) - 1) ** 2, lambda live: 4 + 12 * live)
    assert max(ms for call in calls for ms in call) <= 800
    assert len(calls) == (4 if arrivals == "random" else 2)


def test_six_calls_at_random_moments_are_all_taken_by_a_machine_that_answers_them_in_time():
    gate, clock = admission(idle=16, max_sessions=16, admission_min_turns=3, cores=2)
    answer(gate, 1, 450, 460, 455)  # the server has answered single calls before
    rng = random.Random(3)
    starts = sorted(rng.uniform(0, 15) for _ in range(6))
    calls = simulate(gate, clock, starts, lambda live: 450 + 10 * live, lambda live: 4 + 7 * live)
    assert len(calls) == 6
    heavy, clock = admission(idle=16, max_sessions=16, admission_min_turns=3, cores=2)
    answer(heavy, 1, 450, 460, 455)
    answer(heavy, 2, 460, 470, 465)  # it has answered two at once before, so a third may come
    calls = simulate(heavy, clock, starts, lambda live: 450 + 10 * live, lambda live: 4 + 25 * live)
    assert len(calls) == 3  # fast enough, but each call takes a quarter of the machine: a fourth would be 104 %


def test_calls_that_start_together_are_taken_only_as_far_as_that_many_have_answered_in_time():
    gate, clock = admission(idle=16, max_sessions=16, cores=2)
    answer(gate, 1, 450, 460)
    answer(gate, 2, 480, 490)  # two at once answered in time before
    gate.call_cpu.observe(2.0, 0)
    gate.call_cpu.observe(12.0, 2)  # 5 % of the machine a call: the CPU alone would take ten
    assert gate.reserve("CA1") and gate.reserve("CA2")  # two start together: the cores take them
    assert not gate.reserve("CA3")  # a third in the same moment: its turns would meet theirs, unmeasured
    assert "2 calls just started" in (gate.refusal() or "")
    clock.now += 1.5  # a moment later the starts are spread out again: the CPU's free zone is back
    assert gate.reserve("CA3")


def test_live_calls_already_over_budget_block_one_more():
    gate, _ = admission()
    answer(gate, 1, 500, 520)
    gate.admit("phone")
    gate.admit("phone")
    answer(gate, 2, 950, 990)  # the two live calls are slow now
    assert gate.admit("phone") is None


def answered_turn(filler_s: float, answer_s: float) -> dict:
    """The tracker's report of a turn whose answer came `answer_s` after the caller stopped, behind a filler."""
    marks = {"speech_end": 0.0, "turn_end": 0.1, "llm_first_token": 0.2, "filler_out": filler_s, "answer_out": answer_s}
    return Turn(index=1, marks=marks, user_text="Hello?").report(LatencyBudget())


def test_the_answer_is_judged_not_a_filler_before_it():
    gate, _ = admission()
    answer(gate, 1, 500, 520)
    gate.admit("phone")
    gate.admit("phone")
    for turn in (answered_turn(0.4, 0.95), answered_turn(0.42, 0.99)):  # quick fillers, slow answers
        gate.record_answer(turn)
    assert gate.answers.p95(2) == (2, 990.0)
    assert gate.admit("phone") is None  # two calls are already over the budget: no third


def test_a_slow_provider_is_no_reason_to_turn_callers_away():
    gate, _ = admission()
    answer(gate, 1, 1500, 1600, 1700)  # single calls are over budget: the provider, not the load
    answer(gate, 2, 1550, 1650)  # no slower with two calls
    gate.admit("phone")
    assert gate.admit("phone") is not None
    answer(gate, 3, 2600, 2900)  # but three calls clearly are slower
    assert gate.admit("phone") is None


def test_reserved_phone_calls_are_never_refused_and_expire_unclaimed():
    gate, clock = admission(idle=2, admission="count")
    assert gate.reserve("CA1") and gate.reserve("CA2")
    assert gate.reserve("CA1")  # Twilio retrying the same webhook
    assert not gate.reserve("CA3")  # both workers are promised
    assert gate.admit("browser") is None
    assert not gate.ready
    gate.start_drain()
    slot = gate.claim("CA1")  # even while draining: the caller was told yes
    assert slot is not None and gate.active == 1 and gate.reserved == 1
    clock.now += 21  # CA2's stream never came
    assert gate.reserved == 0
    assert gate.claim("CA2") is None  # too late, and draining


def test_max_sessions_and_free_workers_bound_everything():
    gate, _ = admission(idle=0, admission="count")  # every worker busy (or not started yet)
    assert gate.admit("browser") is None and gate.refusal() == "no free worker"
    gate, _ = admission(idle=5, max_sessions=0)
    assert gate.refusal() == "MAX_SESSIONS" and gate.capacity() == 0


async def http(method: str, url: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.request(method, url, **kwargs)


@pytest.mark.slow
@pytest.mark.timing  # admission by load reads the machine's CPU
async def test_measured_slow_answers_turn_the_next_caller_away_politely(speech, tmp_path):
    """A budget no answer can meet and one turn enough to judge: after two calls answered side by side, the
    server takes a lone call but answers a second concurrent one with Twilio's busy Reject, and /ready says 503.
    The LLM is the provider simulator (Cerebras' wire format), which answers even on a loaded machine."""
    sim = ProviderSim(first_token_s=0.05, answer="Sure. That is easy.").start()
    settings = sim_settings(
        sim,
        admission="load",
        latency_budget_ms=1,
        admission_min_turns=1,
        admission_max_cpu_percent=100,
    )
    try:
        async with (
            AgentRuntime.start(settings, speech=speech) as runtime,
            serving(create_app(settings, runtime)) as server,
        ):
            webhook = f"{server.http}/twilio/voice"
            # Long enough after the words that both calls are still live when both are answered (filed at 2 calls).
            call = build_call(tmp_path / "call.wav", [0.3, "ten_of_clubs.wav", 6.0])
            both = await asyncio.gather(call_unless_rejected(call, webhook), call_unless_rejected(call, webhook))
            assert all(r is not None and r.turns[0]["first_sound_ms"] for r in both)
            await wait_for(lambda: server.app.state.admission.active == 0)
            ready = await http("GET", f"{server.http}/ready")
            assert ready.status_code == 200 and ready.json()["capacity"] == 1  # level 2 was measured too slow
            lone = asyncio.create_task(call_unless_rejected(call, webhook))
            await wait_for(lambda: server.app.state.admission.active == 1)
            busy = await http("POST", webhook, data={"CallSid": "CA" + "b" * 32, "From": "+1555", "To": "+1666"})
            assert busy.text.endswith('<Response><Reject reason="busy"/></Response>')
            ready = await http("GET", f"{server.http}/ready")
            assert ready.status_code == 503 and "2 calls over 1 ms" in ready.json()["reason"]
            metrics = (await http("GET", f"{server.http}/metrics")).text
            assert re.search(r"^voice_agent_active_calls 1\.0$", metrics, re.M)
            assert re.search(r"^voice_agent_capacity_calls 1\.0$", metrics, re.M)
            assert (await lone) is not None
            assert (await http("GET", f"{server.http}/health")).status_code == 200
    finally:
        sim.stop()


@pytest.mark.slow
async def test_drain_refuses_new_calls_then_says_goodbye_to_the_live_one(speech, tmp_path):
    """The LLM is the provider simulator: what is under test is the drain, not the answer."""
    sim = ProviderSim(first_token_s=0.05, answer="Sure. That is easy.").start()
    settings = sim_settings(sim)
    try:
        async with (
            AgentRuntime.start(settings, speech=speech) as runtime,
            serving(create_app(settings, runtime=runtime)) as server,
        ):
            state = server.app.state
            call = build_call(tmp_path / "long.wav", [0.3, "ten_of_clubs.wav", 30.0])
            live = asyncio.create_task(place_call(call, f"{server.ws}/twilio/stream", max_tail_s=5))
            await wait_for(lambda: any(e == "closed" for _, e, _ in state.recent_turns), 20)  # answered, in full
            draining = asyncio.create_task(drain(state.admission, state.calls, 1.0, asyncio.Event()))
            await wait_for(lambda: state.admission.draining)
            assert (await http("GET", f"{server.http}/ready")).status_code == 503
            assert (await http("GET", f"{server.http}/health")).status_code == 200
            busy = await http("POST", f"{server.http}/twilio/voice", data={"CallSid": "CA" + "1" * 32})
            assert '<Reject reason="busy"/>' in busy.text
            await asyncio.wait_for(draining, 30)
            result = await live
    finally:
        sim.stop()
    assert result.closed_by_server  # the agent ended the call (before the caller's 30 s of silence ran out)
    assert state.admission.active == 0
    # What the caller heard last, before the line closed, was the goodbye. All that was heard is transcribed and its
    # last words compared: the voice may pause between the goodbye's clauses (long, on a busy machine), so the last
    # voiced stretch alone can be only the goodbye's end.
    audio = np.frombuffer(result.heard_audio, np.int16).astype(np.float32)
    heard = speech.transcriber.transcribe(soxr.resample(audio, 8000, 16000).astype(np.int16).tobytes(), 16000)
    last_words = " ".join(heard.split()[-len(DRAIN_GOODBYE.split()) :])
    assert word_error_rate(DRAIN_GOODBYE, last_words) <= 0.35, heard
