"""G.711 mu-law and A-law, the carriers' 8 kHz codecs, for the caller side (`voice-agent call`, the tests' callers):
16-bit PCM to one byte a sample and back, bit for bit what the standard library's `audioop` gave (removed in
Python 3.13), as numpy lookup tables built once."""

from __future__ import annotations

from functools import cache

import numpy as np

ULAW_BIAS = 0x84
ULAW_CLIP = 8159  # the largest 14-bit magnitude mu-law encodes
SEGMENT_ENDS_ULAW = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
SEGMENT_ENDS_ALAW = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32)  # every int16 value, in the order of its uint16 bits
ALL_CODES = np.arange(256, dtype=np.int32)


def _ulaw_of(samples: np.ndarray) -> np.ndarray:
    value = samples >> 2  # 14-bit
    mask = np.where(value < 0, 0x7F, 0xFF)
    value = np.minimum(np.abs(value), ULAW_CLIP) + (ULAW_BIAS >> 2)
    segment = np.searchsorted(SEGMENT_ENDS_ULAW, value)  # the first segment whose end is >= value
    code = (np.minimum(segment, 7) << 4) | ((value >> (np.minimum(segment, 7) + 1)) & 0xF)
    return np.where(segment >= 8, 0x7F, code) ^ mask


def _alaw_of(samples: np.ndarray) -> np.ndarray:
    value = samples >> 3  # 13-bit
    mask = np.where(value >= 0, 0xD5, 0x55)
    value = np.where(value >= 0, value, -value - 1)
    segment = np.searchsorted(SEGMENT_ENDS_ALAW, value)
    shift = np.where(segment < 2, 1, np.minimum(segment, 7))
    code = (np.minimum(segment, 7) << 4) | ((value >> shift) & 0xF)
    return np.where(segment >= 8, 0x7F, code) ^ mask


def _linear_of_ulaw(codes: np.ndarray) -> np.ndarray:
    inverted = ~codes & 0xFF
    magnitude = (((inverted & 0xF) << 3) + ULAW_BIAS) << ((inverted & 0x70) >> 4)
    return np.where(inverted & 0x80, ULAW_BIAS - magnitude, magnitude - ULAW_BIAS)


def _linear_of_alaw(codes: np.ndarray) -> np.ndarray:
    flipped = codes ^ 0x55
    segment = (flipped & 0x70) >> 4
    magnitude = ((flipped & 0xF) << 4) + np.where(segment == 0, 8, 0x108)
    magnitude = np.where(segment > 1, magnitude << np.maximum(segment - 1, 0), magnitude)
    return np.where(flipped & 0x80, magnitude, -magnitude)


@cache
def _tables() -> dict[str, np.ndarray]:
    order = ALL_SAMPLES.astype(np.int16).view(np.uint16).argsort()  # index a table by a sample's uint16 bits
    return {
        "encode PCMU": _ulaw_of(ALL_SAMPLES)[order].astype(np.uint8),
        "encode PCMA": _alaw_of(ALL_SAMPLES)[order].astype(np.uint8),
        "decode PCMU": _linear_of_ulaw(ALL_CODES).astype(np.int16),
        "decode PCMA": _linear_of_alaw(ALL_CODES).astype(np.int16),
    }


def encode(pcm: bytes, encoding: str = "PCMU") -> bytes:
    """16-bit little-endian PCM -> G.711 (`encoding` PCMU: mu-law, PCMA: A-law)."""
    samples = np.frombuffer(pcm, "<i2").view(np.uint16)
    return _tables()[f"encode {encoding}"][samples].tobytes()


def decode(audio: bytes, encoding: str = "PCMU") -> bytes:
    """G.711 (`encoding` PCMU or PCMA) -> 16-bit little-endian PCM."""
    return _tables()[f"decode {encoding}"][np.frombuffer(audio, np.uint8)].astype("<i2").tobytes()
