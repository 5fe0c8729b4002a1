"""Each latency action, proven against the delay it answers: a provider made slow (or failing) on purpose by the
local servers that speak Cerebras' (primary) and Groq's (fallback) wire formats, and real recorded speech through
the whole local pipeline."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from agent.llm.simulator import ProviderSim
from agent.runtime import AgentRuntime
from agent.turn_taking import end_of_turn_wait
from pipelines.replay import replay_call
from tests.audio import build_call
from tests.conftest import local_settings


@pytest.fixture
def sims():
    primary, backup = ProviderSim(), ProviderSim(wire="groq", api_key="backup-key")
    primary.start(), backup.start()
    yield primary, backup
    primary.stop(), backup.stop()


def provider_settings(primary: ProviderSim, **overrides):
    return local_settings(
        **{
            "llm_provider": "cerebras",
            "cerebras_api_key": SecretStr(primary.api_key),
            "cerebras_base_url": primary.base_url,
            "acknowledge_after_ms": 0,
            # A patient end of turn: these tests are about the LLM, so a pause inside a recording must not split it.
            "end_of_turn_min_ms": 400,
            "end_of_turn_max_ms": 600,
            **overrides,
        }
    )


def fallback_to(backup: ProviderSim) -> dict:
    return {"llm_fallbacks": "groq", "groq_base_url": backup.base_url, "groq_api_key": SecretStr(backup.api_key)}


@pytest.fixture(scope="module")
def question(tmp_path_factory):
    return build_call(tmp_path_factory.mktemp("calls") / "q.wav", [0.3, "ill_disposed.wav", 3.0])


async def replay(settings, speech, path):
    async with AgentRuntime.start(settings, speech=speech) as runtime:
        return (await replay_call(runtime, path)).turns


async def test_speculation_starts_the_llm_during_the_end_of_turn_wait(sims, speech, question):
    primary, _ = sims
    primary.first_token_s = 0.3  # the delay speculation hides
    slow_turn_end = {"end_of_turn_min_ms": 4005, "end_of_turn_max_ms": 600}
    [off] = await replay(provider_settings(primary, speculate=False, **slow_turn_end), speech, question)
    [on] = await replay(provider_settings(primary, speculate=True, **slow_turn_end), speech, question)
    assert not off["llm"]["speculative"] and on["llm"]["speculative"]
    assert off["stages_ms"]["llm_ttft"] >= 280
    assert on["stages_ms"]["llm_ttft"] < 0.5 * off["stages_ms"]["llm_ttft"], (on["stages_ms"], off["stages_ms"])
    assert on["voice_to_voice_ms"] < off["voice_to_voice_ms"] - 150


async def test_speculation_is_thrown_away_when_the_caller_goes_on(sims, speech, tmp_path):
    primary, _ = sims
    # "Ten of clubs" ... a 0.3 s pause (the recordings' own silences) ... "five five": one turn. The pause is long
    # enough to speculate on "10 of clubs" but shorter than the end-of-turn wait.
    call = build_call(tmp_path / "pause.wav", [0.3, "ten_of_clubs.wav", "five_five.wav", 3.0])
    settings = provider_settings(primary, end_of_turn_min_ms=600, end_of_turn_max_ms=800, max_spoken_sentences=1)
    turns = await replay(settings, speech, call)
    assert len(turns) == 1, turns
    user_messages = [r["body"]["messages"][-1]["content"] for r in primary.requests]
    assert len(user_messages) >= 2, user_messages  # a speculation on the first words, and the whole turn
    assert user_messages[-1] == turns[0]["user_text"] and "5" in user_messages[-1]
    assert "5" not in user_messages[0]  # the first speculation only had the first words: it was dropped


async def test_slow_provider_is_hedged_to_the_fallback(sims, speech, question):
    primary, backup = sims
    primary.first_token_s = 2.0
    backup.first_token_s = 0.05
    backup.answer = "The backup answers first."
    settings = provider_settings(primary, hedge_after_ms=200, **fallback_to(backup))
    turns = await replay(settings, speech, question)
    assert len(turns) == 1, turns
    turn = turns[0]
    assert turn["llm"]["hedged"] and turn["llm"]["provider"] == "groq"
    assert turn["bot_text"] == "The backup answers first."
    assert turn["voice_to_voice_ms"] < 1000, turn  # not the 2 s the primary would have taken


async def test_failing_provider_is_hedged_to_the_fallback_at_once(sims, speech, question):
    primary, backup = sims
    backup.answer = "The backup answers."
    settings = provider_settings(primary, hedge_after_ms=5000, **fallback_to(backup))
    async with AgentRuntime.start(settings, speech=speech) as runtime:
        primary.scenario = "503"  # healthy at start-up, failing by the first turn
        [turn] = (await replay_call(runtime, question)).turns
    assert turn["bot_text"] == "The backup answers." and turn["llm"]["provider"] == "groq"


async def test_acknowledgement_fills_the_silence_when_nothing_can_come_in_time(sims, speech, tmp_path):
    primary, _ = sims
    primary.first_token_s = 1.5
    call = build_call(tmp_path / "short.wav", [0.3, "ten_of_clubs.wav", 3.0])
    settings = provider_settings(primary, acknowledge_after_ms=620, end_of_turn_min_ms=200, end_of_turn_max_ms=400)
    [turn] = await replay(settings, speech, call)
    assert turn["llm"]["acknowledged"]
    assert turn["bot_text"].startswith("Let me think. Sure, here is")
    assert turn["voice_to_voice_ms"] < 800, turn  # the caller hears the acknowledgement inside the budget


async def test_first_clause_is_spoken_before_the_sentence_is_written(sims, speech, question):
    primary, _ = sims
    primary.tokens_per_s = 10  # a slow writer: a 10-word sentence takes a second
    primary.answer = "Well, let me see, the answer to that is forty two."
    [turn] = await replay(provider_settings(primary), speech, question)
    # "Well, let me see," (4 words) goes to TTS without waiting for the other six.
    assert turn["stages_ms"]["first_clause"] < 600, turn["stages_ms"]


@pytest.mark.parametrize(
    ("text", "wait"),
    [("He was not an ill-disposed young man.", 0.15), ("Is it?", 0.15), ("I want to go and", 0.6),
     ("Well,", 0.6), ("ten of clubs", 0.375), ("um", 0.6), ("He was not.", 0.6), ("5.", 0.375),
     ("Yes.", 0.375), ("What time is it?", 0.15)],
)  # fmt: skip
def test_end_of_turn_wait_adapts_to_how_the_words_end(text, wait):
    assert end_of_turn_wait(text, 0.15, 0.6) == pytest.approx(wait)
