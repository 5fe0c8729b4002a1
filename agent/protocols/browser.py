"""The browser page's websocket protocol.

Page -> server: binary messages are 16-bit little-endian mono PCM at 16 kHz (20 ms frames); text messages are
JSON events (`{"type": "playout_started"}` when the page starts playing an answer).
Server -> page: binary messages are the agent's audio in the same format; text messages are JSON events
(session, transcripts, the agent's words, interruptions, per-turn latency), sent by `pipelines/browser.py`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger
from pipecat.frames.frames import Frame, InputAudioRawFrame, InterruptionFrame, OutputAudioRawFrame
from pipecat.serializers.base_serializer import FrameSerializer

BROWSER_SAMPLE_RATE = 16000
MAX_MESSAGE_BYTES = 64 * 1024

ClientEventHandler = Callable[[dict[str, Any]], Awaitable[None]]


class BrowserSerializer(FrameSerializer):
    """Raw PCM both ways plus JSON events. Malformed input is logged and dropped, never fatal to the call."""

    def __init__(self, on_client_event: ClientEventHandler) -> None:
        super().__init__()
        self._on_client_event = on_client_event

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if isinstance(frame, OutputAudioRawFrame):
            return frame.audio
        if isinstance(frame, InterruptionFrame):
            return json.dumps({"type": "interrupt"})
        return None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes):
            if len(data) % 2 or len(data) > MAX_MESSAGE_BYTES or not data:
                logger.warning(f"browser: dropped an audio message of {len(data)} bytes (16-bit PCM frames expected)")
                return None
            return InputAudioRawFrame(audio=data, sample_rate=BROWSER_SAMPLE_RATE, num_channels=1)
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's recursion limit
            logger.warning(f"browser: dropped a text message that is not JSON: {data[:60]!r}")
            return None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            logger.warning(f"browser: dropped an event without a type: {data[:60]!r}")
            return None
        await self._on_client_event(event)
        return None
