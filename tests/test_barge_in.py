"""Barge-in: a caller who talks over the agent cuts it off at once, and the context keeps only what was heard.

The answers come from the provider simulator (a long first sentence, quickly), so the caller surely talks over one.
"""

from __future__ import annotations

import pytest

from agent.llm.simulator import ProviderSim
from agent.runtime import AgentRuntime
from bench.audio import build_call, voiced_spans
from pipelines.replay import replay_call
from tests.conftest import sim_settings

pytestmark = pytest.mark.slow

LEAD_S = 0.5
QUESTION_S = 2.99  # ill_disposed.wav
GAP_S = 3.0
BARGE_AT_S = LEAD_S + QUESTION_S + GAP_S  # the agent's answer has started by then
LONG_ANSWER = "Well, that is a question I have thought about for a long time, and the answer takes a while to tell."


@pytest.fixture(scope="module")
async def barge_in_call(speech, tmp_path_factory):
    path = build_call(
        tmp_path_factory.mktemp("calls") / "barge.wav", [LEAD_S, "ill_disposed.wav", GAP_S, "amiable.wav", 1.0]
    )
    sim = ProviderSim(first_token_s=0.05, answer=LONG_ANSWER).start()
    settings = sim_settings(sim)
    try:
        async with AgentRuntime.start(settings, speech=speech) as runtime:
            return await replay_call(runtime, path)
    finally:
        sim.stop()


async def test_caller_speaking_over_the_bot_cuts_it_off(barge_in_call):
    result = barge_in_call
    first, second = result.turns[0], result.turns[1]
    assert first["outcome"] == "answered" and first["cut"], result.turns  # heard, then cut off by the caller
    assert not first["false_start"]  # the caller spoke over an answer playing for over a second: a real barge-in
    assert second["outcome"] == "answered" and second["bot_text"] and not second["cut"]
    spans = voiced_spans(result.reply_audio, result.reply_sample_rate)
    # The first answer was playing when the caller barged in ...
    assert spans[0][0] < BARGE_AT_S < spans[0][1] + 0.05, spans
    # ... and stopped once the VAD was sure the caller was speaking (start_secs 0.15 s plus Silero's onset, ~0.4 s
    # measured), long before the ~5 s sentence would have ended.
    assert spans[0][1] - BARGE_AT_S < 0.6, spans
    # The next sound is the answer to the second question, after the caller finished it.
    assert spans[1][0] > BARGE_AT_S + 3.2, spans


async def test_context_keeps_only_what_the_caller_heard(barge_in_call):
    result = barge_in_call
    first = result.turns[0]
    assistant = [m["content"] for m in result.messages if m["role"] == "assistant"]
    assert len(assistant) == 2, result.messages
    heard = assistant[0]
    assert heard and len(heard) < len(first["bot_text"]), (heard, first["bot_text"])
    assert first["bot_text"].startswith(heard.split()[0])
