"""The answer's first audio waits while the caller may be starting to speak: frame-level, with pipecat's `run_test`
and the real VAD object whose voice timing the hold reads."""

from __future__ import annotations

import asyncio
import time

import pytest
from pipecat.frames.frames import (
    InterruptionFrame,
    LLMFullResponseStartFrame,
    TTSAudioRawFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.tests.utils import SleepFrame, run_test

from agent.frames import AnswerHeldFrame, PhraseAudioFrame
from agent.settings import Settings
from agent.turns.onset_hold import AnswerOnsetHold
from agent.turns.vad import build_vad


def audio() -> TTSAudioRawFrame:
    return TTSAudioRawFrame(audio=b"\0\0" * 160, sample_rate=8000, num_channels=1)


@pytest.fixture
def vad():
    return build_vad(Settings.load(None), 8000)


async def test_an_answer_goes_out_at_once_when_the_line_is_quiet(vad):
    down, _ = await run_test(
        AnswerOnsetHold(vad, max_hold_s=0.2),
        frames_to_send=[LLMFullResponseStartFrame(), audio(), audio()],
        expected_down_frames=[LLMFullResponseStartFrame, TTSAudioRawFrame, TTSAudioRawFrame],
    )


async def test_the_first_audio_waits_out_a_blip_then_plays_whole(vad):
    vad.voiced_at = time.monotonic()  # the VAD has just heard voice it has not confirmed: a cough, a breath
    down, _ = await run_test(
        AnswerOnsetHold(vad, max_hold_s=0.5),
        frames_to_send=[LLMFullResponseStartFrame(), audio(), audio(), SleepFrame(sleep=0.2)],
        expected_down_frames=[LLMFullResponseStartFrame, AnswerHeldFrame, TTSAudioRawFrame, TTSAudioRawFrame],
    )
    held = next(f for f in down if isinstance(f, AnswerHeldFrame))
    assert 0.0 < held.held_s < 0.2


async def test_the_held_answer_is_dropped_when_the_caller_goes_on(vad):
    vad.voiced_at = time.monotonic() + 60  # voice all along, until the VAD confirms it
    await run_test(
        AnswerOnsetHold(vad, max_hold_s=0.5),
        frames_to_send=[
            LLMFullResponseStartFrame(),
            audio(),
            SleepFrame(sleep=0.05),  # system frames overtake queued ones: let the audio be held first
            VADUserStartedSpeakingFrame(),
            InterruptionFrame(),
        ],
        expected_down_frames=[LLMFullResponseStartFrame, VADUserStartedSpeakingFrame, InterruptionFrame],
    )


async def test_noise_on_the_line_delays_an_answer_but_never_silences_it(vad):
    vad.voiced_at = time.monotonic() + 60
    down, _ = await run_test(
        AnswerOnsetHold(vad, max_hold_s=0.15),
        frames_to_send=[LLMFullResponseStartFrame(), audio(), SleepFrame(sleep=0.3)],
        expected_down_frames=[LLMFullResponseStartFrame, AnswerHeldFrame, TTSAudioRawFrame],
    )
    assert next(f for f in down if isinstance(f, AnswerHeldFrame)).held_s == pytest.approx(0.15, abs=0.05)


async def test_a_phrase_is_never_held(vad):
    vad.voiced_at = time.monotonic() + 60
    phrase = PhraseAudioFrame(audio=b"\0\0" * 160, sample_rate=8000, num_channels=1)  # an apology, a goodbye
    await run_test(
        AnswerOnsetHold(vad, max_hold_s=0.5),
        frames_to_send=[LLMFullResponseStartFrame(), phrase],
        expected_down_frames=[LLMFullResponseStartFrame, PhraseAudioFrame],
    )


async def test_once_the_answer_plays_later_audio_is_not_held(vad):
    async def caller_makes_a_noise() -> None:
        await asyncio.sleep(0.05)
        vad.voiced_at = time.monotonic() + 60

    noise = asyncio.create_task(caller_makes_a_noise())
    await run_test(
        AnswerOnsetHold(vad, max_hold_s=0.5),
        frames_to_send=[LLMFullResponseStartFrame(), audio(), SleepFrame(sleep=0.1), audio()],
        expected_down_frames=[LLMFullResponseStartFrame, TTSAudioRawFrame, TTSAudioRawFrame],
    )
    await noise
