"""Voice activity detection that lets go of speech as soon as the audio goes quiet.

Silero's confidence decays slowly after the last word (its recurrent state carries the speech on for ~100-300 ms),
and that hangover sits between the caller and the answer. `FastStopSileroVAD` keeps Silero's judgement of what is
speech, but a frame whose own energy has fallen near the noise floor, far below the caller's recent speech level,
counts as silence at once, so the VAD's stop window starts at the true end of speech. Pauses inside a turn then end
more VAD segments; the end-of-turn strategy decides which of them end the turn. The same energy rule spares the
CPU while nobody speaks: audio too quiet to be speech is not given to Silero once the quiet has lasted a moment.

The VAD calls speech started only after `start_secs` of it, so the caller's next words are heard some 100 ms before
that. `voiced_buffers` counts every buffer judged voice (and `voiced_at` says when the last was): the end-of-turn
strategy restarts its silence when it moves, instead of ending the turn in the window where the next words are
already coming, and the answer's first audio waits while it is recent (`onset_hold.py`).

Silero's ONNX session is loaded once per process and shared by every call's VAD (`SharedSileroModel`): a session
holds only the weights (each call keeps its own recurrent state), and loading one cost ~50 ms of CPU at every call's
start.
"""

from __future__ import annotations

import functools
import math
import time
from collections import deque
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState

from agent.pcm import rms
from agent.protocols.quiet_line import NEVER_SPEECH_RMS

if TYPE_CHECKING:
    from agent.settings import Settings

QUIET_FRACTION = 0.1  # a frame below this fraction of the recent speech level is silence ...
NOISE_MARGIN = 2.5  # ... as is one within this factor of the noise floor
SPEECH_DECAY = 0.995  # per frame: the speech level forgets a loud moment over ~5 s
NOISE_RISE = 1.01  # per frame: the noise floor creeps up, so a change of line noise is learnt
SILERO_RESTS_AFTER = 10  # windows (32 ms) too quiet to be speech in a row, after which Silero is not run
SILERO_WARM_WINDOWS = 8  # quiet windows Silero hears again when the audio rises after its rest


@functools.cache
def silero_session() -> onnxruntime.InferenceSession:
    """The Silero model pipecat ships, loaded by pipecat's own wrapper (one thread, on the CPU), once per process."""
    path = resources.files("pipecat.audio.vad.data").joinpath("silero_vad.onnx")
    return SileroOnnxModel(str(path), force_onnx_cpu=True).session


class SharedSileroModel(SileroOnnxModel):
    """pipecat's Silero wrapper (one stream's recurrent state and context) on the process's shared session."""

    def __init__(self) -> None:  # not super().__init__: it would load a session of its own
        self.session = silero_session()
        self.sample_rates = [8000, 16000]
        self.reset_states()


class FastStopSileroVAD(SileroVADAnalyzer):
    """Silero VAD whose speech ends when the audio's own energy drops, not when Silero's confidence decays."""

    def __init__(self, *, sample_rate: int | None = None, params: VADParams | None = None) -> None:
        # SileroVADAnalyzer.__init__ would load a session of its own; this is the rest of what it sets.
        VADAnalyzer.__init__(self, sample_rate=sample_rate, params=params)
        self._model = SharedSileroModel()
        self._windows_since_reset = 0
        self._low_confidence_windows = 0
        self._speech_level = 0.0
        self._noise_floor = NEVER_SPEECH_RMS / NOISE_MARGIN
        self.voiced_buffers = 0  # buffers judged voice so far
        self.voiced_at = -math.inf  # time.monotonic() of the last one
        self._quiet_windows = 0  # windows too quiet to be speech in a row
        self._quiet_tail: deque[bytes] = deque(maxlen=SILERO_WARM_WINDOWS)

    async def analyze_audio(self, buffer: bytes) -> VADState:
        """On the event loop, not pipecat's executor thread: Silero takes ~0.1 ms per 32 ms of audio, while handing
        every 20 ms frame to a thread and back cost several times that, for every call, all call long."""
        return self._run_analyzer(buffer)

    def voice_confidence(self, buffer: bytes) -> float:
        level = rms(buffer)
        self._noise_floor = min(self._noise_floor * NOISE_RISE, max(level, 1.0))
        floor = max(NEVER_SPEECH_RMS, self._noise_floor * NOISE_MARGIN)
        if level < max(floor, self._speech_level * SPEECH_DECAY * QUIET_FRACTION):
            # Too quiet to be speech whatever Silero says. In a dip between words Silero still hears it, so its
            # state runs on; after a longer quiet it is not run at all until the audio rises again, and then starts
            # afresh on the last quiet moments (pipecat resets it in quiet every few seconds anyway).
            self._speech_level *= SPEECH_DECAY
            self._quiet_windows += 1
            self._quiet_tail.append(buffer)
            if self._quiet_windows <= SILERO_RESTS_AFTER:
                super().voice_confidence(buffer)
            return 0.0
        if self._quiet_windows > SILERO_RESTS_AFTER:
            self._model.reset_states()
            for quiet in self._quiet_tail:  # the moments before the rise: Silero judges its onset as if it never rested
                super().voice_confidence(quiet)
        self._quiet_windows = 0
        confidence = float(np.asarray(super().voice_confidence(buffer)).reshape(-1)[0])
        if confidence >= self.params.confidence:
            self._speech_level = max(level, self._speech_level * SPEECH_DECAY)
        else:
            self._speech_level *= SPEECH_DECAY
        if level < max(floor, self._speech_level * QUIET_FRACTION):
            return 0.0
        if confidence >= self.params.confidence:
            self.voiced_buffers += 1
            self.voiced_at = time.monotonic()
        return confidence


def build_vad(settings: Settings, sample_rate: int) -> FastStopSileroVAD:
    """The VAD every call's pipeline (and the turn-taking benchmark) runs, with the settings' start and stop."""
    return FastStopSileroVAD(
        sample_rate=sample_rate,
        params=VADParams(
            confidence=0.6,
            start_secs=settings.vad_start_ms / 1000,
            stop_secs=settings.vad_stop_ms / 1000,
            min_volume=0.3,
        ),
    )
