"""The end-of-turn decision on recorded speech: the words model, Smart Turn and the rule that joins them, each with
the real local models on real recordings played through a phone line (8 kHz G.711)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace

import numpy as np
import pytest
from pipecat.frames.frames import InputAudioRawFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame

from agent.frames import TurnTranscriptionFrame
from agent.llm.simulator import ProviderSim
from agent.runtime import AgentRuntime
from agent.speech.energy import speech_spans
from agent.turns.decision import RULE, TurnEvidence, TurnRule, log_odds
from agent.turns.end_of_turn import SCORE_AFTER_S, WORDS_DEADLINE_S, EndOfTurnStrategy
from agent.turns.words import TurnWordsModel, normalize
from bench.audio import FIXTURES, RATE, load
from bench.calls import build_call as build_paused_call
from bench.turn_corpus import PHONE_RATE, phone_line
from pipelines.replay import replay_call
from tests.conftest import local_settings, sim_settings
from tests.turn_strategy import strategy_events

DEFAULT = replace(RULE, threshold=local_settings().end_of_turn_threshold)
# A finished reply is answered within the 800 ms budget: its wait, plus the VAD's ~0.1 s let-go and the answer's
# ~0.05 s to the line (speculation has it ready), stays under it.
QUICK_S = 0.8 - 0.15
PAUSES = dict(line.split("\t") for line in (FIXTURES / "pauses.tsv").read_text().splitlines() if line.strip())


def heard_until(name: str, seconds: float | None = None, silence_s: float = 0.1) -> np.ndarray:
    """A recording up to `seconds` (its end of speech when None), then a little silence, as the phone line hears it."""
    audio = load(name)
    end = seconds if seconds is not None else speech_spans(audio.tobytes(), RATE)[-1][1] + 0.02
    audio = np.concatenate([audio[: int(end * RATE)], np.zeros(int(silence_s * RATE), np.int16)])
    return phone_line(audio)


def waited_s(seen: TurnEvidence) -> float:
    """The wait the default settings choose for this evidence."""
    settings = local_settings()
    return DEFAULT.wait_s(seen, settings.end_of_turn_min_ms / 1000, settings.end_of_turn_max_ms / 1000)


def evidence(speech, audio: np.ndarray, agent_said: str = "") -> tuple[str, TurnEvidence]:
    pcm = audio.tobytes()
    text = speech.transcriber.transcribe(pcm, PHONE_RATE)
    return text, TurnEvidence(
        words=speech.turn_words.probability(text, agent_said),
        voice=speech.smart_turn.probability(pcm, PHONE_RATE) if speech.smart_turn is not None else None,
        word_count=len(normalize(text).split()),
    )


def test_the_words_are_read_as_speech_not_as_punctuation():
    assert normalize("Ten of clubs.") == "ten of clubs"
    assert normalize("I'd like a two-bed room, please!") == "i'd like a two-bed room please"


def test_the_words_model_hears_an_unfinished_phrase(speech):
    words = speech.turn_words
    unfinished = words.probability("And Mister John Dashwood had then leisure to consider")
    finished = words.probability("What time does the pharmacy on Main Street close on Sundays?")
    assert unfinished < 0.01 < 0.2 < finished, (unfinished, finished)
    # Whisper's punctuation is not what decides: the same words with and without it score the same.
    assert words.probability("I need to.") == pytest.approx(words.probability("i need to"), rel=0.2)


def test_the_agents_last_words_are_the_context(speech):
    words = speech.turn_words
    asked = words.probability("five five", "What is your room number?")
    unasked = words.probability("five five", "")
    assert asked > unasked, (asked, unasked)


def test_the_cache_never_changes_a_score(speech):
    words = speech.turn_words
    first = words.probability("The card ends in five.", "What are the last four digits of the card?")
    words.prime("Which card did you draw?")
    words.probability("ten of", "Which card did you draw?")
    words.prime("What are the last four digits of the card?")
    assert words.probability("the card ends in five", "What are the last four digits of the card?") == pytest.approx(
        first, rel=1e-3
    )


class ScoresSeen:
    """The real words model, with the transcripts it was asked to score."""

    def __init__(self, model: TurnWordsModel) -> None:
        self.model = model
        self.scored: list[str] = []

    def probability(self, text: str, agent_said: str = "") -> float:
        self.scored.append(text)
        return self.model.probability(text, agent_said)

    def prime(self, agent_said: str) -> None:
        self.model.prime(agent_said)


async def test_the_words_are_scored_only_once_the_caller_has_been_silent_a_while(speech):
    """A VAD stop that the caller ends within `SCORE_AFTER_S` (a gap between words) costs no score."""
    assert 0.04 < SCORE_AFTER_S < 0.3
    words = ScoresSeen(speech.turn_words)
    strategy = EndOfTurnStrategy(shortest_s=5.0, longest_s=5.0, budget_s=0.8, words=words, speculate=False)
    silence = InputAudioRawFrame(audio=b"\0\0" * 160, sample_rate=8000, num_channels=1)

    async def stop_then_silence(text: str, segment: int, silence_s: float) -> None:
        await strategy.process_frame(VADUserStoppedSpeakingFrame())
        await strategy.process_frame(
            TurnTranscriptionFrame(text=text, user_id="", timestamp="", turn_text=text, segment=segment)
        )
        for _ in range(round(silence_s / 0.02)):
            await strategy.process_frame(silence)
            await asyncio.sleep(0.02)

    async with strategy_events(strategy):
        await strategy.process_frame(VADUserStartedSpeakingFrame())
        await stop_then_silence("I need to", 1, 0.04)  # a gap between words
        await strategy.process_frame(VADUserStartedSpeakingFrame())
        await stop_then_silence("I need to book a table", 2, 0.3)
    assert words.scored == ["I need to book a table"]


class StalledScores:
    """The real words model on a starved machine: each score waits until `release` is set."""

    def __init__(self, model: TurnWordsModel) -> None:
        self.model = model
        self.release = threading.Event()
        self.asked = 0

    def probability(self, text: str, agent_said: str = "") -> float:
        self.asked += 1
        self.release.wait(10)
        return self.model.probability(text, agent_said)

    def prime(self, agent_said: str) -> None:
        self.model.prime(agent_said)


async def test_a_late_words_score_does_not_hold_the_turn(speech):
    """The turn is decided without the words once they are `WORDS_DEADLINE_S` late, not at pipecat's 5 s timeout."""
    words = StalledScores(speech.turn_words)
    strategy = EndOfTurnStrategy(shortest_s=0.2, longest_s=1.0, budget_s=0.8, words=words, speculate=False)
    try:
        async with strategy_events(strategy) as events:
            await events.caller_says("I need a table for two")
    finally:
        words.release.set()
    assert words.asked == 1
    assert events.events and events.events[-1][0] == "end", events.events
    assert WORDS_DEADLINE_S <= 0.5


def test_a_pause_after_to_consider_is_waited_out(speech):
    # "and Mister John Dashwood had then leisure to consider | how much...": the real recording, cut in its pause.
    text, seen = evidence(speech, heard_until("dashwood.wav", float(PAUSES["dashwood.wav"])))
    assert "consider" in text.lower(), text
    assert waited_s(seen) > 0.8, (text, seen, DEFAULT.done(seen))  # longer than most callers' pauses


@pytest.mark.parametrize(
    ("name", "agent_said"),
    [("five_five.wav", "What is your room number?"), ("ten_of_clubs.wav", "Which card did you draw?"),
     ("ill_disposed.wav", "Tell me about him.")],
)  # fmt: skip
def test_a_finished_reply_then_silence_is_answered_within_the_budget(speech, name, agent_said):
    text, seen = evidence(speech, heard_until(name), agent_said)
    assert waited_s(seen) <= QUICK_S, (text, seen, DEFAULT.done(seen), waited_s(seen))


def test_the_rule_grows_more_patient_as_the_evidence_says_unfinished():
    rule = TurnRule(bias=0.0, words=1.0, voice=1.0, threshold=0.5, band=4.0)
    assert rule.patience(TurnEvidence(words=0.9, voice=0.9)) == 0.0
    assert 0.0 < rule.patience(TurnEvidence(words=0.3, voice=0.5)) < 0.5 < rule.patience(TurnEvidence(words=0.05))
    assert rule.patience(TurnEvidence(words=0.001, voice=0.1)) == 1.0
    assert rule.wait_s(TurnEvidence(words=0.001, voice=0.1), 0.2, 1.1) == pytest.approx(1.1)
    assert rule.patience(TurnEvidence()) == 0.0  # no evidence at all: undecided, at this rule's threshold
    assert log_odds(None) == 0.0 and log_odds(1.0) == log_odds(0.99999999)
    assert not replace(rule, voice=0.0).uses_voice  # Smart Turn is not run for a weight of nothing


def test_smart_turn_is_loaded_only_when_the_rule_listens_to_the_voice(speech):
    assert (speech.smart_turn is not None) == RULE.uses_voice, RULE


@pytest.mark.slow
async def test_through_the_whole_pipeline_a_pause_is_waited_for_and_a_question_answered_at_once(speech, tmp_path):
    """A recorded call at Cerebras speed: "and Mister John Dashwood had then leisure to consider | how much ..." with
    a 0.5 s pause after "consider", then "What time is it in Tokyo right now?". The pause gets no answer; the whole
    sentence is one turn; the question is answered within the budget."""
    sim = ProviderSim()
    sim.start()
    try:
        call = build_paused_call(tmp_path / "call.wav", ["pause:dashwood.wav", "synth_tokyo.wav"], gap_s=3.0)
        async with AgentRuntime.start(sim_settings(sim), speech=speech) as runtime:
            turns = (await replay_call(runtime, call.path)).turns
    finally:
        sim.stop()
    assert [t["false_start"] for t in turns] == [False, False], turns
    sentence, question = turns
    assert "consider" in sentence["user_text"] and "them" in sentence["user_text"], sentence
    assert sentence["outcome"] == question["outcome"] == "answered", turns
    assert question["answer_ms"] < 800, question
