"""The local voices speak at once (no leading silence) and intelligibly: Whisper hears back what they said."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from agent.speech.energy import speech_spans
from agent.speech.voices import load_voice
from bench.audio import word_error_rate

TEXT = "The weather is lovely today, so let us go for a walk."


@pytest.mark.parametrize("engine", ["hibari", "piper"])
def test_voice_round_trip(engine, speech):
    voice = load_voice(engine)
    pieces = list(voice.synthesize(TEXT))
    pcm = b"".join(pieces)
    first = speech_spans(pieces[0], voice.sample_rate, min_speech_s=0.0)
    assert first and first[0][0] < 0.05, first  # sound starts within 50 ms: the silence was trimmed
    audio16k = soxr.resample(np.frombuffer(pcm, np.int16).astype(np.float32), voice.sample_rate, 16000)
    heard = speech.transcriber.transcribe(audio16k.astype(np.int16).tobytes(), 16000)
    assert word_error_rate(TEXT, heard) <= 0.2, heard
