"""The parts a phone call wires around its pipeline (`pipelines/phone.py`), each alone on a real pipecat pipeline:
who ended the call decides the hang-up, keypad entries reach the conversation and a first key stops the agent only
while it talks, an outbound call's greeting is said, and a line in the agent's voice is queued whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pipecat.frames.frames import Frame, InterruptionFrame, StartFrame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import WorkerRunner
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.frames import KeypadEntryFrame, PhraseAudioFrame
from agent.latency.observer import TurnLatencyObserver
from agent.telephony.gate import StreamOpening
from agent.telephony.marks import UtteranceMarks
from agent.telephony.registry import CARRIERS
from agent.telephony.rest import CallControl
from pipelines.phone import AgentLine, CallSlot, Greeting, KeypadEntries, LineEnding, keypad_message


class Recorder(FrameProcessor):
    """Keeps every frame that reaches it (after the StartFrame), and passes it on."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self.arrived = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, StartFrame):
            self.frames.append(frame)
            self.arrived.set()
        await self.push_frame(frame, direction)

    async def next_of(self, kind: type[Frame], timeout_s: float = 2.0) -> Frame:
        async def found() -> Frame:
            while True:
                if match := [f for f in self.frames if isinstance(f, kind)]:
                    return match[0]
                self.arrived.clear()
                await self.arrived.wait()

        return await asyncio.wait_for(found(), timeout_s)


@asynccontextmanager
async def running_call() -> AsyncIterator[tuple[CallSlot, Recorder, asyncio.Task]]:
    """A call slot filled with a running pipeline worker whose pipeline records what it is given."""
    recorder = Recorder()
    worker = PipelineWorker(Pipeline([recorder]), cancel_on_idle_timeout=False, enable_rtvi=False)
    started = asyncio.Event()
    worker.add_event_handler("on_pipeline_started", lambda *_: started.set())
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(started.wait(), 5)
    slot = CallSlot()
    slot.worker = worker
    try:
        yield slot, recorder, task
    finally:
        if not task.done():
            await worker.cancel(reason="test over")
        await asyncio.wait_for(task, 5)


def opening(carrier: str) -> StreamOpening:
    return StreamOpening(carrier=carrier, call_id="call-1", stream_id="stream-1", account_id="acct")


def marks() -> UtteranceMarks:
    async def sent(_name: str) -> None:
        return None

    return UtteranceMarks(sent, TurnLatencyObserver())


async def test_an_empty_slot_says_the_pipeline_is_not_built():
    with pytest.raises(RuntimeError, match="not built"):
        await CallSlot().queue(TTSSpeakFrame("hello"))


async def test_the_carriers_stop_ends_the_pipeline_without_a_hang_up():
    async with running_call() as (slot, _recorder, task):
        control = CallControl(api=None, call_id="call-1")
        ending = LineEnding(CARRIERS["twilio"], opening("twilio"), control, slot)
        await ending.carrier_stopped()
        await asyncio.wait_for(task, 5)
        await ending.pipeline_ended()
    assert ending.stopped and not control.hung_up


@pytest.mark.parametrize("carrier", list(CARRIERS))
async def test_a_socket_closed_without_a_stop_is_hung_up_unless_closing_is_the_carriers_stop(carrier):
    async with running_call() as (slot, _recorder, task):
        control = CallControl(api=None, call_id="call-1")
        ending = LineEnding(CARRIERS[carrier], opening(carrier), control, slot)
        await ending.socket_closed()
        await asyncio.wait_for(task, 5)
        await ending.pipeline_ended()
    assert control.hung_up is not CARRIERS[carrier].close_is_stop


async def test_the_agent_ending_the_call_hangs_up():
    async with running_call() as (slot, _recorder, _task):
        control = CallControl(api=None, call_id="call-1")
        await LineEnding(CARRIERS["plivo"], opening("plivo"), control, slot).pipeline_ended()
    assert control.hung_up


async def test_a_keypad_entry_becomes_the_callers_message_and_is_answered():
    async with running_call() as (slot, recorder, _task):
        await KeypadEntries(slot, marks()).entered("42#")
        entry = await recorder.next_of(KeypadEntryFrame)
    assert entry.digits == "42#" and entry.run_llm
    assert entry.messages == [{"role": "user", "content": keypad_message("42#")}]
    assert keypad_message("42#") == "(The caller pressed 4 2 # on the phone keypad.)"


async def test_a_first_key_stops_the_agent_only_while_it_talks():
    async with running_call() as (slot, recorder, _task):
        spoken = marks()
        entries = KeypadEntries(slot, spoken)
        await entries.first_digit()  # quiet: nothing to stop
        await asyncio.sleep(0.1)
        assert not any(isinstance(f, InterruptionFrame) for f in recorder.frames)
        await spoken.audio_written("answer")  # the agent talks, the caller has not heard it all
        assert spoken.speaking
        await entries.first_digit()
        await recorder.next_of(InterruptionFrame)


async def test_an_outbound_greeting_is_said_and_an_empty_one_is_not():
    async with running_call() as (slot, recorder, _task):
        await Greeting(slot, "").say()
        await Greeting(slot, "Hello, this is the clinic.").say()
        said = await recorder.next_of(TTSSpeakFrame)
    assert [f.text for f in recorder.frames if isinstance(f, TTSSpeakFrame)] == [said.text]
    assert said.text == "Hello, this is the clinic."


async def test_a_line_in_the_agents_voice_is_queued_whole_with_its_length(speech):
    async with running_call() as (_slot, recorder, _task):  # the recorder stands where the transport's output is
        seconds = await AgentLine(speech.voice, recorder).say("Please hold while I put you through.")
        phrase = await recorder.next_of(PhraseAudioFrame)
    assert phrase.sample_rate == speech.voice.sample_rate
    assert seconds == pytest.approx(len(phrase.audio) / 2 / phrase.sample_rate) and 1.0 < seconds < 5.0
