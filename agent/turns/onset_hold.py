"""The answer's first audio waits while the caller may be starting to speak.

The VAD confirms speech only after `VAD_START_MS` of it, and until then a turn that has just ended cannot know the
caller went on: an answer whose first audio goes out in that window is heard over the caller's first syllable, then
cut, which is exactly what a false start sounds like. `AnswerOnsetHold` sits just before the output transport and
holds an answer's first audio while the VAD has heard voice within `RISING_S` and not yet confirmed it (its
probability is rising). If the voice dies away (a cough, a click, a breath), the held audio goes out at once; if the
VAD confirms speech, pipecat's interruption drops it, and the caller heard nothing. Holding never lasts longer than
`max_hold_s`, so noise on the line can delay an answer but never silence it. Each hold is reported downstream
(`AnswerHeldFrame`) for the turn report.
"""

from __future__ import annotations

import asyncio
import time

from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    LLMFullResponseStartFrame,
    TTSAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.frames import AnswerHeldFrame, PhraseAudioFrame
from agent.turns.vad import FastStopSileroVAD

RISING_S = 0.06  # voice heard this recently, unconfirmed: the caller may be starting to speak
POLL_S = 0.01


class AnswerOnsetHold(FrameProcessor):
    """Holds the first audio of each answer while the VAD hears unconfirmed voice (at most `max_hold_s`)."""

    def __init__(self, vad: FastStopSileroVAD, *, max_hold_s: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self._vad = vad
        self._max_hold_s = max_hold_s
        self._caller_speaking = False
        self._answer_started = True  # no answer is waiting for its first audio until a response starts
        self._held: list[tuple[Frame, FrameDirection]] = []
        self._release: asyncio.Task | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._caller_speaking = True
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._caller_speaking = False
        elif isinstance(frame, InterruptionFrame):
            await self._drop()
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._answer_started = False
        elif self._is_answer_audio(frame) and not self._answer_started:
            if self._held or self._caller_may_be_speaking():
                self._held.append((frame, direction))
                if self._release is None:
                    self._release = self.create_task(self._release_when_quiet(), f"{self}::release")
                return
            self._answer_started = True
        await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await self._drop()
        await super().cleanup()

    def _is_answer_audio(self, frame: Frame) -> bool:
        return isinstance(frame, TTSAudioRawFrame) and not isinstance(frame, PhraseAudioFrame)

    def _caller_may_be_speaking(self) -> bool:
        return not self._caller_speaking and time.monotonic() - self._vad.voiced_at < RISING_S

    def _holding(self) -> bool:
        return self._caller_speaking or self._caller_may_be_speaking()

    async def _release_when_quiet(self) -> None:
        """Let the held audio go once the voice has died away (or the hold has lasted `max_hold_s`). Voice the VAD
        confirms keeps it held: the interruption that follows drops it."""
        started = time.monotonic()
        while (
            self._caller_speaking or self._caller_may_be_speaking()
        ) and time.monotonic() - started < self._max_hold_s:
            await asyncio.sleep(POLL_S)
        held, self._held = self._held, []
        self._release = None
        self._answer_started = True
        await self.push_frame(AnswerHeldFrame(held_s=time.monotonic() - started))
        for frame, direction in held:
            await self.push_frame(frame, direction)

    async def _drop(self) -> None:
        """The caller spoke: the held audio is the interrupted answer's, and goes nowhere."""
        if self._release is not None:
            await self.cancel_task(self._release)
            self._release = None
        self._held = []
