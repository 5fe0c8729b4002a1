"""The local Whisper standing by behind a hosted recogniser, so a hosted failure never leaves the caller unheard.

It sits right after the hosted STT and keeps the audio of the caller's turn (as the local STT does) without
transcribing it, while the hosted recogniser's turn transcripts pass through. It takes over for the rest of the call
when the hosted one reports a failure (`HostedSpeechFailedFrame`) or sends no transcript within `timeout_s` of a
VAD stop (a stall, a socket closed without an error): it then transcribes the turn it holds for that stop, so the
caller still gets an answer, and drops whatever the hosted recogniser sends later.
"""

from __future__ import annotations

import asyncio

from loguru import logger
from pipecat.frames.frames import Frame, InterimTranscriptionFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.stt_service import STTService

from agent.frames import HostedSpeechFailedFrame, TurnTranscriptionFrame
from agent.speech.stt import StreamingWhisperSTTService, TurnSpeech
from agent.speech.whisper import WhisperTranscriber


class StandbyWhisperSTTService(StreamingWhisperSTTService):
    """The local Whisper behind the hosted recogniser `provider`: idle while it answers, in charge once it fails."""

    def __init__(self, transcriber: WhisperTranscriber, *, provider: str, timeout_s: float, **kwargs) -> None:
        super().__init__(transcriber, **kwargs)
        self._provider: str | None = provider  # None once this call fell back to the local Whisper
        self._timeout_s = timeout_s
        self._answered = 0  # the last VAD stop the hosted recogniser answered
        self._waiting: tuple[TurnSpeech, int, int] | None = None  # the last stop: (turn, spoken_until, segment)
        self._watchdog: asyncio.Task | None = None

    @property
    def standing_by(self) -> bool:
        return self._provider is not None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        hosted = isinstance(frame, (TurnTranscriptionFrame, InterimTranscriptionFrame))
        if hosted and direction == FrameDirection.DOWNSTREAM and not self.standing_by:
            await super(STTService, self).process_frame(frame, direction)  # the base bookkeeping, not the push
            return  # a late transcript from the recogniser this call gave up on
        await super().process_frame(frame, direction)
        if isinstance(frame, TurnTranscriptionFrame) and direction == FrameDirection.DOWNSTREAM:
            self._answered = max(self._answered, frame.segment)
            if self._turn:
                self._turn.sent_words = frame.turn_text.split()  # the words the user aggregator has already
        elif isinstance(frame, HostedSpeechFailedFrame) and frame.provider == self._provider:
            await self._fall_back(frame.reason)

    def _maybe_start_job(self, turn: TurnSpeech) -> None:
        if not self.standing_by:
            super()._maybe_start_job(turn)

    def _segment_ended(self, turn: TurnSpeech, spoken_until: int, segment: int) -> None:
        if not self.standing_by:
            super()._segment_ended(turn, spoken_until, segment)
            return
        self._waiting = (turn, spoken_until, segment)
        if self._watchdog:
            self._watchdog.cancel()
        self._watchdog = self.create_task(self._watch(segment), "hosted-stt-watchdog")

    async def _watch(self, segment: int) -> None:
        await asyncio.sleep(self._timeout_s)
        if self._answered < segment:
            await self._fall_back(f"sent no transcript within {self._timeout_s * 1000:.0f} ms of the caller's stop")

    async def _fall_back(self, reason: str) -> None:
        if not self.standing_by:
            return
        logger.warning(f"STT: {self._provider} {reason}; the local Whisper transcribes the rest of this call")
        self._provider = None
        if self._watchdog and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        if self._waiting and self._waiting[2] > self._answered and not self._waiting[0].ended:
            super()._segment_ended(*self._waiting)  # the stop left unanswered: its transcript is due now
        elif self._turn and self._speaking:
            super()._maybe_start_job(self._turn)
