"""16-bit PCM as every layer reads it: one frame's level.

The live pipeline reads the level of every 20 ms frame of every call in three places (the quiet line, the VAD, the
STT's pauses), so it is one dot product here, not `np.mean` in each.
"""

from __future__ import annotations

import math

import numpy as np


def rms(pcm: bytes) -> float:
    """The root mean square of 16-bit PCM (0 for none), at a quarter of `np.sqrt(np.mean(x * x))`'s cost."""
    samples = np.frombuffer(pcm, np.int16).astype(np.float32)
    return math.sqrt(float(samples.dot(samples)) / len(samples)) if len(samples) else 0.0
