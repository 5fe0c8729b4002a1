"""The TTS doubles' voice: the local voice, resampled to the rate the client asked for, in timed chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import soxr

from agent.speech.tts import word_times
from agent.speech.voices import Voice

CHUNK_S = 0.1


@dataclass
class Spoken:
    """One chunk of a synthesis: its audio and the words that start in it, with their start and end (seconds
    from `offset_s` of `speak`)."""

    pcm: bytes
    words: list[tuple[str, float, float]]


async def speak(voice: Voice, text: str, rate: int, offset_s: float = 0.0) -> AsyncIterator[Spoken]:
    """`text` in the local voice at `rate`, `CHUNK_S` at a time, with word times estimated by character count."""
    pieces = await asyncio.to_thread(lambda: list(voice.synthesize(text)))
    pcm = np.frombuffer(b"".join(pieces), np.int16)
    if rate != voice.sample_rate:
        pcm = soxr.resample(pcm.astype(np.float32), voice.sample_rate, rate).astype(np.int16)
    duration = len(pcm) / rate
    starts = word_times(text, offset_s, duration)
    ends = [start for _, start in starts[1:]] + [offset_s + duration]
    timed = [(word, start, end) for (word, start), end in zip(starts, ends, strict=True)]
    step = int(CHUNK_S * rate)
    for begin in range(0, len(pcm), step):
        chunk_start, chunk_end = offset_s + begin / rate, offset_s + (begin + step) / rate
        words = [w for w in timed if chunk_start <= w[1] < chunk_end]
        yield Spoken(pcm[begin : begin + step].tobytes(), words)
