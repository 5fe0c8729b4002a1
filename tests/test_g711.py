"""The caller side's G.711 (`agent/telephony/g711.py`) against what it replaced, `audioop` (gone in Python 3.13):
every 16-bit sample and every code, and a real recorded call, bit for bit; and, on any Python, real speech
through the codec comes back as the same speech."""

from __future__ import annotations

import numpy as np
import pytest

from agent.phone_client import to_phone_rate
from agent.telephony import g711
from bench.audio import load

ENCODINGS = ["PCMU", "PCMA"]


def phone_speech() -> bytes:
    return to_phone_rate(np.concatenate([load("ill_disposed.wav"), load("ten_of_clubs.wav")]).tobytes(), 16000)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_codec_is_audioops_bit_for_bit(encoding):
    audioop = pytest.importorskip("audioop")  # in the standard library up to Python 3.12
    to_code = audioop.lin2ulaw if encoding == "PCMU" else audioop.lin2alaw
    to_linear = audioop.ulaw2lin if encoding == "PCMU" else audioop.alaw2lin
    every_sample = np.arange(-32768, 32768, dtype=np.int16).tobytes()
    every_code = bytes(range(256))
    speech = phone_speech()
    assert g711.encode(every_sample, encoding) == to_code(every_sample, 2)
    assert g711.decode(every_code, encoding) == to_linear(every_code, 2)
    assert g711.encode(speech, encoding) == to_code(speech, 2)
    assert g711.decode(g711.encode(speech, encoding), encoding) == to_linear(to_code(speech, 2), 2)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_real_speech_survives_the_codec(encoding):
    speech = np.frombuffer(phone_speech(), np.int16).astype(np.float64)
    coded = g711.encode(phone_speech(), encoding)
    assert len(coded) == len(speech)  # one byte a sample
    back = np.frombuffer(g711.decode(coded, encoding), np.int16).astype(np.float64)
    snr_db = 10 * np.log10(np.sum(speech**2) / np.sum((speech - back) ** 2))
    assert snr_db > 30  # a wrong segment, shift or sign would be far below
