"""Each carrier's stream serializer frame by frame, without a call: what a barge-in puts on the wire. The whole
barge-in call (the caller talks over the answer and hears it stop) runs for one carrier in test_carriers.py; the
part that differs between carriers, the clear message, is checked here for every one of them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pipecat.clocks.system_clock import SystemClock
from pipecat.frames.frames import InterruptionFrame
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.utils.asyncio.task_manager import TaskManager

from agent.telephony.gate import StreamOpening
from agent.telephony.registry import CARRIERS

STREAM_ID = "MZ" + "0" * 32
CLEAR_EVENTS = {"twilio": "clear", "telnyx": "clear", "plivo": "clearAudio"}  # each carrier's documented name


async def ignore(*_: Any) -> None:
    return None


def test_every_carrier_has_its_clear_checked():
    assert set(CLEAR_EVENTS) == set(CARRIERS)


@pytest.mark.parametrize("carrier", list(CARRIERS))
async def test_a_barge_in_clears_the_carriers_playout(carrier):
    opening = StreamOpening(carrier, "CA" + "0" * 32, STREAM_ID, "AC" + "0" * 32, encoding="PCMU")
    serializer = CARRIERS[carrier].serializer(opening, on_mark=ignore, on_stop=ignore)
    setup = FrameProcessorSetup(
        clock=SystemClock(), task_manager=TaskManager(), pipeline_worker=None, audio_in_sample_rate=16000
    )
    await serializer.setup(setup)
    message = json.loads(await serializer.serialize(InterruptionFrame()))
    assert message["event"] == CLEAR_EVENTS[carrier], message
    assert STREAM_ID in message.values() or carrier == "telnyx", message  # Telnyx's clear names no stream
    assert CARRIERS[carrier].caller().read(message).kind == "clear"  # what the phone side of the tests acts on
