"""Outbound calls through each carrier's REST API, against the local doubles that check every request as the
carrier documents it and then act as the carrier: a callee (a recording) answers, our answer webhook connects the
stream, the agent opens with its greeting, and the answering-machine result arrives. A machine's greeting ends in
a redirect to leave the voicemail message; a person talks with the agent. Destinations go through the allowlist,
the operator token guards the endpoint, and the call's slot is taken before anything is dialled."""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import httpx
import pytest

from agent.llm.simulator import ProviderSim
from agent.server.admission import Admission
from agent.server.phone_slots import PhoneSlots
from agent.server.rate_limit import MAX_KEYS, RateLimit
from agent.telephony.gate import StreamOpening
from agent.telephony.registry import CARRIERS as REGISTRY
from bench.audio import build_call
from tests.conftest import local_settings
from tests.phone_deployment import (
    FROM_NUMBER,
    OPERATOR_TOKEN,
    SIM_ANSWER,
    TELNYX_APP,
    phone_deployment,
    simulated_runtime,
)
from tests.servers import wait_for

CARRIERS = list(REGISTRY)
GREETING = "Hello, this is the booking assistant calling about your table."
CALLEE = "+15551234567"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
async def sim():
    return ProviderSim(first_token_s=0.05, answer=SIM_ANSWER)


@pytest.fixture(scope="module")
async def deployment(speech, sim):
    async with simulated_runtime(speech, sim) as runtime, phone_deployment(runtime, dial_greeting=GREETING) as running:
        yield running


def create_request(deployment, carrier: str) -> dict:
    [request] = [r for r in deployment.doubles[carrier].requests if r["method"] == "POST" and r["path"].endswith(
        {"twilio": "/Calls.json", "telnyx": "/Calls", "plivo": "/Call/"}[carrier])]  # fmt: skip
    return request["body"]


def expected_dial(deployment, carrier: str, dial_id: str) -> dict:
    """The create-call request each carrier documents, for this dial."""
    base = deployment.settings.public_url
    answer_url = f"{base}/{carrier}/voice/{deployment.settings.instance}?dial={dial_id}"  # routed back here
    amd_url = f"{base}/{carrier}/amd"
    if carrier == "twilio":
        return {"To": CALLEE, "From": FROM_NUMBER, "Url": answer_url, "Method": "POST", "Timeout": "60",
                "MachineDetection": "DetectMessageEnd", "AsyncAmd": "true", "AsyncAmdStatusCallback": amd_url,
                "AsyncAmdStatusCallbackMethod": "POST"}  # fmt: skip
    if carrier == "telnyx":
        return {"ApplicationSid": TELNYX_APP, "To": CALLEE, "From": FROM_NUMBER, "Url": answer_url,
                "UrlMethod": "POST", "Timeout": 60, "MachineDetection": "DetectMessageEnd", "AsyncAmd": True,
                "AsyncAmdStatusCallback": amd_url, "AsyncAmdStatusCallbackMethod": "POST"}  # fmt: skip
    return {"from": FROM_NUMBER[1:], "to": CALLEE[1:], "answer_url": answer_url, "answer_method": "POST",
            "ring_timeout": 60, "machine_detection": "true", "machine_detection_url": amd_url,
            "machine_detection_method": "POST"}  # fmt: skip


async def dialled_call(deployment, carrier: str, body: dict | None = None):
    response = await deployment.dial(body or {"to": CALLEE, "carrier": carrier})
    assert response.status_code == 201, response.text
    double = deployment.doubles[carrier]
    await wait_for(lambda: bool(double.calls))
    [call] = double.calls.values()
    return response.json(), call


@pytest.fixture(autouse=True)
def fresh(deployment):
    for double in deployment.doubles.values():
        double.requests.clear()
        double.calls.clear()
        double.answered_by = None
    deployment.app.state.recent_turns.clear()
    yield
    assert not any(d.errors for d in deployment.doubles.values()), {c: d.errors for c, d in deployment.doubles.items()}


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.slow
async def test_a_person_answers_and_the_agent_opens_with_its_greeting(deployment, sim, carrier, tmp_path):
    double = deployment.doubles[carrier]
    double.callee_wav = build_call(tmp_path / "callee.wav", [4.5, "ten_of_clubs.wav", 2.0])
    double.answered_by = "human"
    answer, call = await dialled_call(deployment, carrier)
    assert answer["carrier"] == carrier and answer["to"] == CALLEE
    assert create_request(deployment, carrier) == expected_dial(deployment, carrier, answer["dial_id"])
    await wait_for(lambda: deployment.app.state.admission.active == 1)  # the reservation became the call's slot
    await call.task
    result = call.result
    assert result.invite.url == deployment.stream(carrier)
    # The callee heard the greeting before saying anything, then an answer to what they said.
    assert result.reply_starts and result.reply_starts[0] < result.turns[0]["speech_start_s"], result.reply_starts
    assert result.turns[0]["first_sound_ms"] is not None, result.turns
    spoken = [m for m in sim.requests[-1]["body"]["messages"] if m["role"] == "assistant"]
    assert spoken and spoken[0]["content"].strip() == GREETING  # the greeting is part of the conversation
    [turn] = deployment.phone_turns()
    assert turn["outcome"] == "answered" and turn["user_text"]
    await wait_for(lambda: deployment.app.state.admission.active == 0)
    assert not [r for r in double.requests if r["method"] == "DELETE" or "Texml" in str(r["body"])]


def voicemail_left(double, carrier: str, message: str) -> bool:
    """Whether the call was redirected to say `message` and end, the carrier's way."""
    [document] = next(iter(double.calls.values())).documents
    root = ElementTree.fromstring(document)
    if carrier == "plivo":  # the voicemail XML waits for the beep, then speaks
        wait = root.find("Wait")
        return wait is not None and wait.get("beep") == "true" and root.findtext("Speak") == message
    return root.findtext("Say") == message and root.find("Hangup") is not None


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.slow
async def test_a_voicemail_greeting_gets_a_short_message_instead_of_the_agent(deployment, carrier, tmp_path):
    double = deployment.doubles[carrier]
    double.callee_wav = build_call(tmp_path / "machine.wav", [0.5, "dashwood.wav", 6.0])  # a long greeting
    double.answered_by = "machine_end_beep"  # Plivo: Machine=true
    double.amd_after_s = 3.0
    _, call = await dialled_call(deployment, carrier)
    await call.task
    assert call.ended.is_set() and not call.hung_up  # the carrier ended the stream: the call went on without us
    assert voicemail_left(double, carrier, deployment.settings.voicemail_message)
    redirect = double.requests[1:]
    expected_path = {"twilio": ".json", "telnyx": call.ids.call_id, "plivo": f"/Call/{call.ids.call_id}/"}[carrier]
    assert len(redirect) == 1 and redirect[0]["path"].endswith(expected_path), redirect
    await wait_for(lambda: deployment.app.state.admission.active == 0)


async def test_destinations_outside_the_allowlist_are_never_dialled(deployment):
    for number in ["+4420123456789", "+15561234567", "+1555", "15551234567", "+1555123456789012"]:
        response = await deployment.dial({"to": number, "carrier": "twilio"})
        assert response.status_code in (400, 403), (number, response.text)
    assert not deployment.doubles["twilio"].requests
    assert 'voice_agent_dials_total{carrier="none",result="dial_allowlist"} 2.0' in await deployment.metrics()


async def test_the_dial_endpoint_needs_the_operator_token_and_a_well_formed_order(deployment):
    assert (await deployment.dial({"to": CALLEE}, token="not-the-token")).status_code == 401
    for body in [{"to": CALLEE, "carrier": "skype"}, {"to": 5}, {"to": CALLEE, "greeting": "x" * 501}, {}]:
        assert (await deployment.dial(body)).status_code == 400, body
    async with httpx.AsyncClient() as client:  # a body over 4 KiB, declared or streamed, is not read
        headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}", "Content-Type": "application/json"}
        url = f"{deployment.server.http}/calls"
        declared = await client.post(url, content=b" " * 2**20, headers=headers)

        async def chunks():
            for _ in range(256):
                yield b" " * 4096

        streamed = await client.post(url, content=chunks(), headers=headers)
    assert declared.status_code == 400 and streamed.status_code == 400, (declared.text, streamed.text)
    assert not any(d.requests for d in deployment.doubles.values())


async def test_an_outbound_call_takes_its_slot_before_it_is_dialled(deployment):
    admission = deployment.app.state.admission
    async with deployment.full():  # incoming calls hold every slot
        response = await deployment.dial({"to": CALLEE, "carrier": "plivo"})
    admission.start_drain()  # a slot is free again, but the server is draining
    try:
        draining = await deployment.dial({"to": CALLEE, "carrier": "plivo"})
    finally:
        admission.draining = False
    assert response.status_code == 503 and draining.status_code == 503, (response.text, draining.text)
    assert not deployment.doubles["plivo"].requests  # nothing dialled that could not be served


async def test_a_burst_of_dials_places_what_the_limits_allow_and_callers_still_get_in(speech, tmp_path):
    """A leaked operator token fires 30 dials at once (the probe sent 100 in 1.7 s and placed 20): the burst limit
    (DIAL_BURST=3) and the outbound share (DIAL_MAX_SHARE=0.5 of the capacity) let only a few through, the rest
    are refused before anything reaches the carrier, and a caller ringing in afterwards still gets a line."""
    sim = ProviderSim(first_token_s=0.05, answer=SIM_ANSWER)
    async with simulated_runtime(speech, sim) as runtime, phone_deployment(runtime, dial_burst=3) as deployment:
        deployment.doubles["plivo"].callee_wav = build_call(tmp_path / "callee.wav", [1.0], rate=8000)  # silent
        responses = await asyncio.gather(*(deployment.dial({"to": CALLEE, "carrier": "plivo"}) for _ in range(30)))
        placed = [r for r in responses if r.status_code == 201]
        limited = [r for r in responses if r.status_code == 429]
        over_share = [r for r in responses if r.status_code == 503]
        assert len(placed) + len(limited) + len(over_share) == 30, [r.status_code for r in responses]
        share = int(0.5 * deployment.app.state.admission.capacity())
        assert 1 <= len(placed) <= min(3, share), (len(placed), share)
        assert len(limited) >= 27 and all(int(r.headers["Retry-After"]) >= 1 for r in limited)
        created = [r for r in deployment.doubles["plivo"].requests if r["method"] == "POST"]
        assert len(created) == len(placed)  # nothing refused reached the carrier
        caller = deployment.caller("twilio")
        invite = await caller.invite(deployment.webhook("twilio"), caller.new_ids())  # answered, not busy
        assert invite is not None


def opening(dial_id: str) -> StreamOpening:
    return StreamOpening("plivo", f"{dial_id}-call", "stream", "account", parameters={"dialId": dial_id})


def test_a_reservation_nobody_answers_gives_its_slot_back():
    clock = [0.0]
    admission = Admission(
        local_settings(max_sessions=2, admission="count"),
        idle_workers=lambda: 2 - admission.active,
        clock=lambda: clock[0],
    )
    slots = PhoneSlots(admission, dial_ttl_s=90)
    assert slots.reserve_dial("a", "hello") and slots.reserve_dial("b", "")
    assert not slots.reserve_dial("c", "") and not slots.reserve_incoming("CA1")  # both slots held for the callees
    assert slots.outbound("a") and not slots.outbound("c") and not slots.outbound(None)
    claimed = slots.claim(opening("a"))
    assert claimed is not None and claimed.greeting == "hello" and admission.active == 1 and admission.reserved == 1
    clock[0] = 100.0  # b's callee never answered
    assert not slots.outbound("b") and admission.reserved == 0
    late = slots.claim(opening("b"))  # a late stream is treated as a new call, if there is room
    assert late is not None and late.greeting == "" and admission.active == 2
    with claimed:
        pass
    claimed.slot.release()  # once only
    assert admission.active == 1


@pytest.mark.process
async def test_voice_agent_dial_asks_the_server(deployment, tmp_path):
    double = deployment.doubles["telnyx"]
    double.callee_wav = build_call(tmp_path / "callee.wav", [1.0])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPERATOR_TOKEN": OPERATOR_TOKEN}

    async def dial(number: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "agent.cli", "--env-file", "", "dial", number, "--carrier", "telnyx",
                   "--greeting", "Hi!", "--server", deployment.server.http]  # fmt: skip
        run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=60, env=env, check=False)
        return await asyncio.to_thread(run, command)

    done = await dial(CALLEE)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"telnyx is calling {CALLEE}" in done.stdout
    assert create_request(deployment, "telnyx")["To"] == CALLEE
    refused = await dial("+4420123456789")
    assert refused.returncode == 1 and "DIAL_ALLOWLIST" in refused.stdout
    await next(iter(double.calls.values())).task


def test_the_dial_rate_refills_per_credential_within_the_total():
    clock = [0.0]
    rate = RateLimit(burst=2, per_minute=6, total_burst=3, total_per_minute=12, clock=lambda: clock[0])
    assert rate.take("a") == 0 and rate.take("a") == 0
    assert rate.take("a") == pytest.approx(10.0)  # a's burst is spent: one more every 10 s
    assert rate.take("b") == 0  # another credential has its own burst ...
    assert rate.take("b") == pytest.approx(5.0)  # ... within the total (3, then one every 5 s)
    clock[0] = 10.0
    assert rate.take("a") == 0 and rate.take("c") == 0  # a refilled; the total refilled two in 10 s ...
    assert rate.take("d") == pytest.approx(5.0)  # ... and no more
    for key in range(5000):  # a stranger rotating credentials does not grow the table without bound
        rate.take(f"k{key}")
    assert len(rate._keys) <= MAX_KEYS
