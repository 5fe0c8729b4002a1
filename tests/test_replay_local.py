"""Whole-pipeline replays of real recorded speech on the local models (Whisper, Hibari, SmolLM2 via llama.cpp)."""

from __future__ import annotations

import pytest

from agent.speech.energy import speech_spans
from bench.audio import build_call, transcripts, voiced_spans, word_error_rate
from pipelines.replay import read_call_wav, replay_call

pytestmark = [pytest.mark.slow, pytest.mark.timing]  # the local LLM shares 2 cores with nothing else

# Each question is one stretch of speech: "five five" (0.1 s between the words) could be answered after the first
# "five" (alone, a complete reply) and split into two turns; "seven of clubs" has no gap inside it.
QUESTIONS = ["ill_disposed.wav", "ten_of_clubs.wav", "seven_of_clubs.wav"]


@pytest.fixture(scope="module")
async def three_turn_call(local_runtime, tmp_path_factory):
    path = build_call(
        tmp_path_factory.mktemp("calls") / "three.wav",
        [0.5, QUESTIONS[0], 6.0, QUESTIONS[1], 6.0, QUESTIONS[2], 0.5],
    )
    return path, await replay_call(local_runtime, path)


async def test_every_turn_is_transcribed_and_answered(three_turn_call):
    path, result = three_turn_call
    expected = transcripts()
    assert [t["turn"] for t in result.turns] == [1, 2, 3], result.turns
    for turn, name in zip(result.turns, QUESTIONS, strict=True):
        wer = word_error_rate(expected[name], turn["user_text"])
        assert wer <= 0.35, (name, turn["user_text"], wer)
        assert turn["bot_text"].strip(), turn
        assert turn["outcome"] == "answered" and turn["answer_ms"] > 0
        # The recording does not wait for the agent to finish (a one-sentence answer from the small local model can
        # run ~5 s), so the next question may cut it; but no answer may start into the question it answers.
        assert not turn["false_start"], result.turns


async def test_replies_are_audible_after_each_question(three_turn_call):
    path, result = three_turn_call
    spans = voiced_spans(result.reply_audio, result.reply_sample_rate)
    assert len(spans) >= 3, spans
    # Nothing is played while the caller asks the first question, and each answer is heard after its question.
    assert spans[0][0] > 0.5 + 2.9
    call_pcm, rate = read_call_wav(path)
    question_ends = [end for _, end in speech_spans(call_pcm, rate)]
    assert len(question_ends) == 3
    for end, turn in zip(question_ends, result.turns, strict=True):
        heard = next(start for start, _ in spans if start > end)
        # The report's first sound (the answer, or an acknowledgement before it) is what the recording shows (two
        # energy thresholds apart: ~a frame or two).
        first_ms = min(ms for ms in (turn["answer_ms"], turn["filler_ms"]) if ms is not None)
        assert (heard - end) * 1000 == pytest.approx(first_ms, abs=150), (heard, end, turn)


async def test_report_has_stages_verdict_and_summary(three_turn_call):
    path, result = three_turn_call
    for turn in result.turns:
        assert {"vad_stop", "stt", "llm_ttft", "tts", "output"} <= set(turn["stages_ms"]), turn["stages_ms"]
        assert turn["verdict"]["budget_ms"] == 800
        assert turn["llm"]["provider"] == "local"
    assert result.summary["count"] == 3 and result.summary["outcomes"]["answered"] == 3
    answers = sorted(t["answer_ms"] for t in result.turns)
    assert result.summary["p50_ms"] == pytest.approx(answers[1])
    assert result.summary["max_ms"] == pytest.approx(answers[2])


async def test_phone_rate_recording(local_runtime, tmp_path):
    # Three cards named at 8 kHz, each a finished sentence ("Eight of spades.") followed by a ~0.4 s pause: a pause
    # that long after a finished sentence ends the turn (the answer is due within ~450 ms of it), so the agent may
    # start answering, but it yields to the caller's next card at once (never answers over them), the last card is
    # answered, and every word reaches the LLM.
    path = build_call(tmp_path / "phone.wav", [0.4, "eight_of_spades.wav", 0.4], rate=8000)
    result = await replay_call(local_runtime, path)
    *earlier, last = result.turns
    assert all(t["outcome"] != "answered" or t["cut"] for t in earlier), result.turns
    assert last["outcome"] == "answered" and last["bot_text"], result.turns
    asked = " ".join(m["content"] for m in result.messages if m["role"] == "user")
    assert word_error_rate(transcripts()["eight_of_spades.wav"], asked) <= 0.35, asked
