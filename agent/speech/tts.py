"""The pipecat TTS stage: speaks each text chunk with the shared local voice, streaming audio per sentence.

Text is chunked by `ClauseTextAggregator`, so the first clause of an answer is synthesised while the LLM is
still writing the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator

from pipecat.frames.frames import Frame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService

from agent.speech.clauses import ClauseTextAggregator
from agent.speech.voices import Voice

_END = object()


async def _in_thread(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Run a blocking synthesis iterator in a worker thread, one piece at a time."""
    while (piece := await asyncio.to_thread(next, pieces, _END)) is not _END:
        yield piece  # type: ignore[misc]


class LocalTTSService(TTSService):
    def __init__(self, voice: Voice, *, first_clause_min_words: int = 2, **kwargs) -> None:
        super().__init__(
            settings=TTSSettings(model=voice.name, voice=voice.name, language="en"),
            push_start_frame=True,
            push_stop_frames=True,
            stop_frame_timeout_s=0.5,
            **kwargs,
        )
        self._voice = voice
        # pipecat's TTSService takes no aggregator argument; the clause chunker replaces its sentence one.
        self._text_aggregator = ClauseTextAggregator(min_clause_words=first_clause_min_words)

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        await self.start_tts_usage_metrics(text)
        try:
            async for frame in self._stream_audio_frames_from_iterator(
                _in_thread(self._voice.synthesize(text)),
                in_sample_rate=self._voice.sample_rate,
                context_id=context_id,
            ):
                await self.stop_ttfb_metrics()
                yield frame
        finally:
            await self.stop_ttfb_metrics()
