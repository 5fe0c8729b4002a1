"""The whole pipeline on the provider path, against local servers speaking Cerebras', Groq's and SambaNova's wire
formats: answers stream into speech, the prompt prefix stays byte-stable between turns (so prefix caches hit), and
every way a provider can fail becomes a short spoken apology (never silence) while the call goes on."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import LLMFullResponseEndFrame, LLMFullResponseStartFrame, LLMTextFrame
from pydantic import SecretStr

from agent.frames import CompletionStatsFrame, SpeakPhraseFrame
from agent.llm.simulator import DEFAULT_ANSWER, ProviderSim
from agent.runtime import AgentRuntime
from bench.audio import build_call, voiced_spans
from pipelines.replay import replay_call
from tests.conftest import local_settings
from tests.llm_stage import answer_frames, spoken, stats_of
from tests.servers import wait_for


@pytest.fixture(scope="module")
def sim():
    server = ProviderSim(first_token_s=0.05).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def cerebras_runtime(sim, speech):
    settings = local_settings(
        llm_provider="auto",
        cerebras_api_key=SecretStr(sim.api_key),
        cerebras_base_url=sim.base_url,
        llm_first_token_timeout_ms=1000,
        acknowledge_after_ms=0,
    )
    async with AgentRuntime.start(settings, speech=speech) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def two_questions(tmp_path_factory):
    return build_call(
        tmp_path_factory.mktemp("calls") / "two.wav", [0.3, "ten_of_clubs.wav", 4.0, "synth_tokyo.wav", 0.3]
    )


async def replay_with(sim: ProviderSim, runtime: AgentRuntime, path, scenario: str, **changes):
    sim.scenario = scenario
    sim.requests.clear()
    saved = {name: getattr(sim, name) for name in changes}
    for name, value in changes.items():
        setattr(sim, name, value)
    try:
        return await replay_call(runtime, path)
    finally:
        sim.scenario = "ok"
        for name, value in saved.items():
            setattr(sim, name, value)


@pytest.mark.slow
async def test_answers_come_from_the_provider_and_the_context_grows(sim, cerebras_runtime, two_questions):
    assert cerebras_runtime.provider.name == "cerebras"
    result = await replay_with(sim, cerebras_runtime, two_questions, "ok")
    assert [t["outcome"] for t in result.turns] == ["answered", "answered"], result.turns
    for turn in result.turns:
        assert turn["bot_text"] == "Sure, here is the short answer."  # one spoken sentence, reasoning never spoken
        assert turn["llm"]["time_info"]["total_time"] > 0 and turn["llm"]["usage"]["completion_tokens"] > 0
        assert turn["llm"]["reasoning_chars"] > 0
    second = sim.requests[-1]["body"]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[2]["content"] == "Sure, here is the short answer."
    assert result.summary["outcomes"]["answered"] == 2 and result.summary["count"] == 2
    # The first turn's request, as sent, is a byte-for-byte prefix of the second's: the provider's cache hits.
    first_turn = next(r["raw"] for r in sim.requests if len(r["body"]["messages"]) == 2)
    first_messages = first_turn[: first_turn.index(b'],"stream"')]  # up to the end of its last message
    assert sim.requests[-1]["raw"].startswith(first_messages)
    assert result.turns[1]["llm"]["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


# The audio path is the same whatever the platform (the whole call above, on Cerebras' wire): the other platforms'
# wire formats are checked at the LLM stage.
@pytest.mark.parametrize("wire", ["groq", "sambanova"])
async def test_answers_come_through_other_platforms_wire_formats(speech, wire):
    sim = ProviderSim(wire=wire, first_token_s=0.05, answer=f"Hello from {wire}. More text.").start()
    settings = local_settings(
        llm_provider=wire,
        acknowledge_after_ms=0,
        **{f"{wire}_api_key": SecretStr(sim.api_key), f"{wire}_base_url": sim.base_url},
    )
    try:
        async with AgentRuntime.start(settings, speech=speech) as runtime:
            down = await answer_frames(runtime, "What is ten of clubs?")
    finally:
        sim.stop()
    [stats] = stats_of(down)
    assert spoken(down) == f"Hello from {wire}." and stats.provider == wire and not stats.error, stats
    assert stats.usage["completion_tokens"] > 0
    assert sim.requests[-1]["body"]["model"] == runtime.provider.model == sim.models[0]


# Every kind of failure is checked at the LLM stage below (frame level); a whole call for a provider that never
# answers (the slowest way to fail: the first-token timeout) shows what the caller hears.
@pytest.mark.parametrize("scenario", ["stall"])
@pytest.mark.slow
async def test_a_failing_provider_gets_the_caller_an_apology_and_the_call_goes_on(
    sim, cerebras_runtime, two_questions, scenario
):
    result = await replay_with(sim, cerebras_runtime, two_questions, scenario)
    assert [t["outcome"] for t in result.turns] == ["error", "error"], result.turns
    for turn in result.turns:
        assert turn["answer_ms"] is None and not turn["verdict"]["within_budget"]  # an apology is not an answer
        assert turn["filler_ms"] is not None and turn["filler_ms"] < 3000  # but the caller heard something
        assert "test-key" not in turn["error"]
    assert len(voiced_spans(result.reply_audio, result.reply_sample_rate)) >= 2  # two apologies were spoken


BROKEN_STREAMS = [("cut", "stream ended"), ("error_event", "Internal server error")]


# Both ways a stream breaks are checked at the LLM stage below; a whole call for a cut stream shows what the caller
# hears.
@pytest.mark.parametrize(("scenario", "error"), BROKEN_STREAMS[:1])
@pytest.mark.slow
async def test_stream_broken_mid_answer_keeps_what_was_said_then_apologises(
    sim, cerebras_runtime, two_questions, scenario, error
):
    result = await replay_with(sim, cerebras_runtime, two_questions, scenario)
    first = result.turns[0]
    assert first["bot_text"].startswith("Sure, here is the")
    assert first["outcome"] == "answered" and error in first["error"]
    spans = voiced_spans(result.reply_audio, result.reply_sample_rate)
    assert len(spans) >= 2  # the words that came, then the apology


async def test_reasoning_that_uses_the_whole_budget_is_asked_again_with_more(sim, cerebras_runtime):
    # 200 reasoning tokens against the 160-token limit: the first try has nothing to say.
    sim.requests.clear()
    sim.reasoning_tokens, usual = 200, sim.reasoning_tokens
    try:
        down = await answer_frames(cerebras_runtime, "What is ten of clubs?", "And seven of clubs?")
    finally:
        sim.reasoning_tokens = usual
    assert spoken(down) == "Sure, here is the short answer." * 2, down
    assert [(s.retried, s.error) for s in stats_of(down)] == [(True, None), (True, None)]
    limits = [r["body"]["max_completion_tokens"] for r in sim.requests]
    assert 160 in limits and 640 in limits


@pytest.mark.slow
async def test_no_stream_outlives_the_call(sim, cerebras_runtime, two_questions):
    # The provider writes 2 words a second; the caller hangs up (the replay ends) a second after the answer started.
    call = build_call(two_questions.parent / "hang.wav", [0.3, "ten_of_clubs.wav", 1.0])
    sim.tokens_per_s, sim.requests = 2.0, []
    try:
        result = await replay_call(cerebras_runtime, call, max_tail_s=1.0)
    finally:
        sim.tokens_per_s = 3000.0
    turn = result.turns[0]
    # The call ended mid-stream (answered or not yet heard, depending on how fast this machine got there).
    assert sim.requests and turn["bot_text"] != "Sure, here is the short answer.", turn
    await wait_for(lambda: sim.open_streams == 0, timeout_s=3)


@pytest.mark.parametrize("scenario", ["503", "429", "401", "malformed", "stall"])
async def test_each_provider_failure_becomes_an_apology_at_frame_level(sim, cerebras_runtime, scenario):
    sim.scenario = scenario
    try:
        down = await answer_frames(cerebras_runtime, "What is ten of clubs?", "And five five?")
    finally:
        sim.scenario = "ok"
    kinds = [type(f) for f in down]
    turn = [LLMFullResponseStartFrame, LLMFullResponseEndFrame, SpeakPhraseFrame, CompletionStatsFrame]
    assert kinds == turn * 2, kinds  # an apology each turn, no spoken text, and the second turn is asked too
    for stats in stats_of(down):
        assert stats.error and sim.api_key not in stats.error, stats
    assert all(f.kind == "apology" for f in down if isinstance(f, SpeakPhraseFrame))


@pytest.mark.parametrize(("scenario", "error"), BROKEN_STREAMS)
async def test_a_stream_broken_mid_answer_keeps_its_words_then_apologises_at_frame_level(
    sim, cerebras_runtime, scenario, error
):
    sim.scenario = scenario
    try:
        down = await answer_frames(cerebras_runtime, "What is ten of clubs?")
    finally:
        sim.scenario = "ok"
    assert spoken(down).startswith("Sure, here is the"), down  # the words that came ...
    apology = next(i for i, f in enumerate(down) if isinstance(f, SpeakPhraseFrame))
    assert down[apology].kind == "apology" and not [f for f in down[apology:] if isinstance(f, LLMTextFrame)]
    [stats] = stats_of(down)  # ... then the apology, and the error kept for the turn's report
    assert error in stats.error, stats


@pytest.mark.parametrize(("scenario", "error"), BROKEN_STREAMS)
async def test_a_stream_broken_after_the_answer_was_said_leaves_the_answer_standing(
    sim, cerebras_runtime, scenario, error
):
    """The voice answer is one sentence here; the rest of the stream is only read. It breaking then is no failure
    the caller could hear: no apology, no error."""
    sim.scenario, sim.answer = scenario, "Sure. And here is more that is read but never spoken."
    try:
        down = await answer_frames(cerebras_runtime, "What is ten of clubs?")
    finally:
        sim.scenario, sim.answer = "ok", DEFAULT_ANSWER
    assert spoken(down) == "Sure.", down
    assert not [f for f in down if isinstance(f, SpeakPhraseFrame)], down
    [stats] = stats_of(down)
    assert stats.error is None, stats
