"""Keypad digits and the transfer to a person, in real calls on each carrier's protocol (recorded speech, the local
speech models, the provider simulator scripting the model's tool calls) and against each carrier's REST double:

- digits pressed freely reach the conversation as "the caller pressed 1" and get an answer (a turn of their own);
- the collect_digits tool waits for the caller to type and gets the digits, without a hold phrase;
- transfer_call says its line in the agent's voice, and once the caller has heard it the carrier puts the call
  through (Twilio: `<Dial>` TwiML, Telnyx: the transfer command, Plivo: the transfer API and our `<Dial>` XML);
  the turn ends as `transferred` and nothing hangs up behind the person. A transfer the carrier refuses is told to
  the caller and the call goes on.
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ElementTree

import pytest

from agent.llm.simulator import ProviderSim
from agent.phone_client import place_call
from agent.telephony.keypad import Keypad
from agent.telephony.registry import CARRIERS as REGISTRY
from bench.audio import build_call, word_error_rate
from tests.phone_deployment import SIM_ANSWER, TRANSFER_NUMBER, phone_deployment, simulated_runtime
from tests.servers import wait_for

CARRIERS = list(REGISTRY)


class Entries:
    def __init__(self) -> None:
        self.entries: list[str] = []
        self.first_digits = 0

    async def entry(self, digits: str) -> None:
        self.entries.append(digits)

    async def first_digit(self) -> None:
        self.first_digits += 1


async def test_keypad_entries_end_after_a_pause_or_at_the_pound_key():
    seen = Entries()
    keypad = Keypad(0.2, on_entry=seen.entry, on_first_digit=seen.first_digit)
    for digit in "12":
        await keypad.press(digit)
    await asyncio.sleep(0.35)
    for digit in "34#":
        await keypad.press(digit)
    assert seen.entries == ["12", "34#"] and seen.first_digits == 2


async def test_a_digit_storm_keeps_an_entry_to_its_limit_and_counts_the_rest():
    """The probe sent 1,120 digits at 140/s without # and the model got a 2,283-character message: an entry now
    keeps its first 32 digits, the rest is dropped and counted, and # still ends the entry."""
    seen = Entries()
    keypad = Keypad(0.2, on_entry=seen.entry, on_first_digit=seen.first_digit, max_digits=32)
    for i in range(1120):
        await keypad.press(str(i % 10))
    await keypad.press("#")
    assert seen.entries == [("0123456789" * 4)[:32] + "#"] and keypad.dropped == 1120 - 32
    collecting = asyncio.create_task(keypad.collect(max_digits=500, timeout_s=5))  # the tool asks for too many
    await asyncio.sleep(0.05)
    for _ in range(100):
        await keypad.press("7")
    await keypad.press("#")
    assert (await collecting).digits == "7" * 32 and keypad.dropped == 1120 - 32 + 68


async def collect_while_pressing(keypad: Keypad, keys: str, **collect: float) -> tuple[str, str]:
    collecting = asyncio.create_task(keypad.collect(**collect))
    await asyncio.sleep(0.05)
    for key in keys:
        await keypad.press(key)
    entry = await collecting
    return entry.digits, entry.ended_by


async def test_a_collection_takes_the_digits_until_pound_max_or_timeout():
    seen = Entries()
    keypad = Keypad(0.2, on_entry=seen.entry, on_first_digit=seen.first_digit)
    await keypad.press("9")  # typed ahead, while the agent was still asking: part of what is collected
    assert await collect_while_pressing(keypad, "42#", max_digits=8, timeout_s=2) == ("942", "terminator")
    assert await collect_while_pressing(keypad, "123", max_digits=3, timeout_s=2) == ("123", "max_digits")
    assert await collect_while_pressing(keypad, "5", max_digits=3, timeout_s=0.3) == ("5", "timeout")
    assert seen.entries == []  # every digit went to a collection


async def test_the_caller_speaking_ends_a_collection_and_later_digits_are_free_entries():
    seen = Entries()
    keypad = Keypad(0.2, on_entry=seen.entry, on_first_digit=seen.first_digit)
    collecting = asyncio.create_task(keypad.collect(max_digits=6, timeout_s=5))
    await asyncio.sleep(0.05)
    await keypad.press("7")
    keypad.cancel_collection()  # the caller spoke instead of typing
    entry = await collecting
    assert (entry.digits, entry.ended_by) == ("7", "caller_spoke")
    await keypad.press("8")
    await asyncio.sleep(0.35)
    assert seen.entries == ["8"] and seen.first_digits == 1


@pytest.fixture(scope="module")
async def sim():
    return ProviderSim(first_token_s=0.05, answer=SIM_ANSWER)


@pytest.fixture(scope="module")
async def deployment(speech, sim):
    async with (
        simulated_runtime(speech, sim) as runtime,
        phone_deployment(runtime, acknowledge_after_ms=0, dtmf_interdigit_ms=600) as running,
    ):
        yield running


@pytest.fixture(autouse=True)
def fresh(deployment, sim):
    sim.tool_calls = []
    sim.requests.clear()
    for double in deployment.doubles.values():
        double.requests.clear()
        double.calls.clear()
    deployment.app.state.recent_turns.clear()
    yield
    assert not any(d.errors for d in deployment.doubles.values()), {c: d.errors for c, d in deployment.doubles.items()}


def user_messages(sim: ProviderSim) -> list[str]:
    return [m["content"] for r in sim.requests for m in r["body"]["messages"] if m["role"] == "user"]


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.slow
async def test_digits_pressed_freely_reach_the_conversation(deployment, sim, carrier, tmp_path):
    call = build_call(tmp_path / "keys.wav", [3.0])  # the call then waits for the answer and its end
    result = await place_call(
        call, deployment.webhook(carrier), dialect=deployment.caller(carrier), digits=[(1.0, "1"), (1.2, "2")]
    )
    assert "(The caller pressed 1 2 on the phone keypad.)" in user_messages(sim)
    [turn] = deployment.phone_turns()
    assert turn["user_text"] == "[keypad] 12" and turn["outcome"] == "answered", turn
    assert turn["answer_ms"] is not None and turn["answer_ms"] < 5000  # timed from the end of the entry
    assert result.reply_starts and result.reply_starts[0] > 1.2  # the answer came after the keys


@pytest.mark.slow
async def test_the_collect_digits_tool_waits_for_the_caller_to_type(deployment, sim, tmp_path):
    sim.tool_calls = [("collect_digits", {"max_digits": 8})]
    call = build_call(tmp_path / "ask.wav", [0.4, "ten_of_clubs.wav", 4.0])  # ends after the keys
    keys = [(4.0 + 0.3 * i, key) for i, key in enumerate("427#")]  # well after the turn, while the tool waits
    await place_call(call, deployment.webhook("telnyx"), dialect=deployment.caller("telnyx"), digits=keys)
    results = [json.loads(m["content"]) for m in sim.requests[-1]["body"]["messages"] if m["role"] == "tool"]
    assert results == [{"digits": "427", "ended_by": "terminator"}], results
    [turn] = deployment.phone_turns()
    assert turn["llm"]["tools"] == ["collect_digits"] and turn["filler_ms"] is None  # no "One moment." meanwhile
    assert not [m for m in user_messages(sim) if "keypad" in m]  # the digits went to the tool, not the chat


def transfer_requests(double, carrier: str, call_id: str) -> list[dict]:
    return [r for r in double.requests if call_id in r["path"] or (carrier == "twilio" and r["path"].endswith(".json"))]


def expected_transfer(deployment, carrier: str, call_id: str) -> tuple[str, object]:
    """The transfer request each carrier documents: its path's end and its body."""
    if carrier == "twilio":
        return f"/Calls/{call_id}.json", {"Twiml": f'<?xml version="1.0" encoding="UTF-8"?><Response><Dial>'
                                                   f"{TRANSFER_NUMBER}</Dial></Response>"}  # fmt: skip
    if carrier == "telnyx":
        return f"/calls/{call_id}/actions/transfer", {"to": TRANSFER_NUMBER}
    url = f"{deployment.settings.public_url}/plivo/transfer?to=%2B{TRANSFER_NUMBER[1:]}"
    return f"/Call/{call_id}/", {"legs": "aleg", "aleg_url": url, "aleg_method": "POST"}


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.slow
async def test_a_caller_is_put_through_to_a_person_after_hearing_the_line(deployment, sim, speech, carrier, tmp_path):
    sim.tool_calls = [("transfer_call", {"reason": "the caller asked for a person"})]
    double = deployment.doubles[carrier]
    caller = deployment.caller(carrier)
    ids = caller.new_ids()
    line = double.register(ids)
    call = build_call(tmp_path / "ask.wav", [0.4, "ten_of_clubs.wav", 12.0])
    result = await place_call(call, deployment.webhook(carrier), dialect=caller, ids=ids, hang_up=line.ended)
    assert line.ended.is_set() and not line.hung_up  # the carrier took the call on: nobody hung up behind it
    [request] = transfer_requests(double, carrier, ids.call_id)
    path, body = expected_transfer(deployment, carrier, ids.call_id)
    assert request["path"].endswith(path) and request["body"] == body, request
    if carrier == "plivo":  # Plivo fetched our XML and dials what it says
        number = ElementTree.fromstring(line.documents[0]).findtext("./Dial/Number")
        assert number == TRANSFER_NUMBER[1:]
    # The caller heard the agent's line, in the agent's voice, before the call was put through.
    heard = speech.transcriber.transcribe(result.heard_audio, 8000)
    assert word_error_rate(deployment.settings.transfer_message, heard) <= 0.4, heard
    await wait_for(lambda: bool(deployment.phone_turns()))
    [turn] = deployment.phone_turns()
    assert turn["outcome"] == "transferred", turn
    metrics = await deployment.metrics()
    assert 'voice_agent_turns_total{channel="phone",outcome="transferred",verdict="over"} ' in metrics
    await wait_for(lambda: deployment.app.state.admission.active == 0)


@pytest.mark.slow
async def test_a_transfer_the_carrier_refuses_is_told_and_the_call_goes_on(deployment, sim, tmp_path):
    sim.tool_calls = [("transfer_call", {})]
    caller = deployment.caller("telnyx")  # its double knows no call with these ids: Telnyx's 422 "already ended"
    call = build_call(tmp_path / "ask.wav", [0.4, "ten_of_clubs.wav", 10.0])
    result = await place_call(call, deployment.webhook("telnyx"), dialect=caller)
    tool_results = [m["content"] for m in sim.requests[-1]["body"]["messages"] if m["role"] == "tool"]
    assert len(tool_results) == 1 and "did not go through" in tool_results[0], tool_results
    [turn] = deployment.phone_turns()
    assert turn["outcome"] == "answered" and turn["bot_text"].startswith("Sure")  # the model's answer, spoken
    assert result.closed_by_server is False  # the call went on with the agent
