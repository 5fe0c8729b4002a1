"""pipecat's Deepgram service, made to give the turn transcripts the end-of-turn strategy reads.

At each VAD stop pipecat's service sends Deepgram a `Finalize`; Deepgram answers with the last words as a final
`Results` marked `from_finalize` (empty when its endpointing already finalised them). That answer is the hosted
equivalent of the local STT's transcript after a VAD stop: it goes out as a `TurnTranscriptionFrame` naming that
stop, with the words new since the last one and the whole turn's text from Deepgram's final results. Its plain
final `TranscriptionFrame`s are not pushed (the user aggregator would append the words twice); interim ones are.
A connection error or rejection is also told downstream (`HostedSpeechFailedFrame`) for the local Whisper standing
by; a stop at which the socket is down is one too.
"""

from __future__ import annotations

from collections import deque

from deepgram.listen.v1.types import ListenV1Results
from pipecat.frames.frames import Frame, UserStoppedSpeakingFrame, VADUserStoppedSpeakingFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.utils.time import time_now_iso8601

from agent.frames import HostedSpeechFailedFrame, TurnTranscriptionFrame
from agent.settings import Settings


class DeepgramTurnSTTService(DeepgramSTTService):
    """Deepgram live transcription whose answer to each VAD stop is that stop's turn transcript."""

    def __init__(self, settings: Settings, **kwargs) -> None:
        super().__init__(
            api_key=settings.deepgram_api_key.get_secret_value(),
            base_url=settings.deepgram_base_url,
            settings=DeepgramSTTService.Settings(model=settings.deepgram_model, language=settings.deepgram_language),
            **kwargs,
        )
        self._segments = 0  # VAD stops so far
        self._finalizing: deque[int] = deque()  # the stops whose Finalize awaits its answer, in order
        self._finals: list[str] = []  # the turn's final transcripts
        self._sent = 0  # how many of them went out already

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        connected = self._connection is not None
        await super().process_frame(frame, direction)  # a VAD stop sends the Finalize
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            self._segments += 1
            if connected:
                self._finalizing.append(self._segments)
            else:
                await self._failed("was not connected when the caller stopped")
        elif isinstance(frame, UserStoppedSpeakingFrame) and direction == FrameDirection.UPSTREAM:
            self._finals, self._sent = [], 0  # the turn is over: the next words start a new one

    async def push_error(self, error_msg: str, *args, **kwargs) -> None:
        await super().push_error(error_msg, *args, **kwargs)
        await self._failed(error_msg)

    async def _on_message(self, message: object) -> None:
        if not isinstance(message, ListenV1Results) or not message.is_final or not message.channel:
            await super()._on_message(message)
            return
        alternatives = message.channel.alternatives
        if alternatives and alternatives[0].transcript:
            self._finals.append(alternatives[0].transcript)
        if not message.from_finalize or not self._finalizing:
            return
        self.confirm_finalize()
        await self.emit_stt_usage_metrics()
        new_words = " ".join(self._finals[self._sent :])
        self._sent = len(self._finals)
        frame = TurnTranscriptionFrame(new_words, self._user_id, time_now_iso8601(), finalized=True)
        frame.turn_text, frame.segment = " ".join(self._finals), self._finalizing.popleft()
        await self.push_frame(frame)

    async def _failed(self, reason: str) -> None:
        await self.push_frame(HostedSpeechFailedFrame(provider="deepgram", reason=reason))
