"""Each latency action, proven against the delay it answers: a provider made slow (or failing) on purpose by the
local servers that speak Cerebras' (primary) and Groq's (fallback) wire formats, and real recorded speech through
the whole local pipeline (hedging and failover, which the LLM stage decides alone, on that stage with run_test)."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from agent.llm.simulator import ProviderSim
from agent.runtime import AgentRuntime
from bench.audio import build_call
from bench.calls import build_call as build_paused_call
from pipelines.replay import replay_call
from tests.conftest import local_settings
from tests.llm_stage import answer_frames, spoken, stats_of
from tests.servers import wait_for


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


@pytest.mark.slow
async def test_speculation_starts_the_llm_during_the_end_of_turn_wait(sims, speech, question):
    primary, _ = sims
    primary.first_token_s = 0.4  # the delay speculation hides
    patient = {"end_of_turn_min_ms": 2000, "end_of_turn_max_ms": 2000}
    [off] = await replay(provider_settings(primary, speculate=False, **patient), speech, question)
    [on] = await replay(provider_settings(primary, speculate=True, **patient), speech, question)
    assert not off["llm"]["speculative"] and on["llm"]["speculative"]
    assert off["outcome"] == on["outcome"] == "answered"
    assert off["stages_ms"]["llm_ttft"] >= 380, off["stages_ms"]
    # With speculation the request went out at the transcript, so only what is left of the 400 ms after the wait
    # shows; the caller hears the answer correspondingly sooner.
    assert on["stages_ms"]["llm_ttft"] < off["stages_ms"]["llm_ttft"] - 250, (on["stages_ms"], off["stages_ms"])
    assert on["answer_ms"] < off["answer_ms"] - 250


@pytest.mark.slow
async def test_speculation_is_thrown_away_when_the_caller_goes_on(sims, speech, tmp_path):
    primary, _ = sims
    # "Ten of clubs" ... 0.77 s of silence (the recordings' own and 0.35 s between them) ... "five five": one turn.
    # The pause is long enough to speculate on "10 of clubs" but shorter than the end-of-turn wait.
    call = build_call(tmp_path / "pause.wav", [0.3, "ten_of_clubs.wav", 0.35, "five_five.wav", 3.0])
    patient = {"end_of_turn_min_ms": 1000, "end_of_turn_max_ms": 1200}
    turns = await replay(provider_settings(primary, **patient), speech, call)
    assert len(turns) == 1, turns
    user_messages = [r["body"]["messages"][-1]["content"] for r in primary.requests]
    assert len(user_messages) >= 2, user_messages  # a speculation on the first words, then the whole turn
    assert "5" not in user_messages[0] and "five" not in user_messages[0].lower()  # dropped
    answers = [r for r in primary.requests if r["body"].get("max_completion_tokens") != 1]  # not the warm-up
    assert turns[0]["llm_requests"] == len(answers)  # speculative requests are counted per turn
    assert turns[0]["outcome"] == "answered"


@pytest.mark.slow
@pytest.mark.timing  # whether an answer lands in a 0.5 s pause depends on how fast it comes
async def test_a_caller_who_pauses_mid_sentence_is_waited_for_once_they_have_talked_over_an_answer(
    sims, speech, tmp_path
):
    primary, _ = sims
    # "Unless to be rather cold-hearted ... and rather selfish is to be ill-disposed" with a 0.5 s pause, a question,
    # then the same sentence again. An eager threshold (END_OF_TURN_THRESHOLD=0.3) answers after the first clause,
    # so the first answer starts in the pause and the caller talks over it. From then on the agent waits out this
    # caller's pause.
    names = ["pause:cold_hearted.wav", "ten_of_clubs.wav", "five_five.wav", "pause:cold_hearted.wav"]
    call = build_paused_call(tmp_path / "pauses.wav", names, gap_s=3.0)
    [unlearned, learned] = [
        await replay(
            provider_settings(primary, end_of_turn_learn_pauses=learn, end_of_turn_threshold=0.3), speech, call.path
        )
        for learn in (False, True)
    ]
    assert [t["false_start"] for t in unlearned].count(True) == 2, unlearned  # the agent answered into both pauses
    turns = learned
    assert turns[0]["false_start"], turns
    assert sum(t["false_start"] for t in turns) == 1, turns
    last = turns[-1]  # the second sentence is one turn, with the words after the pause
    assert last["outcome"] == "answered" and "selfish" in last["user_text"] and "nless" in last["user_text"], turns


async def test_slow_provider_is_hedged_to_the_fallback(sims, speech):
    primary, backup = sims
    primary.first_token_s = 5.0
    backup.first_token_s = 0.05
    backup.answer = "The backup answers first."
    settings = provider_settings(primary, hedge_after_ms=200, **fallback_to(backup))
    async with AgentRuntime.start(settings, speech=speech) as runtime:
        started = time.monotonic()
        down = await answer_frames(runtime, "What is ten of clubs?", hedge_after_s=0.2)
        elapsed = time.monotonic() - started
    [stats] = stats_of(down)
    assert stats.hedged and stats.provider == "groq" and stats.providers_tried == ["cerebras", "groq"], stats
    assert spoken(down) == "The backup answers first."
    assert elapsed < 3.5  # not the 5 s the primary would have taken
    # The loser's stream was closed (the simulator's thread sees the disconnect a moment later).
    await wait_for(lambda: primary.open_streams == 0, 2.0)


async def test_failing_provider_fails_over_at_once(sims, speech):
    primary, backup = sims
    backup.answer = "The backup answers."
    settings = provider_settings(primary, hedge_after_ms=6000, **fallback_to(backup))
    async with AgentRuntime.start(settings, speech=speech) as runtime:
        primary.scenario = "503"  # healthy at start-up, failing by the first turn
        started = time.monotonic()
        down = await answer_frames(runtime, "What is ten of clubs?", hedge_after_s=6.0)
        elapsed = time.monotonic() - started
    [stats] = stats_of(down)
    assert spoken(down) == "The backup answers." and stats.provider == "groq" and not stats.error, stats
    assert elapsed < 3.5  # it did not wait for the 6 s hedge


@pytest.mark.slow
async def test_acknowledgement_fills_a_slow_provider_and_never_delays_the_answer(sims, speech, tmp_path):
    primary, _ = sims
    primary.first_token_s = 1.2
    call = build_call(tmp_path / "short.wav", [0.3, "ten_of_clubs.wav", 3.5])
    [quiet] = await replay(provider_settings(primary, acknowledge_after_ms=0), speech, call)
    [acknowledged] = await replay(provider_settings(primary, acknowledge_after_ms=300), speech, call)
    assert quiet["filler_ms"] is None and acknowledged["filler_ms"] is not None
    assert acknowledged["filler_ms"] < acknowledged["answer_ms"]
    assert acknowledged["outcome"] == "answered" and acknowledged["bot_text"].startswith("Sure, here is")
    # The acknowledgement is cut the moment the answer is ready: the answer's first audio went out right behind its
    # synthesis, not after the rest of "Let me think."
    assert acknowledged["stages_ms"]["output"] < 150, acknowledged["stages_ms"]
    # It is for a slow provider: at the default deadline a fast one never triggers it.
    primary.first_token_s = 0.2
    [fast] = await replay(provider_settings(primary, acknowledge_after_ms=500), speech, call)
    assert fast["filler_ms"] is None and fast["outcome"] == "answered"


@pytest.mark.slow
async def test_first_clause_is_spoken_before_the_sentence_is_written(sims, speech, question):
    primary, _ = sims
    primary.tokens_per_s = 10  # a slow writer: a 10-word sentence takes a second
    primary.answer = "Well, let me see, the answer to that is forty two."
    [turn] = await replay(provider_settings(primary), speech, question)
    # "Well, let me see," (4 words) goes to TTS without waiting for the other six.
    assert turn["stages_ms"]["first_clause"] < 600, turn["stages_ms"]
