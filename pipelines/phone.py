"""Phone entry: one Twilio Media Stream = one call, at the carrier's 8 kHz mu-law.

A `mark` goes to Twilio after the first and the last audio chunk of everything the agent says, and one more
(`answer-<n>`) right after the first chunk of each answer (an acknowledgement may play before it). Twilio echoes a
mark once the audio before it has played, so the answer mark's echo times when the caller started hearing the
answer (the latency budget as heard on the phone side); `clear` on barge-in drops what was not heard.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from fastapi import WebSocket
from loguru import logger
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams

from agent.latency.observer import AudioKind, TurnLatencyObserver, TurnListener
from agent.protocols.input_guard import GuardedSerializer, InputGuard
from agent.protocols.websocket_transport import VoiceWebsocketTransport, send_text_if_open
from agent.runtime import AgentRuntime
from agent.telephony.twilio import TWILIO_RATE, StreamStart, TwilioMediaStreamSerializer, mark_message
from pipelines.live import LiveCalls
from pipelines.voice import build_voice_call, run_voice_call

FIRST_CHUNK_S = 0.04  # pipecat writes 40 ms chunks: a start mark is echoed when that first chunk finished playing


class UtteranceMarks:
    """Sends `utterance-<n>-start`/`-end` around each stretch of bot speech and `answer-<n>` after each answer's
    first audio; reads Twilio's echoes."""

    def __init__(self, websocket: WebSocket, stream_sid: str, latency: TurnLatencyObserver):
        self._websocket = websocket
        self._stream_sid = stream_sid
        self._latency = latency
        self._numbers = itertools.count(1)
        self._answers = itertools.count(1)
        self._current: int | None = None
        self.echoed: list[str] = []

    async def _send(self, name: str) -> None:
        await send_text_if_open(self._websocket, mark_message(self._stream_sid, name))

    async def audio_written(self, kind: AudioKind) -> None:
        answer_onset = await self._latency.audio_sent(kind)
        if self._current is None:
            self._current = next(self._numbers)
            await self._send(f"utterance-{self._current}-start")
        if answer_onset:
            await self._send(f"answer-{next(self._answers)}")

    async def utterance_ended(self) -> None:
        if self._current is not None:
            await self._send(f"utterance-{self._current}-end")
            self._current = None

    async def echoed_back(self, name: str) -> None:
        self.echoed.append(name)
        if name.startswith("answer-"):
            await self._latency.playout_started(time.monotonic() - FIRST_CHUNK_S)


async def run_phone_call(
    websocket: WebSocket,
    start: StreamStart,
    runtime: AgentRuntime,
    on_turn: TurnListener,
    guard: InputGuard,
    live: LiveCalls | None = None,
) -> None:
    """Run one admitted phone call (after the `start` handshake) until Twilio stops the stream, the socket drops
    or the caller's input breaks the `guard`'s bounds; `live` lists the call while it runs (so a drain can end it)."""
    settings = runtime.settings
    latency = TurnLatencyObserver(runtime.budget)
    latency.add_listener(on_turn)
    marks = UtteranceMarks(websocket, start.stream_sid, latency)
    stopped: list[bool] = []

    async def on_stop() -> None:
        stopped.append(True)
        await call.worker.cancel(reason="twilio stopped the stream")

    serializer = TwilioMediaStreamSerializer(
        start,
        on_mark=marks.echoed_back,
        on_stop=on_stop,
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        rest_base_url=settings.twilio_api_base_url or None,
    )
    transport = VoiceWebsocketTransport(
        websocket,
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_in_sample_rate=TWILIO_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=TWILIO_RATE,
            add_wav_header=False,
            serializer=GuardedSerializer(serializer, guard),
        ),
        on_audio_written=marks.audio_written,
        on_utterance_end=marks.utterance_ended,
    )
    call = build_voice_call(runtime, transport, latency, sample_rate_in=TWILIO_RATE, sample_rate_out=TWILIO_RATE)

    @transport.event_handler("on_client_disconnected")
    async def _dropped(_transport: Any, _websocket: WebSocket) -> None:
        if not stopped:
            logger.warning(f"twilio: call {start.call_sid} dropped without a 'stop'")
        await call.worker.cancel(reason="twilio socket closed")

    logger.info(f"twilio: call {start.call_sid} stream {start.stream_sid} started")
    with (LiveCalls() if live is None else live).running(call):
        async with guard.enforced(websocket):
            await run_voice_call(call, max_duration_s=runtime.settings.max_call_seconds)
    logger.info(f"twilio: call {start.call_sid} ended; marks echoed: {len(marks.echoed)}")
