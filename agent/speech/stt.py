"""The pipecat STT stage: transcribes each VAD-bounded utterance with the shared Whisper model.

It also tells the latency tracker where the speech really ended: the VAD calls it over only after its smoothing
has let go, so the segment's trailing silence (by energy) is reported in a `SpeechEndFrame`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from pipecat.frames.frames import Frame, TranscriptionFrame, VADUserStoppedSpeakingFrame
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.utils.time import time_now_iso8601

from agent.frames import SpeechEndFrame
from agent.speech.energy import trailing_silence_s
from agent.speech.whisper import WhisperTranscriber


class WhisperSTTService(SegmentedSTTService):
    def __init__(self, transcriber: WhisperTranscriber, **kwargs) -> None:
        super().__init__(
            settings=STTSettings(model="tiny.en", language="en"),
            ttfs_p99_latency=0.6,
            trailing_silence_secs=0.0,
            **kwargs,
        )
        self._transcriber = transcriber

    @property
    def wants_wav_segments(self) -> bool:
        return False

    def can_generate_metrics(self) -> bool:
        return True

    async def _handle_user_stopped_speaking(self, frame: VADUserStoppedSpeakingFrame) -> None:
        silence = trailing_silence_s(bytes(self._audio_buffer), self.sample_rate)
        await self.push_frame(SpeechEndFrame(silence_s=silence))
        await super()._handle_user_stopped_speaking(frame)

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        await self.start_processing_metrics()
        text = await asyncio.to_thread(self._transcriber.transcribe, audio, self.sample_rate)
        await self.stop_processing_metrics()
        if text:
            yield TranscriptionFrame(text, self._user_id, time_now_iso8601(), finalized=True)
