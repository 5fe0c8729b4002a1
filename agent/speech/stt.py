"""The pipecat STT stage: transcribes each VAD-bounded utterance with the shared Whisper model.

While the caller speaks, it transcribes what it has heard so far about once a second (`InterimTranscriptionFrame`,
for the live transcript), but only when Whisper is idle, so the final transcription never queues behind it.
It also tells the latency tracker where the speech really ended: the VAD calls it over only after its smoothing
has let go, so the segment's trailing silence (by energy) is reported in a `SpeechEndFrame`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.utils.time import time_now_iso8601

from agent.frames import SpeechEndFrame
from agent.speech.energy import trailing_silence_s
from agent.speech.whisper import WhisperTranscriber

INTERIM_EVERY_S = 1.0


class WhisperSTTService(SegmentedSTTService):
    def __init__(self, transcriber: WhisperTranscriber, *, interim_results: bool = True, **kwargs) -> None:
        super().__init__(
            settings=STTSettings(model="tiny.en", language="en"),
            ttfs_p99_latency=0.6,
            trailing_silence_secs=0.0,
            **kwargs,
        )
        self._transcriber = transcriber
        self._interim_results = interim_results
        self._speech_started_at = 0.0
        self._last_interim_at = 0.0
        self._utterance = 0  # bumped at each start and stop, so a late interim is recognised and dropped

    @property
    def wants_wav_segments(self) -> bool:
        return False

    def can_generate_metrics(self) -> bool:
        return True

    async def _handle_user_started_speaking(self, frame: VADUserStartedSpeakingFrame) -> None:
        self._utterance += 1
        self._speech_started_at = self._last_interim_at = time.monotonic()
        await super()._handle_user_started_speaking(frame)

    async def process_audio_frame(self, frame: InputAudioRawFrame, direction: FrameDirection) -> None:
        await super().process_audio_frame(frame, direction)
        now = time.monotonic()
        if self._interim_results and self._user_speaking and now - self._last_interim_at >= INTERIM_EVERY_S:
            self._last_interim_at = now
            self.create_task(self._interim(bytes(self._audio_buffer), self._utterance), "whisper-interim")

    async def _interim(self, audio: bytes, utterance: int) -> None:
        text = await asyncio.to_thread(self._transcriber.transcribe_if_idle, audio, self.sample_rate)
        if text and self._user_speaking and utterance == self._utterance:  # still the same stretch of speech
            await self.push_frame(InterimTranscriptionFrame(text, self._user_id, time_now_iso8601()))

    async def _handle_user_stopped_speaking(self, frame: VADUserStoppedSpeakingFrame) -> None:
        self._utterance += 1
        silence = trailing_silence_s(bytes(self._audio_buffer), self.sample_rate)
        await self.push_frame(SpeechEndFrame(silence_s=silence))
        await super()._handle_user_stopped_speaking(frame)

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        await self.start_processing_metrics()
        text = await asyncio.to_thread(self._transcriber.transcribe, audio, self.sample_rate)
        await self.stop_processing_metrics()
        if text:
            yield TranscriptionFrame(text, self._user_id, time_now_iso8601(), finalized=True)
