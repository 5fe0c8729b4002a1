"""Phone entry: one carrier media stream (Twilio, Telnyx or Plivo) = one call, at the carriers' 8 kHz.

The carrier plugs in at the transport (`agent/telephony/registry.py` and its folder: serializer, marks, call control);
the voice chain is the one every entry runs. Around it, this call's phone parts:

- marks around everything the agent says (`agent/telephony/marks.py`): the answer mark's echo times when the caller
  started hearing the answer; `clear` on barge-in drops what was not heard;
- the keypad: digits typed freely go into the conversation ("the caller pressed 1"), and the collect_digits tool
  can wait for them; a key pressed while the agent talks stops it;
- the transfer_call tool (`agent/telephony/transfer.py`): a short line in the agent's voice, then the carrier puts
  the call through; the turn ends as `transferred` and the call is not hung up behind the person;
- an outbound call's greeting, said as soon as the stream is up;
- the end: the agent ending the call (time limit, a drain's goodbye through `live`) or the line going dead hangs up
  through the carrier's REST API; the carrier stopping the stream (the caller hung up, or the call was put
  through) does not.

Each part is a small object below (`LineEnding`, `KeypadEntries`, `AgentLine`, `Greeting`), built before the
pipeline and reaching it through a `CallSlot`; `tests/test_phone_parts.py` tries each alone on a pipeline.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from fastapi import WebSocket
from loguru import logger
from pipecat.frames.frames import Frame, InterruptionFrame, TTSSpeakFrame
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams

from agent.frames import KeypadEntryFrame, PhraseAudioFrame
from agent.latency.observer import TurnLatencyObserver, TurnListener
from agent.protocols.input_guard import GuardedSerializer, InputGuard
from agent.protocols.websocket_transport import VoiceWebsocketTransport, send_text_if_open
from agent.runtime import AgentRuntime
from agent.speech.voices import Voice
from agent.telephony.carrier import Carrier
from agent.telephony.gate import StreamOpening
from agent.telephony.keypad import Keypad, KeypadObserver
from agent.telephony.line import PhoneLineSerializer
from agent.telephony.marks import UtteranceMarks
from agent.telephony.registry import CARRIER_RATE, CARRIERS
from agent.telephony.rest import CallControl
from agent.telephony.transfer import Transfer
from agent.tools.phone import phone_tools
from pipelines.live import LiveCalls
from pipelines.voice import build_voice_call, quiet_line, run_voice_call


def keypad_message(digits: str) -> str:
    """The user message a keypad entry becomes."""
    return f"(The caller pressed {' '.join(digits)} on the phone keypad.)"


class CallSlot:
    """The call's pipeline worker, for the parts that are built before it (the serializer's and the transport's
    callbacks need the worker; the worker needs the transport): filled in once the pipeline exists."""

    def __init__(self) -> None:
        self.worker: PipelineWorker | None = None

    async def queue(self, frame: Frame) -> None:
        await self._worker().queue_frame(frame)

    async def cancel(self, reason: str) -> None:
        await self._worker().cancel(reason=reason)

    def _worker(self) -> PipelineWorker:
        if self.worker is None:
            raise RuntimeError("the call's pipeline is not built yet")
        return self.worker


class LineEnding:
    """Who ended the call decides the hang-up. The carrier stopping the stream (the caller hung up, or the call was
    put through; for some carriers the socket closing is the stop) ends the pipeline and is not hung up on; the agent
    ending the call, or the line dropping without a stop, hangs up through the carrier's REST API."""

    def __init__(self, carrier: Carrier, opening: StreamOpening, control: CallControl, call: CallSlot) -> None:
        self._carrier = carrier
        self._opening = opening
        self._control = control
        self._call = call
        self.stopped = False

    async def carrier_stopped(self) -> None:
        self.stopped = True
        await self._call.cancel(f"{self._carrier.name} stopped the stream")

    async def socket_closed(self, _transport: object = None, _websocket: object = None) -> None:
        """The transport's `on_client_disconnected`."""
        if self._carrier.close_is_stop:
            self.stopped = True
        elif not self.stopped:
            logger.warning(f"{self._carrier.name}: call {self._opening.call_id} dropped without a 'stop'")
        await self._call.cancel(f"{self._carrier.name} socket closed")

    async def pipeline_ended(self) -> None:
        if not self.stopped:
            await self._control.hang_up()


class KeypadEntries:
    """What the caller types: the first key pressed while the agent talks stops it, as an IVR does; a finished
    entry goes into the conversation as the caller's message, and is answered."""

    def __init__(self, call: CallSlot, marks: UtteranceMarks) -> None:
        self._call = call
        self._marks = marks

    async def first_digit(self) -> None:
        if self._marks.speaking:
            await self._call.queue(InterruptionFrame())

    async def entered(self, digits: str) -> None:
        message = {"role": "user", "content": keypad_message(digits)}
        await self._call.queue(KeypadEntryFrame(messages=[message], run_llm=True, digits=digits))


class AgentLine:
    """A line said in the agent's voice after what is already queued (the transfer's notice), synthesised whole."""

    def __init__(self, voice: Voice, output: FrameProcessor) -> None:
        self._voice = voice
        self._output = output

    async def say(self, text: str) -> float:
        """Queue `text` in the agent's voice; its length in seconds."""
        pcm = b"".join(await asyncio.to_thread(lambda: list(self._voice.synthesize(text))))
        rate = self._voice.sample_rate
        await self._output.queue_frame(PhraseAudioFrame(audio=pcm, sample_rate=rate, num_channels=1))
        return len(pcm) / 2 / rate


class Greeting:
    """An outbound call's first words, said as soon as the stream is up (the transport's `on_client_connected`)."""

    def __init__(self, call: CallSlot, text: str) -> None:
        self._call = call
        self._text = text

    async def say(self, _transport: object = None, _websocket: object = None) -> None:
        if self._text:
            await self._call.queue(TTSSpeakFrame(self._text))


async def run_phone_call(
    websocket: WebSocket,
    opening: StreamOpening,
    runtime: AgentRuntime,
    on_turn: TurnListener,
    guard: InputGuard,
    *,
    greeting: str = "",
    live: LiveCalls | None = None,
) -> None:
    """Run one admitted phone call until the carrier stops the stream, the socket drops, the agent ends the call
    or the caller's input breaks the `guard`'s bounds; `live` lists the call while it runs (so a drain can end it)."""
    settings = runtime.settings
    carrier = CARRIERS[opening.carrier]
    control = carrier.control(settings, opening.call_id)
    latency = TurnLatencyObserver(runtime.budget)
    latency.add_listener(on_turn)
    call_slot = CallSlot()
    ending = LineEnding(carrier, opening, control, call_slot)

    async def send_mark(name: str) -> None:
        await send_text_if_open(websocket, carrier.mark_message(opening, name))

    marks = UtteranceMarks(send_mark, latency)
    entries = KeypadEntries(call_slot, marks)
    keypad = Keypad(
        settings.dtmf_interdigit_ms / 1000,
        on_entry=entries.entered,
        on_first_digit=entries.first_digit,
        max_digits=settings.keypad_max_digits,
    )
    serializer = PhoneLineSerializer(
        carrier.serializer(opening, on_mark=marks.echoed_back, on_stop=ending.carrier_stopped),
        on_digit=keypad.press,
        on_clear=marks.cleared,
        on_end=ending.pipeline_ended,
    )
    transport = VoiceWebsocketTransport(
        websocket,
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_in_sample_rate=CARRIER_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=CARRIER_RATE,
            add_wav_header=False,
            serializer=GuardedSerializer(serializer, guard),
        ),
        on_audio_written=marks.audio_written,
        on_utterance_end=marks.utterance_ended,
        quiet_line=quiet_line(settings),
    )
    line = AgentLine(runtime.speech.voice, transport.output())
    transfer = Transfer(settings, control, marks, line.say, on_transferred=latency.transferred)
    tools = runtime.tools.extended(phone_tools(settings, keypad, transfer))
    call = build_voice_call(
        replace(runtime, tools=tools),
        transport,
        latency,
        sample_rate_in=CARRIER_RATE,
        sample_rate_out=CARRIER_RATE,
        observers=[KeypadObserver(keypad)],
    )
    call_slot.worker = call.worker
    transport.add_event_handler("on_client_connected", Greeting(call_slot, greeting).say)
    transport.add_event_handler("on_client_disconnected", ending.socket_closed)

    logger.info(f"{carrier.name}: call {opening.call_id} stream {opening.stream_id} started")
    try:
        with (LiveCalls() if live is None else live).running(call):
            async with guard.enforced(websocket):
                await run_voice_call(call, max_duration_s=settings.max_call_seconds)
    finally:
        keypad.close()
    ended = f"put through to {control.transferred_to}" if control.transferred_to else "ended"
    logger.info(f"{carrier.name}: call {opening.call_id} {ended}; marks echoed: {len(marks.echoed)}")
