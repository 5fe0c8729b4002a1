"""Pre-synthesised phrases and the processor that plays them: the acknowledgement, the apology, the goodbye (at the
call's time limit, or when a drain ends a call), the hold phrase while a tool runs.

These are words the agent says without the LLM, so they never count as an answer (the latency tracker records them
as fillers). `PhrasePlayer` sits between the TTS and the output transport:

- the acknowledgement is for a slow provider: when the turn is confirmed a timer starts, and if no answer audio has
  come from the TTS `acknowledge_after_s` later, "Let me think." starts to play. It is fed to the output a few tens
  of milliseconds at a time, so the moment the answer's audio arrives the acknowledgement stops and the answer
  follows at once: it never pushes the answer later than it would have come without it;
- a `SpeakPhraseFrame` (the apology after a failure, a goodbye, the hold phrase while a tool runs) plays its
  phrase whole.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.frames import PhraseAudioFrame, PhraseKind, SpeakPhraseFrame
from agent.speech.voices import Voice

APOLOGY = "Sorry, I'm having trouble answering right now. Could you say that again?"
GOODBYE = "We have reached the time limit for this call. Thank you for calling, goodbye!"
DRAIN_GOODBYE = "I'm sorry, I have to end our call now, this line is being shut down. Please call again. Goodbye!"
HOLD = "One moment."
CHUNK_S = 0.04  # the acknowledgement goes out this much at a time ...
LEAD_S = 0.06  # ... never more than this ahead of real time, so it can be cut the moment the answer is ready


@dataclass(frozen=True)
class Phrase:
    text: str
    pcm: bytes  # 16-bit mono
    sample_rate: int

    def chunks(self, seconds: float) -> list[bytes]:
        size = int(self.sample_rate * seconds) * 2
        return [self.pcm[i : i + size] for i in range(0, len(self.pcm), size)]


def synthesize_phrases(voice: Voice, acknowledgement: str) -> dict[PhraseKind, Phrase]:
    """Every phrase, synthesised once at start-up (the acknowledgement only when one is configured)."""
    texts: dict[PhraseKind, str] = {
        "apology": APOLOGY, "goodbye": GOODBYE, "drain_goodbye": DRAIN_GOODBYE, "hold": HOLD,
    }  # fmt: skip
    if acknowledgement:
        texts["acknowledgement"] = acknowledgement
    return {kind: Phrase(text, b"".join(voice.synthesize(text)), voice.sample_rate) for kind, text in texts.items()}


class PhrasePlayer(FrameProcessor):
    """Plays pre-synthesised phrases into the output, and the acknowledgement when the answer is late."""

    def __init__(
        self, phrases: dict[PhraseKind, Phrase], *, acknowledge_after_s: float | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self._phrases = phrases
        self._acknowledge_after_s = acknowledge_after_s if "acknowledgement" in phrases else None
        self._timer: asyncio.Task | None = None
        self._answer_started = False  # no acknowledgement once the answer has begun (or a phrase took its place)
        self._push_lock = asyncio.Lock()  # orders acknowledgement chunks against the answer's first audio

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            if isinstance(frame, UserStoppedSpeakingFrame):
                await self._arm()
            elif isinstance(frame, (UserStartedSpeakingFrame, InterruptionFrame)):
                await self._disarm()
            elif isinstance(frame, SpeakPhraseFrame):
                await self._disarm()
                await self._play_whole(frame.kind)
                return
            elif isinstance(frame, TTSAudioRawFrame) and not self._answer_started:
                async with self._push_lock:
                    self._answer_started = True  # stops an acknowledgement that is playing
                    await self.push_frame(frame, direction)
                await self._disarm()
                return
        await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await self._disarm()
        await super().cleanup()

    async def _arm(self) -> None:
        await self._disarm()
        self._answer_started = False
        if self._acknowledge_after_s is not None:
            self._timer = self.create_task(self._acknowledge_when_late(self._acknowledge_after_s), "acknowledgement")

    async def _disarm(self) -> None:
        self._answer_started = True
        if self._timer:
            timer, self._timer = self._timer, None
            if timer is not asyncio.current_task():
                await self.cancel_task(timer)

    async def _acknowledge_when_late(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        started = time.monotonic()
        for index, chunk in enumerate(self._phrases["acknowledgement"].chunks(CHUNK_S)):
            async with self._push_lock:
                if self._answer_started:
                    return
                await self.push_frame(self._audio(chunk, "acknowledgement"))
            ahead = started + (index + 1) * CHUNK_S - LEAD_S - time.monotonic()
            await asyncio.sleep(max(0.0, ahead))

    async def _play_whole(self, kind: PhraseKind) -> None:
        for chunk in self._phrases[kind].chunks(CHUNK_S):
            await self.push_frame(self._audio(chunk, kind))

    def _audio(self, chunk: bytes, kind: PhraseKind) -> PhraseAudioFrame:
        return PhraseAudioFrame(audio=chunk, sample_rate=self._phrases[kind].sample_rate, num_channels=1)
