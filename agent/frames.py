"""Frames the agent adds to pipecat's."""

from __future__ import annotations

from dataclasses import dataclass

from pipecat.frames.frames import SystemFrame


@dataclass
class SpeechEndFrame(SystemFrame):
    """Sent by the STT when the VAD calls the speech over: the caller's speech really ended `silence_s` ago.

    The VAD decides only after its smoothing lets go, so this (measured by energy on the segment's audio) is
    the true end of speech that the latency budget counts from.
    """

    silence_s: float = 0.0
