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
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from fastapi import WebSocket
from loguru import logger
from pipecat.frames.frames import InterruptionFrame, TTSSpeakFrame
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams

from agent.frames import KeypadEntryFrame, PhraseAudioFrame
from agent.latency.observer import TurnLatencyObserver, TurnListener
from agent.protocols.input_guard import GuardedSerializer, InputGuard
from agent.protocols.websocket_transport import VoiceWebsocketTransport, send_text_if_open
from agent.runtime import AgentRuntime
from agent.telephony.gate import StreamOpening
from agent.telephony.keypad import Keypad, KeypadObserver
from agent.telephony.line import PhoneLineSerializer
from agent.telephony.marks import UtteranceMarks
from agent.telephony.registry import CARRIER_RATE, CARRIERS
from agent.telephony.transfer import Transfer
from agent.tools.phone import phone_tools
from pipelines.live import LiveCalls
from pipelines.voice import build_voice_call, run_voice_call


def keypad_message(digits: str) -> str:
    """The user message a keypad entry becomes."""
    return f"(The caller pressed {' '.join(digits)} on the phone keypad.)"


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

    async def send_mark(name: str) -> None:
        await send_text_if_open(websocket, carrier.mark_message(opening, name))

    marks = UtteranceMarks(send_mark, latency)
    stopped: list[bool] = []

    async def on_stop() -> None:
        stopped.append(True)
        await call.worker.cancel(reason=f"{carrier.name} stopped the stream")

    async def on_end() -> None:
        if not stopped:
            await control.hang_up()

    async def interrupt() -> None:
        if marks.speaking:  # a key pressed while the agent talks stops it, as an IVR does
            await call.worker.queue_frame(InterruptionFrame())

    async def enter_digits(digits: str) -> None:
        message = {"role": "user", "content": keypad_message(digits)}
        await call.worker.queue_frame(KeypadEntryFrame(messages=[message], run_llm=True, digits=digits))

    keypad = Keypad(
        settings.dtmf_interdigit_ms / 1000,
        on_entry=enter_digits,
        on_first_digit=interrupt,
        max_digits=settings.keypad_max_digits,
    )
    serializer = PhoneLineSerializer(
        carrier.serializer(opening, on_mark=marks.echoed_back, on_stop=on_stop),
        on_digit=keypad.press,
        on_clear=marks.cleared,
        on_end=on_end,
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
    )

    async def say(text: str) -> float:
        """Play `text` in the agent's voice, after what is already queued; its length in seconds."""
        voice = runtime.speech.voice
        pcm = b"".join(await asyncio.to_thread(lambda: list(voice.synthesize(text))))
        await transport.output().queue_frame(PhraseAudioFrame(audio=pcm, sample_rate=voice.sample_rate, num_channels=1))
        return len(pcm) / 2 / voice.sample_rate

    transfer = Transfer(settings, control, marks, say, on_transferred=latency.transferred)
    tools = runtime.tools.extended(phone_tools(settings, keypad, transfer))
    call = build_voice_call(
        replace(runtime, tools=tools),
        transport,
        latency,
        sample_rate_in=CARRIER_RATE,
        sample_rate_out=CARRIER_RATE,
        observers=[KeypadObserver(keypad)],
    )

    @transport.event_handler("on_client_connected")
    async def _connected(_transport: Any, _websocket: WebSocket) -> None:
        if greeting:
            await call.worker.queue_frame(TTSSpeakFrame(greeting))

    @transport.event_handler("on_client_disconnected")
    async def _dropped(_transport: Any, _websocket: WebSocket) -> None:
        if carrier.close_is_stop:
            stopped.append(True)
        elif not stopped:
            logger.warning(f"{carrier.name}: call {opening.call_id} dropped without a 'stop'")
        await call.worker.cancel(reason=f"{carrier.name} socket closed")

    logger.info(f"{carrier.name}: call {opening.call_id} stream {opening.stream_id} started")
    try:
        with (LiveCalls() if live is None else live).running(call):
            async with guard.enforced(websocket):
                await run_voice_call(call, max_duration_s=settings.max_call_seconds)
    finally:
        keypad.close()
    ended = f"put through to {control.transferred_to}" if control.transferred_to else "ended"
    logger.info(f"{carrier.name}: call {opening.call_id} {ended}; marks echoed: {len(marks.echoed)}")
