"""The VAD on real recorded speech: Silero rests while the line is quiet, and hears the caller as well as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr
from pipecat.audio.vad.vad_analyzer import VADState

from agent.settings import Settings
from agent.turns import vad as vad_module
from agent.turns.vad import FastStopSileroVAD, build_vad
from pipelines.replay import read_call_wav

FIXTURES = Path(__file__).parent / "fixtures"
RATE = 8000  # the phone path's rate
FRAME = RATE // 50  # 20 ms, as a carrier sends it


class CountedModel:
    """Silero as it is, counting the windows it is run on."""

    def __init__(self, model) -> None:
        self.model, self.calls = model, 0

    def __call__(self, *args):
        self.calls += 1
        return self.model(*args)

    def __getattr__(self, name: str):
        return getattr(self.model, name)


def line(seconds: float, rms: float, seed: int) -> np.ndarray:
    """A phone line's hiss, as int16."""
    return (np.random.default_rng(seed).normal(0, rms, int(seconds * RATE))).astype(np.int16)


def utterance(name: str) -> np.ndarray:
    pcm, rate = read_call_wav(FIXTURES / name)
    return soxr.resample(np.frombuffer(pcm, np.int16), rate, RATE).astype(np.int16)


def run(vad: FastStopSileroVAD, audio: np.ndarray) -> tuple[list[VADState], CountedModel]:
    vad.set_sample_rate(RATE)
    counted = CountedModel(vad._model)
    vad._model = counted
    states = []
    for start in range(0, len(audio) - FRAME + 1, FRAME):
        states.append(vad._run_analyzer(audio[start : start + FRAME].tobytes()))
    return states, counted


def speaking_spans(states: list[VADState]) -> list[tuple[float, float]]:
    spans, start = [], None
    for i, state in enumerate(states):
        if state == VADState.SPEAKING and start is None:
            start = i * 0.02
        elif state == VADState.QUIET and start is not None:
            spans.append((start, i * 0.02))
            start = None
    return spans + ([(start, len(states) * 0.02)] if start is not None else [])


@pytest.mark.parametrize("hiss_rms", [0.0, 30.0])
def test_silero_rests_in_a_quiet_line_and_hears_the_caller_as_before(monkeypatch, hiss_rms):
    call = np.concatenate(
        [
            line(4.0, hiss_rms, 1),
            utterance("dashwood.wav"),
            line(3.0, hiss_rms, 2),
            utterance("ten_of_clubs.wav"),
            line(4.0, hiss_rms, 3),
        ]
    )
    settings = Settings.load(None)
    rested, rested_model = run(build_vad(settings, RATE), call)
    monkeypatch.setattr(vad_module, "SILERO_RESTS_AFTER", 10**9)
    always, always_model = run(build_vad(settings, RATE), call)

    windows = len(call) // build_vad(settings, RATE).num_frames_required()
    assert always_model.calls >= windows - 1
    # ~8.5 s of the ~19.5 s call is speech: in the quiet Silero ran only for its first few windows.
    assert rested_model.calls < 0.6 * always_model.calls
    heard, before = speaking_spans(rested), speaking_spans(always)
    assert len(heard) == len(before) >= 2
    for (start, end), (start_before, end_before) in zip(heard, before, strict=True):
        assert abs(start - start_before) <= 0.05 and abs(end - end_before) <= 0.05


def test_calls_share_silero_but_not_its_state():
    # Two calls' VADs on one session, their windows interleaved: each hears its own caller exactly as alone.
    settings = Settings.load(None)
    calls = [
        np.concatenate([line(0.5, 30.0, 4), utterance("dashwood.wav"), line(1.0, 30.0, 5)]),
        np.concatenate([line(1.5, 30.0, 6), utterance("ten_of_clubs.wav"), line(2.0, 30.0, 7)]),
    ]
    alone = [run(build_vad(settings, RATE), call)[0] for call in calls]
    together = [build_vad(settings, RATE), build_vad(settings, RATE)]
    assert together[0]._model.session is together[1]._model.session
    states: list[list[VADState]] = [[], []]
    for vad in together:
        vad.set_sample_rate(RATE)
    for start in range(0, max(map(len, calls)) - FRAME + 1, FRAME):
        for vad, call, heard in zip(together, calls, states, strict=True):
            if start + FRAME <= len(call):
                heard.append(vad._run_analyzer(call[start : start + FRAME].tobytes()))
    assert states == alone
    assert all(speaking_spans(heard) for heard in states)
