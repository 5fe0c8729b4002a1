"""Phone entry: one Twilio Media Stream = one call, at the carrier's 8 kHz mu-law.

After each answer's first audio chunk and after its last, a `mark` goes to Twilio; Twilio echoes a mark once
the audio before it has played, so the first echo times when the caller started hearing the answer (the
latency budget as heard on the phone side) and `clear` on barge-in drops what was not heard.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from fastapi import WebSocket
from loguru import logger
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams

from agent.latency.observer import TurnLatencyObserver, TurnListener
from agent.protocols.twilio import TWILIO_RATE, StreamStart, TwilioMediaStreamSerializer, mark_message
from agent.protocols.websocket_transport import VoiceWebsocketTransport, send_text_if_open
from agent.runtime import AgentRuntime
from pipelines.live import LiveCalls
from pipelines.voice import CALL_LIMIT_GOODBYE, build_voice_call, run_voice_call

FIRST_CHUNK_S = 0.04  # pipecat writes 40 ms chunks: a start mark is echoed when that first chunk finished playing


class UtteranceMarks:
    """Sends `<n>-start` after an answer's first audio and `<n>-end` after its last; reads Twilio's echoes."""

    def __init__(self, websocket: WebSocket, stream_sid: str, latency: TurnLatencyObserver):
        self._websocket = websocket
        self._stream_sid = stream_sid
        self._latency = latency
        self._numbers = itertools.count(1)
        self._current: int | None = None
        self.echoed: list[str] = []

    async def _send(self, name: str) -> None:
        await send_text_if_open(self._websocket, mark_message(self._stream_sid, name))

    async def audio_written(self) -> None:
        await self._latency.audio_sent()
        if self._current is None:
            self._current = next(self._numbers)
            await self._send(f"utterance-{self._current}-start")

    async def utterance_ended(self) -> None:
        if self._current is not None:
            await self._send(f"utterance-{self._current}-end")
            self._current = None

    async def echoed_back(self, name: str) -> None:
        self.echoed.append(name)
        if name.endswith("-start"):
            await self._latency.playout_started(time.monotonic() - FIRST_CHUNK_S)


async def run_phone_call(
    websocket: WebSocket,
    start: StreamStart,
    runtime: AgentRuntime,
    on_turn: TurnListener,
    live: LiveCalls | None = None,
) -> None:
    """Run one phone call (after the `start` handshake) until Twilio stops the stream or the socket drops;
    `live` lists the call while it runs (so a drain can end it with a goodbye)."""
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
            serializer=serializer,
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
        await run_voice_call(call, max_duration_s=runtime.settings.max_call_seconds, goodbye=CALL_LIMIT_GOODBYE)
    logger.info(f"twilio: call {start.call_sid} ended; marks echoed: {len(marks.echoed)}")
