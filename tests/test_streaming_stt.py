"""The streaming transcription around Whisper, on real recorded speech through the whole local pipeline: a long
turn is transcribed in bounded pieces while it is spoken, and a sentence the VAD cuts at every short silence is
still transcribed as one sentence."""

from __future__ import annotations

import pytest

from agent.runtime import AgentRuntime
from bench.audio import build_call, transcripts, word_error_rate
from pipelines.replay import replay_call
from tests.conftest import local_settings

pytestmark = pytest.mark.slow

MONOLOGUE = ["dashwood.wav", "cold_hearted.wav", "respectable.wav"]  # 19 s: six 3 s pieces, twice the bound


@pytest.fixture
def whisper_calls(speech, monkeypatch):
    """Every request the shared Whisper gets: (seconds of audio, previous-text prompt)."""
    calls: list[tuple[float, str]] = []
    transcribe = speech.transcriber.transcribe

    def recorded(pcm: bytes, sample_rate: int, previous_text: str = "") -> str:
        calls.append((len(pcm) / 2 / sample_rate, previous_text))
        return transcribe(pcm, sample_rate, previous_text)

    monkeypatch.setattr(speech.transcriber, "transcribe", recorded)
    return calls


async def test_a_long_turn_is_transcribed_in_bounded_pieces(speech, whisper_calls, tmp_path):
    parts: list[str | float] = [0.4]
    for name in MONOLOGUE:
        parts += [name, 0.25]
    call = build_call(tmp_path / "monologue.wav", [*parts, 1.0])
    patient = {"end_of_turn_min_ms": 1200, "end_of_turn_max_ms": 1200}
    async with AgentRuntime.start(local_settings(**patient), speech=speech) as runtime:
        result = await replay_call(runtime, call)
    assert len(result.turns) == 1, result.turns
    reference = " ".join(transcripts()[name] for name in MONOLOGUE)
    assert word_error_rate(reference, result.turns[0]["user_text"]) <= 0.3, result.turns[0]["user_text"]
    piece_s = runtime.settings.stt_piece_ms / 1000
    longest = max(seconds for seconds, _ in whisper_calls)
    assert longest <= 3 * piece_s + 1.0, whisper_calls  # never the whole 19 s monologue at once
    assert sum(1 for _, previous in whisper_calls if previous) >= 3, whisper_calls  # pieces carried the text on


async def test_a_sentence_cut_by_short_silences_is_transcribed_whole(local_runtime, tmp_path):
    result = await replay_call(local_runtime, build_call(tmp_path / "one.wav", [0.4, "eight_of_spades.wav", 1.0]))
    assert len(result.turns) == 1, result.turns
    expected = transcripts()["eight_of_spades.wav"]
    assert word_error_rate(expected, result.turns[0]["user_text"]) <= 0.35, result.turns[0]["user_text"]
