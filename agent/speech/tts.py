"""The pipecat TTS stage: speaks each text chunk with the shared local voice, streaming audio per sentence.

Text arrives already cut into clauses and sentences by `ClauseChunker` as `AggregatedTextFrame`s (so the first clause
of an answer is synthesised while the LLM is still writing the rest), which pipecat's TTS speaks as they are. Each
word gets an estimated time in the audio (proportional to its length), so pipecat releases word-level `TTSTextFrame`s
as the audio plays: on barge-in the context keeps exactly the words heard.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator

from loguru import logger
from pipecat.frames.frames import Frame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService

from agent.frames import SpeakPhraseFrame
from agent.speech.voices import Voice

_END = object()


async def _in_thread(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Run a blocking synthesis iterator in a worker thread, one piece at a time."""
    while (piece := await asyncio.to_thread(next, pieces, _END)) is not _END:
        yield piece  # type: ignore[misc]


class LocalTTSService(TTSService):
    """Synthesises each chunk of the answer with the process's shared local voice, in a worker thread."""

    def __init__(self, voice: Voice, **kwargs) -> None:
        super().__init__(
            settings=TTSSettings(model=voice.name, voice=voice.name, language="en"),
            push_start_frame=True,
            push_stop_frames=True,
            push_text_frames=False,
            stop_frame_timeout_s=0.5,
            **kwargs,
        )
        self._voice = voice
        # Where the next chunk's audio starts within the current context (one context per answer).
        self._context_id: str | None = None
        self._context_offset_s = 0.0

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        await self.start_tts_usage_metrics(text)
        if context_id != self._context_id:
            self._context_id, self._context_offset_s = context_id, 0.0
        async for frame in speak_locally(self, self._voice, text, context_id, self._context_offset_s):
            if isinstance(frame, TTSAudioRawFrame):
                self._context_offset_s += len(frame.audio) / 2 / self.sample_rate
            yield frame


async def speak_locally(
    service: TTSService, voice: Voice, text: str, context_id: str, offset_s: float
) -> AsyncGenerator[Frame, None]:
    """`text` in the local `voice` as `service`'s audio frames for `context_id`, then its words' estimated times
    (from `offset_s` into the context). A voice that fails says sorry instead of leaving the caller in silence."""
    duration_s = 0.0
    try:
        async for frame in service._stream_audio_frames_from_iterator(
            _in_thread(voice.synthesize(text)), in_sample_rate=voice.sample_rate, context_id=context_id
        ):
            await service.stop_ttfb_metrics()
            duration_s += len(frame.audio) / 2 / service.sample_rate
            yield frame
    except Exception as e:
        logger.exception(f"TTS: synthesis of {text[:40]!r} failed ({type(e).__name__}); apologising")
        yield SpeakPhraseFrame(kind="apology")
        return
    finally:
        await service.stop_ttfb_metrics()
    await service.add_word_timestamps(word_times(text, offset_s, duration_s), context_id)


def word_times(text: str, start_s: float, duration_s: float) -> list[tuple[str, float]]:
    """Estimated start time of each word of `text` spoken over `duration_s` from `start_s`, by character count."""
    words = text.split()
    total = sum(len(w) + 1 for w in words)
    times: list[tuple[str, float]] = []
    position = 0
    for word in words:
        times.append((word, start_s + duration_s * position / max(1, total)))
        position += len(word) + 1
    return times
