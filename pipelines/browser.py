"""Browser entry: one page websocket = one call. Wires the socket to the voice pipeline and streams the page's
live view (transcripts, the agent's words, barge-in, each turn's latency waterfall) as JSON events."""

from __future__ import annotations

import json
from typing import Any

from fastapi import WebSocket
from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InterimTranscriptionFrame,
    LLMTextFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams

from agent.frames import TurnTranscriptionFrame
from agent.latency.observer import AudioKind, TurnLatencyObserver, TurnListener
from agent.latency.turns import summarize_turns
from agent.llm.service import StreamingChatLLMService
from agent.protocols.browser import BROWSER_SAMPLE_RATE, BrowserSerializer
from agent.protocols.input_guard import GuardedSerializer, InputGuard
from agent.protocols.websocket_transport import VoiceWebsocketTransport, send_text_if_open
from agent.runtime import AgentRuntime
from pipelines.live import LiveCalls
from pipelines.voice import build_voice_call, quiet_line, run_voice_call


class PageEvents(BaseObserver):
    """Turns pipeline frames into the page's JSON events."""

    def __init__(self, websocket: WebSocket, **kwargs) -> None:
        super().__init__(observe_every_push=False, **kwargs)
        self._websocket = websocket

    async def send(self, event: dict[str, Any]) -> None:
        await send_text_if_open(self._websocket, json.dumps(event))

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if data.direction != FrameDirection.DOWNSTREAM:
            return
        if isinstance(frame, UserStartedSpeakingFrame):
            await self.send({"type": "user_started"})
        elif isinstance(frame, UserStoppedSpeakingFrame):
            await self.send({"type": "user_stopped"})
        elif isinstance(frame, InterimTranscriptionFrame):
            await self.send({"type": "transcript", "final": False, "text": frame.text})
        elif isinstance(frame, TurnTranscriptionFrame):
            # The whole turn so far (Whisper may revise earlier words): the page rewrites the turn's bubble.
            await self.send({"type": "transcript", "final": True, "text": frame.turn_text, "whole_turn": True})
        elif isinstance(frame, TranscriptionFrame) and frame.text.strip():
            await self.send({"type": "transcript", "final": True, "text": frame.text})
        elif isinstance(frame, LLMTextFrame) and isinstance(data.source, StreamingChatLLMService):
            await self.send({"type": "bot_text", "text": frame.text})
        elif isinstance(frame, BotStartedSpeakingFrame):
            await self.send({"type": "bot_started"})
        elif isinstance(frame, BotStoppedSpeakingFrame):
            await self.send({"type": "bot_stopped"})


class PageSession:
    """The page's side of a call beyond the pipeline's frames: the page's reports in (when its playout started),
    each turn's report with the session's summary out, and the answer's start right behind its first chunk."""

    def __init__(self, events: PageEvents, latency: TurnLatencyObserver, on_turn: TurnListener) -> None:
        self._events = events
        self._latency = latency
        self._on_turn = on_turn

    async def client_event(self, event: dict[str, Any]) -> None:
        if event["type"] == "playout_started":
            await self._latency.playout_started()
        else:
            logger.debug(f"browser: ignored client event {event['type']!r}")

    async def turn_reported(self, event: str, report: dict[str, Any]) -> None:
        if (result := self._on_turn(event, report)) is not None:
            await result
        await self._events.send({"type": "turn", "report": report, "session": summarize_turns(self._latency.reports)})

    async def audio_written(self, kind: AudioKind) -> None:
        if await self._latency.audio_sent(kind):
            await self._events.send({"type": "answer_start"})


async def run_browser_call(
    websocket: WebSocket,
    runtime: AgentRuntime,
    on_turn: TurnListener,
    guard: InputGuard,
    live: LiveCalls | None = None,
) -> None:
    """Run one page's call until the page closes the socket or its input breaks the `guard`'s bounds. `on_turn`
    gets every turn report (for /metrics); `live` lists the call while it runs (so a drain can end it)."""
    latency = TurnLatencyObserver(runtime.budget)
    events = PageEvents(websocket)
    page = PageSession(events, latency, on_turn)
    latency.add_listener(page.turn_reported)
    transport = VoiceWebsocketTransport(
        websocket,
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_in_sample_rate=BROWSER_SAMPLE_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=BROWSER_SAMPLE_RATE,
            add_wav_header=False,
            serializer=GuardedSerializer(BrowserSerializer(page.client_event), guard),
        ),
        on_audio_written=page.audio_written,
        quiet_line=quiet_line(runtime.settings),
    )
    call = build_voice_call(
        runtime,
        transport,
        latency,
        sample_rate_in=BROWSER_SAMPLE_RATE,
        sample_rate_out=BROWSER_SAMPLE_RATE,
        observers=[events],
        live_transcript=True,
    )

    @transport.event_handler("on_client_disconnected")
    async def _closed(_transport: Any, _websocket: WebSocket) -> None:
        await call.worker.cancel(reason="page closed")

    provider = runtime.provider
    await events.send(
        {
            "type": "session",
            "provider": provider.name,
            "model": provider.model,
            "budget_ms": runtime.settings.latency_budget_ms,
            "sample_rate": BROWSER_SAMPLE_RATE,
        }
    )
    with (LiveCalls() if live is None else live).running(call):
        async with guard.enforced(websocket):
            await run_voice_call(call, max_duration_s=runtime.settings.max_call_seconds)
