"""Whisper tiny.en on its fitted window: a decode that repeats itself is redone on a longer one."""

from __future__ import annotations

import numpy as np

from bench.audio import load, transcripts, word_error_rate


def test_a_short_phrase_said_twice_by_whisper_alone_is_redone(speech):
    """On this alignment of "seven of clubs" (0.2 s of silence before it, its last 0.3 s cut: where a VAD stop can
    put it) the 10 s window decodes "7 of clubs 7 of clubs" (found on a replay, and only here of 72 alignments:
    Whisper is that sensitive, so the clip is built to the sample); the longer window hears it once."""
    seven = load("seven_of_clubs.wav")
    clip = np.concatenate([np.zeros(3200, np.int16), seven])[: 3200 + len(seven) - 4800]
    heard = speech.transcriber.transcribe(clip.tobytes(), 16000)
    assert heard.lower().count("clubs") == 1, heard
    assert word_error_rate(transcripts()["seven_of_clubs.wav"], heard) <= 0.35, heard
