"""Where speech is in a recording, by frame energy against the recording's own peak.

The latency tracker uses it to find the caller's true end of speech (the VAD calls it later, after its smoothing),
and the phone client and the benchmark use it to time turns from outside the pipeline, the same way.
"""

from __future__ import annotations

import numpy as np

FRAME_S = 0.02


def speech_spans(
    pcm: bytes, rate: int, min_gap_s: float = 0.6, min_speech_s: float = 0.15
) -> list[tuple[float, float]]:
    """(start, end) seconds of each stretch of speech; gaps shorter than `min_gap_s` are bridged."""
    samples = np.abs(np.frombuffer(pcm, np.int16).astype(np.int32))
    win = int(rate * FRAME_S)
    n = len(samples) // win
    if n == 0:
        return []
    energy = samples[: n * win].reshape(n, win).mean(axis=1)
    threshold = max(150.0, 0.08 * float(energy.max()))
    spans: list[tuple[float, float]] = []
    for i in np.flatnonzero(energy > threshold).tolist():
        t = i * FRAME_S
        if spans and t - spans[-1][1] <= min_gap_s:
            spans[-1] = (spans[-1][0], t + FRAME_S)
        else:
            spans.append((t, t + FRAME_S))
    return [s for s in spans if s[1] - s[0] >= min_speech_s]


def trailing_silence_s(pcm: bytes, rate: int) -> float:
    """Seconds after the last speech in `pcm` (0 when it ends in speech or holds none)."""
    spans = speech_spans(pcm, rate, min_speech_s=0.0)
    if not spans:
        return 0.0
    return float(max(0.0, len(pcm) / 2 / rate - spans[-1][1]))
