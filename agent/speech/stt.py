"""The pipecat STT stage: Whisper that has the transcript ready when the caller stops talking.

Whisper is not a streaming model, so the streaming is done around it, on the audio of each utterance (from the VAD's
start to its stop):

- **early start**: the moment the caller's audio goes quiet (`DIP_S` of low energy, before the VAD has decided
  anything) the utterance so far is transcribed in the background. If the VAD then calls the speech over with no
  new words since, that transcript is the final one, mostly finished already;
- **pieces**: once the utterance is longer than `piece_s`, it is cut at the next pause; the piece is transcribed in
  the background while the caller goes on, and later pieces get the text before them as Whisper's previous-text
  prompt. After the caller stops, only the last piece is left to decode, however long they talked;
- **bounded**: a piece without any pause is cut at `3 * piece_s` anyway, so one caller's monologue costs one
  bounded transcription at a time and never stalls the shared Whisper for the other calls;
- **interim** transcripts of the utterance so far go out about once a second for the live transcript, only when
  Whisper is idle, so they never delay a final one.

It also tells the latency tracker where the speech really ended (`SpeechEndFrame`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pipecat.frames.frames import (
    Frame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import STTService
from pipecat.utils.time import time_now_iso8601

from agent.frames import SpeechEndFrame
from agent.speech.whisper import WhisperTranscriber

DIP_S = 0.04  # this much low-energy audio after speech and a transcription starts
PRE_ROLL_S = 0.5  # audio kept from before the VAD's start (it decides only after some speech)
INTERIM_EVERY_S = 1.0
QUIET_FRACTION = 0.1  # a frame below this fraction of the utterance's speech level is quiet
MIN_SPEECH_RMS = 80.0

JobKind = Literal["early", "piece", "interim"]


@dataclass
class Job:
    """One background transcription of the current piece's audio up to `end` bytes."""

    kind: JobKind
    end: int
    task: asyncio.Task


class Utterance:
    """One stretch of speech between the VAD's start and stop, and what is known of its words so far."""

    def __init__(self, pre_roll: bytes, bytes_per_s: int) -> None:
        self.pieces: list[str] = []  # the text of the pieces already cut off
        self.audio = bytearray(pre_roll)  # the current piece
        self.bytes_per_s = bytes_per_s
        self.voiced_end = len(self.audio)  # bytes into the piece where the last loud frame ended
        self.quiet_s = 0.0
        self.speech_level = 0.0
        self.job: Job | None = None
        self.ready: tuple[int, str] | None = None  # an early transcript: (bytes it covers, text)
        self.last_interim = time.monotonic()
        self.finishing = False

    @property
    def previous_text(self) -> str:
        return " ".join(self.pieces)

    @property
    def trailing_silence_s(self) -> float:
        return (len(self.audio) - self.voiced_end) / self.bytes_per_s

    def add(self, audio: bytes) -> None:
        self.audio += audio
        samples = np.frombuffer(audio, np.int16).astype(np.float32)
        level = float(np.sqrt(np.mean(samples * samples))) if len(samples) else 0.0
        self.speech_level = max(self.speech_level, level)
        if level >= max(MIN_SPEECH_RMS, QUIET_FRACTION * self.speech_level):
            self.voiced_end = len(self.audio)
            self.quiet_s = 0.0
        else:
            self.quiet_s += len(audio) / self.bytes_per_s

    def cut(self, end: int, text: str) -> None:
        """The piece up to `end` is transcribed: keep its text, drop its audio."""
        self.pieces.append(text)
        del self.audio[:end]
        self.voiced_end = max(0, self.voiced_end - end)
        self.ready = None


class StreamingWhisperSTTService(STTService):
    """Transcribes each utterance while it is spoken, so the final transcript is ready as the caller stops."""

    def __init__(
        self, transcriber: WhisperTranscriber, *, piece_s: float = 3.0, interim_results: bool = True, **kwargs
    ) -> None:
        super().__init__(settings=STTSettings(model="tiny.en", language="en"), ttfs_p99_latency=0.3, **kwargs)
        self._whisper = transcriber
        self._piece_s = piece_s
        self._interim_results = interim_results
        self._pre_roll: deque[bytes] = deque()
        self._utterance: Utterance | None = None

    def can_generate_metrics(self) -> bool:
        return True

    @property
    def _bytes_per_s(self) -> int:
        return self.sample_rate * 2

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        if self._utterance is None:
            self._pre_roll.append(audio)
            while sum(map(len, self._pre_roll)) > PRE_ROLL_S * self._bytes_per_s:
                self._pre_roll.popleft()
        else:
            self._utterance.add(audio)
            self._maybe_start_job(self._utterance)
        yield None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame) and self._utterance is None:
            self._utterance = Utterance(b"".join(self._pre_roll), self._bytes_per_s)
            self._pre_roll.clear()
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and self._utterance is not None:
            utterance, self._utterance = self._utterance, None
            await self.push_frame(SpeechEndFrame(silence_s=utterance.trailing_silence_s))
            self.create_task(self._finish(utterance), "whisper-final")

    async def _finish(self, utterance: Utterance) -> None:
        """The final transcript: the early one when no words came after it, else the last piece decoded now."""
        utterance.finishing = True
        await self.start_processing_metrics()
        while utterance.job:  # a piece being cut off is needed; an early transcript may be the final one
            await asyncio.shield(utterance.job.task)
        if utterance.ready and utterance.ready[0] >= utterance.voiced_end:
            tail = utterance.ready[1]
        else:
            tail = await asyncio.to_thread(
                self._whisper.transcribe, bytes(utterance.audio), self.sample_rate, utterance.previous_text
            )
        await self.stop_processing_metrics()
        text = " ".join(filter(None, [*utterance.pieces, tail])).strip()
        if text:
            await self.push_frame(TranscriptionFrame(text, self._user_id, time_now_iso8601(), finalized=True))

    # -- background transcriptions -------------------------------------------------------------------
    def _maybe_start_job(self, utterance: Utterance) -> None:
        if utterance.job or utterance.finishing:
            return
        piece_bytes = int(self._piece_s * self._bytes_per_s)
        paused = utterance.quiet_s >= DIP_S
        if (paused and len(utterance.audio) >= piece_bytes) or len(utterance.audio) >= 3 * piece_bytes:
            self._transcribe_in_background(utterance, "piece")
        elif paused and (utterance.ready is None or utterance.ready[0] < utterance.voiced_end):
            self._transcribe_in_background(utterance, "early")
        elif self._interim_results and time.monotonic() - utterance.last_interim >= INTERIM_EVERY_S:
            utterance.last_interim = time.monotonic()
            self._transcribe_in_background(utterance, "interim")

    def _transcribe_in_background(self, utterance: Utterance, kind: JobKind) -> None:
        end, audio, previous = len(utterance.audio), bytes(utterance.audio), utterance.previous_text
        transcribe = self._whisper.transcribe_if_idle if kind == "interim" else self._whisper.transcribe

        async def run() -> None:
            try:
                text = await asyncio.to_thread(transcribe, audio, self.sample_rate, previous)
            finally:
                utterance.job = None
            if text is None:
                return
            if kind == "piece":
                utterance.cut(end, text)
            elif kind == "early":
                utterance.ready = (end, text)
            elif text and utterance is self._utterance:
                interim = " ".join([*utterance.pieces, text])
                await self.push_frame(InterimTranscriptionFrame(interim, self._user_id, time_now_iso8601()))
            if utterance is self._utterance:
                self._maybe_start_job(utterance)

        utterance.job = Job(kind, end, self.create_task(run(), f"whisper-{kind}"))
