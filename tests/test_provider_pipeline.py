"""The whole pipeline on the provider path, against local servers speaking Cerebras', Groq's and SambaNova's wire
formats: answers stream into speech, the prompt prefix stays byte-stable between turns (so prefix caches hit), and
provider failures become a short spoken apology while the call goes on."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from agent.llm.simulator import ProviderSim
from agent.runtime import AgentRuntime
from pipelines.replay import replay_call
from tests.audio import build_call, voiced_spans
from tests.conftest import local_settings

APOLOGY_START = "Sorry, I'm having trouble"


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
    )
    async with AgentRuntime.start(settings, speech=speech) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def two_questions(tmp_path_factory):
    return build_call(
        tmp_path_factory.mktemp("calls") / "two.wav", [0.3, "ten_of_clubs.wav", 4.0, "five_five.wav", 0.3]
    )


async def replay_with(sim: ProviderSim, runtime: AgentRuntime, path, scenario: str):
    sim.scenario = scenario
    sim.requests.clear()
    try:
        return await replay_call(runtime, path)
    finally:
        sim.scenario = "ok"


async def test_answers_come_from_the_provider_and_the_context_grows(sim, cerebras_runtime, two_questions):
    assert cerebras_runtime.provider.name == "cerebras"
    result = await replay_with(sim, cerebras_runtime, two_questions, "ok")
    assert len(result.turns) == 2, result.turns
    for turn in result.turns:
        assert turn["bot_text"] == "Sure, here is the short answer."  # one spoken sentence, reasoning never spoken
        assert turn["llm"]["time_info"]["total_time"] > 0 and turn["llm"]["usage"]["completion_tokens"] > 0
        assert turn["llm"]["reasoning_chars"] > 0
    second = sim.requests[-1]["body"]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[2]["content"] == "Sure, here is the short answer."
    # The first turn's request, as sent, is a byte-for-byte prefix of the second's: the provider's cache hits.
    first_turn = next(r["raw"] for r in sim.requests if len(r["body"]["messages"]) == 2)
    first_messages = first_turn[: first_turn.rindex(b"}]") + 1]
    assert sim.requests[-1]["raw"].startswith(first_messages)
    assert result.turns[1]["llm"]["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


@pytest.mark.parametrize("wire", ["groq", "sambanova"])
async def test_replay_answers_through_other_platforms_wire_formats(speech, tmp_path, wire):
    sim = ProviderSim(wire=wire, first_token_s=0.05, answer=f"Hello from {wire}. More text.").start()
    settings = local_settings(
        llm_provider=wire,
        acknowledge_after_ms=0,
        **{f"{wire}_api_key": SecretStr(sim.api_key), f"{wire}_base_url": sim.base_url},
    )
    call = build_call(tmp_path / "q.wav", [0.3, "ten_of_clubs.wav", 3.0])
    try:
        async with AgentRuntime.start(settings, speech=speech) as runtime:
            [turn] = (await replay_call(runtime, call)).turns
    finally:
        sim.stop()
    assert turn["bot_text"] == f"Hello from {wire}." and turn["llm"]["provider"] == wire
    assert turn["llm"]["usage"]["completion_tokens"] > 0
    assert sim.requests[-1]["body"]["model"] == runtime.provider.model == sim.models[0]


@pytest.mark.parametrize("scenario", ["503", "429", "401"])
async def test_provider_error_is_an_apology_and_the_call_goes_on(sim, cerebras_runtime, two_questions, scenario):
    result = await replay_with(sim, cerebras_runtime, two_questions, scenario)
    assert len(result.turns) == 2, result.turns
    for turn in result.turns:
        assert turn["bot_text"].startswith(APOLOGY_START), turn
        assert scenario in turn["llm"]["error"] and "test-key" not in turn["llm"]["error"]
    assert len(voiced_spans(result.reply_audio, result.reply_sample_rate)) >= 2


async def test_stream_cut_mid_answer_keeps_what_was_said_then_apologises(sim, cerebras_runtime, two_questions):
    result = await replay_with(sim, cerebras_runtime, two_questions, "cut")
    first = result.turns[0]
    assert first["bot_text"].startswith("Sure, here is the")
    assert APOLOGY_START in first["bot_text"]


async def test_first_token_that_never_comes_gets_an_acknowledgement_then_an_apology(
    sim, cerebras_runtime, two_questions
):
    result = await replay_with(sim, cerebras_runtime, two_questions, "stall")
    for turn in result.turns:
        # The acknowledgement fills the silence at 0.5 s; the apology follows the 1.0 s first-token deadline.
        assert turn["bot_text"].startswith("Let me think.") and APOLOGY_START in turn["bot_text"], turn
        assert turn["voice_to_voice_ms"] < 1200, turn
