"""Call audio for the tests and the benchmarks: builds caller recordings from the real speech fixtures and
measures what the agent played."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
from num2words import num2words

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"  # the recorded speech, shared with the tests
RATE = 16000


def transcripts() -> dict[str, str]:
    lines = (FIXTURES / "transcripts.tsv").read_text().splitlines()
    return dict(line.split("\t") for line in lines if line.strip())


def load(name: str) -> np.ndarray:
    with wave.open(str(FIXTURES / name), "rb") as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), np.int16)


def build_call(path: Path, parts: list[str | float], rate: int = RATE) -> Path:
    """Write a call: fixture names are speech, floats are seconds of silence; resampled to `rate`."""
    pieces = [np.zeros(int(p * RATE), np.int16) if isinstance(p, float) else load(p) for p in parts]
    audio = np.concatenate(pieces)
    if rate != RATE:
        import soxr

        audio = soxr.resample(audio.astype(np.float32), RATE, rate).astype(np.int16)
    write(path, audio, rate)
    return path


def write(path: Path, audio: np.ndarray, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(audio.astype(np.int16).tobytes())


def normalize(text: str) -> list[str]:
    """Lower-case words, digits spelled out, punctuation and hyphens gone."""
    text = re.sub(r"\d+", lambda m: " " + num2words(int(m.group())) + " ", text.lower())
    return re.sub(r"[^a-z' ]+", " ", text).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize(reference), normalize(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(1, len(ref))


def voiced_spans(pcm: bytes, rate: int, threshold: int = 500, min_gap_s: float = 0.3) -> list[tuple[float, float]]:
    """(start, end) seconds of the stretches of `pcm` louder than `threshold`, merging gaps under `min_gap_s`."""
    audio = np.abs(np.frombuffer(pcm, np.int16).astype(np.int32))
    win = int(rate * 0.01)
    n = len(audio) // win
    loud = audio[: n * win].reshape(n, win).max(axis=1) > threshold
    spans: list[tuple[float, float]] = []
    for i in np.flatnonzero(loud):
        t = i * 0.01
        if spans and t - spans[-1][1] <= min_gap_s:
            spans[-1] = (spans[-1][0], t + 0.01)
        else:
            spans.append((t, t + 0.01))
    return spans
