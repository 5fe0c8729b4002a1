"""The caller's frames batched while their line is quiet (`QuietLineBatcher`), on real recorded speech as a phone
stream sends it: 20 ms frames of 8 kHz audio."""

from __future__ import annotations

import numpy as np
import pytest
from pipecat.frames.frames import InputAudioRawFrame

from agent.pcm import rms
from agent.protocols.quiet_line import NEVER_SPEECH_RMS, QuietLineBatcher
from bench.audio import build_call
from pipelines.replay import read_call_wav

RATE = 8000
FRAME_BYTES = RATE // 50 * 2  # 20 ms


def frames_of(pcm: bytes) -> list[InputAudioRawFrame]:
    return [
        InputAudioRawFrame(audio=pcm[i : i + FRAME_BYTES], sample_rate=RATE, num_channels=1)
        for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)
    ]


def quiet(seconds: float) -> bytes:
    return bytes(int(seconds * RATE) * 2)


def loud(seconds: float) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * 300 * t) * 3000).astype(np.int16).tobytes()


def released_per_frame(batcher: QuietLineBatcher, frames: list[InputAudioRawFrame]) -> list[InputAudioRawFrame | None]:
    return [batcher.add(frame) for frame in frames]


def test_frames_pass_one_by_one_until_the_line_has_been_quiet_that_long():
    batcher = QuietLineBatcher(after_s=1.0, batch_s=0.1)
    out = released_per_frame(batcher, frames_of(loud(0.2) + quiet(0.98)))
    assert all(frame is not None and frame.num_frames == RATE // 50 for frame in out)


def test_a_quiet_line_goes_down_in_batches_in_order():
    batcher = QuietLineBatcher(after_s=1.0, batch_s=0.1)
    pcm = loud(0.2) + quiet(3.0)  # 1.0 s one by one, then 2.0 s in 20 batches
    out = released_per_frame(batcher, frames_of(pcm))
    released = [frame for frame in out if frame is not None]
    assert b"".join(frame.audio for frame in released) == pcm  # nothing lost, nothing reordered
    assert len(released) == 10 + 50 + 20, [f.num_frames for f in released]
    assert all(frame.num_frames == RATE // 10 for frame in released[-20:])  # 0.1 s each once the line is quiet


def test_speech_after_a_quiet_line_is_released_at_once_with_what_was_held():
    batcher = QuietLineBatcher(after_s=1.0, batch_s=0.1)
    for frame in frames_of(quiet(2.0) + quiet(0.04)):  # two quiet frames held at the end
        batcher.add(frame)
    first_word = frames_of(loud(0.02))[0]
    released = batcher.add(first_word)
    assert released is not None
    assert released.audio == quiet(0.04) + first_word.audio
    after = released_per_frame(batcher, frames_of(quiet(0.5)))
    assert all(frame is not None for frame in after)  # quiet counted again from the words: one by one


def test_a_hissing_line_is_never_held():
    rng = np.random.default_rng(1)
    hiss = (rng.standard_normal(3 * RATE) * NEVER_SPEECH_RMS * 1.5).astype(np.int16).tobytes()
    batcher = QuietLineBatcher(after_s=1.0, batch_s=0.1)
    assert all(frame is not None for frame in released_per_frame(batcher, frames_of(hiss)))


def test_recorded_speech_is_never_held(tmp_path):
    """A recorded call (silence, a sentence, a long silence, another): every frame with speech in it goes down
    the moment it arrives, and the audio that goes down is the call's, whole and in order."""
    call = build_call(tmp_path / "call.wav", [3.0, "ten_of_clubs.wav", 4.0, "dashwood.wav", 3.0], rate=RATE)
    pcm8, rate = read_call_wav(call)
    assert rate == RATE
    batcher = QuietLineBatcher(after_s=1.6, batch_s=0.1)
    frames = frames_of(pcm8)
    out = released_per_frame(batcher, frames)
    for frame, released in zip(frames, out, strict=True):
        level = float(np.sqrt(np.mean(np.frombuffer(frame.audio, np.int16).astype(np.float32) ** 2)))
        if level >= NEVER_SPEECH_RMS:
            assert released is not None and released.audio.endswith(frame.audio)
    sent = b"".join(frame.audio for frame in out if frame is not None)
    whole = b"".join(f.audio for f in frames)
    assert whole.startswith(sent) and len(whole) - len(sent) < 0.1 * RATE * 2  # in order; at most a batch still held
    assert sum(frame is not None for frame in out) <= len(frames) - 150  # ~5 s of the 8.6 s quiet held


def test_a_frame_s_level_is_its_root_mean_square(tmp_path):
    """`rms` (one dot product) reads every frame of a recorded call as numpy's mean of squares does, full scale too."""
    call = build_call(tmp_path / "call.wav", [0.5, "ten_of_clubs.wav", 0.5], rate=RATE)
    pcm8, _ = read_call_wav(call)
    frames = [frame.audio for frame in frames_of(pcm8)] + [np.full(160, -32768, np.int16).tobytes(), b""]
    for audio in frames:
        samples = np.frombuffer(audio, np.int16).astype(np.float64)
        expected = float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0
        assert rms(audio) == pytest.approx(expected, rel=1e-5, abs=1e-3)
