"""pipecat's FastAPI websocket transport, with an input that batches the caller's frames while their line is quiet
(`quiet_line.py`), and an output that reports every bot audio write the moment it has gone to the socket, and
whether it was the answer or a pre-synthesised phrase (for true voice-to-voice timing), and the end of each
utterance (for Twilio marks)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import WebSocket
from loguru import logger
from pipecat.frames.frames import BotStoppedSpeakingFrame, Frame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketInputTransport,
    FastAPIWebsocketOutputTransport,
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from starlette.websockets import WebSocketState

from agent.frames import PhraseAudioFrame
from agent.latency.observer import AudioKind
from agent.protocols.quiet_line import QuietLineBatcher

Hook = Callable[[], Awaitable[None]]
AudioHook = Callable[[AudioKind], Awaitable[object]]


async def _nothing(*_: object) -> None:
    return None


def audio_kind(frame: OutputAudioRawFrame) -> AudioKind:
    return "filler" if isinstance(frame, PhraseAudioFrame) else "answer"


async def send_text_if_open(websocket: WebSocket, text: str) -> None:
    """Send a text message beside the transport's own traffic; a client that has gone away is not an error
    (the transport notices the close and ends the call)."""
    if websocket.application_state != WebSocketState.CONNECTED:
        return
    try:
        await websocket.send_text(text)
    except Exception as e:
        logger.debug(f"websocket: message not sent, the client went away ({type(e).__name__})")


async def close_if_open(websocket: WebSocket, code: int, reason: str = "") -> None:
    """Close with `code` (before `accept`, the client gets HTTP 403); a client that has gone already is not an
    error."""
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    try:
        await websocket.close(code=code, reason=reason)
    except Exception as e:
        logger.debug(f"websocket: close not sent, the client went away ({type(e).__name__})")


class _QuietBatchingInput(FastAPIWebsocketInputTransport):
    def __init__(self, *args, quiet_line: QuietLineBatcher, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._quiet_line = quiet_line

    async def push_audio_frame(self, frame: InputAudioRawFrame) -> None:
        released = self._quiet_line.add(frame)
        if released is not None:
            await super().push_audio_frame(released)


class _ReportingOutput(FastAPIWebsocketOutputTransport):
    def __init__(self, *args, on_audio_written: AudioHook, on_utterance_end: Hook, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_audio_written = on_audio_written
        self._on_utterance_end = on_utterance_end

    async def push_frame(self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM) -> None:
        if direction == FrameDirection.DOWNSTREAM and isinstance(frame, BotStoppedSpeakingFrame):
            await self._on_utterance_end()
        await super().push_frame(frame, direction)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        written = await super().write_audio_frame(frame)
        if written:
            await self._on_audio_written(audio_kind(frame))
        return written


class VoiceWebsocketTransport(FastAPIWebsocketTransport):
    def __init__(
        self,
        websocket: WebSocket,
        params: FastAPIWebsocketParams,
        *,
        on_audio_written: AudioHook = _nothing,
        on_utterance_end: Hook = _nothing,
        quiet_line: QuietLineBatcher | None = None,
    ) -> None:
        super().__init__(websocket, params)
        if quiet_line is not None:
            self._input = _QuietBatchingInput(
                self, self._client, self._params, quiet_line=quiet_line, name=self._input_name
            )
        self._output = _ReportingOutput(
            self,
            self._client,
            self._params,
            on_audio_written=on_audio_written,
            on_utterance_end=on_utterance_end,
            name=self._output_name,
        )
