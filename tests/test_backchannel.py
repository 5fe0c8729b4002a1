"""A back-channel is not a turn: a caller's "yeah" (or a cough) over the agent's answer stops it, as any barge-in
does, and then the answer goes on from the first word the caller did not hear, instead of being dropped.

What counts as acknowledging, and where the answer goes on, on text; the LLM stage resuming instead of asking the
provider again (pipecat's `run_test`); and a recorded call in which the caller says "Yeah." over a long answer."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InterruptionFrame,
    LLMContextFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import SleepFrame
from pipecat.turns.empty_user_turn import DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT

from agent.frames import BackchannelFrame, TurnVerdictFrame
from agent.latency.turns import LatencyBudget, Turn
from agent.llm.simulator import ProviderSim
from agent.runtime import AgentRuntime
from agent.server.metrics import TurnMetrics
from agent.turns.backchannel import acknowledgement, is_backchannel, unheard_rest
from agent.turns.end_of_turn import EndOfTurnStrategy
from bench.audio import build_call, voiced_spans
from pipelines.replay import replay_call
from tests.conftest import sim_settings
from tests.llm_stage import run_llm_stage, spoken
from tests.turn_strategy import strategy_events

LONG_ANSWER = "Well, that is a question I have thought about for a long time, and the answer takes a while to tell."


@pytest.mark.parametrize("said", ["Yeah.", "Mm-hmm.", "okay", "Uh-huh, right.", "I see.", "", "Mm-mm-mm-mm-mm"])
def test_acknowledgements_are_back_channels(said):
    assert is_backchannel(said)


@pytest.mark.parametrize("said", ["Yes.", "No.", "Sure.", "Wait.", "Yeah, but what about Tuesday?", "Stop."])
def test_answers_and_requests_are_turns(said):
    """ "Yes", "no" and "sure" over the end of a question answer it."""
    assert not is_backchannel(said)


def test_a_turn_of_no_words_is_known_by_pipecats_prompt_for_it():
    assert acknowledgement([{"role": "developer", "content": DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT}]) == ""
    assert acknowledgement([{"role": "user", "content": "Yeah."}]) == "Yeah."
    assert acknowledgement([{"role": "user", "content": "What about Tuesday?"}]) is None
    assert acknowledgement([{"role": "assistant", "content": "Yeah."}]) is None


@pytest.mark.parametrize(
    ("heard", "rest"),
    [
        ("Well, that is a", "question I have thought about for a long time, and the answer takes a while to tell."),
        ("", LONG_ANSWER),  # cut before its first word
        ("Something it never said", LONG_ANSWER),
        ("a long time, and the", "answer takes a while to tell."),  # cut again after it went on
        (LONG_ANSWER, ""),
    ],
)
def test_the_answer_goes_on_after_the_words_heard(heard, rest):
    assert unheard_rest(LONG_ANSWER, heard) == rest


async def test_a_turn_of_no_words_over_the_answer_ends_after_the_shortest_wait():
    """A cough over the answer: no words, so no decision on words; the turn ends (and the LLM service, asked with
    pipecat's prompt for an empty turn, resumes the answer) instead of waiting for pipecat's stop timeout."""
    strategy = EndOfTurnStrategy(shortest_s=0.3, longest_s=1.1, budget_s=0.8)
    async with strategy_events(strategy) as events:
        await strategy.process_frame(BotStartedSpeakingFrame())
        await events.caller_says("")
    assert events.events == [("ask", 0.3), ("end", 0.3)], events.events


async def test_no_words_while_the_agent_is_silent_decide_nothing():
    strategy = EndOfTurnStrategy(shortest_s=0.3, longest_s=1.1, budget_s=0.8)
    async with strategy_events(strategy) as events:
        await events.caller_says("")
    assert events.events == [], events.events


def test_metrics_count_back_channels():
    metrics = TurnMetrics()
    metrics.record("phone", "closed", Turn(index=1, bot_text=LONG_ANSWER, backchannels=2).report(LatencyBudget()))
    assert 'voice_agent_backchannels_total{channel="phone"} 2.0' in metrics.exposition().decode()


@pytest.fixture(scope="module")
def sim():
    server = ProviderSim(first_token_s=0.05, answer=LONG_ANSWER).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def runtime(sim, speech):
    async with AgentRuntime.start(sim_settings(sim), speech=speech) as runtime:
        yield runtime


def cut_off_by(reply: dict[str, str], heard: str = "Well, that is a") -> list:
    """A question answered, the answer cut off by the caller (what the context kept as heard), then `reply`."""
    question = {"role": "user", "content": "Why is that?"}
    return [
        LLMContextFrame(context=LLMContext([question])),
        SleepFrame(0.3),
        BotStartedSpeakingFrame(),
        InterruptionFrame(),
        BotStoppedSpeakingFrame(),
        LLMContextFrame(context=LLMContext([question, {"role": "assistant", "content": heard}, reply])),
    ]


@pytest.mark.parametrize("reply", ["Yeah.", DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT])
async def test_a_back_channel_over_the_answer_resumes_it_without_a_new_request(sim, runtime, reply):
    sim.requests.clear()
    role = "developer" if reply == DEFAULT_EMPTY_USER_TURN_INTERRUPTED_PROMPT else "user"
    down, _ = await run_llm_stage(runtime, cut_off_by({"role": role, "content": reply}))
    assert len(sim.requests) == 1, [r["body"]["messages"][-1] for r in sim.requests]
    [resumed] = [f for f in down if isinstance(f, BackchannelFrame)]
    assert resumed.text == ("" if role == "developer" else reply)
    after = down[down.index(resumed) :]
    assert spoken(after) == unheard_rest(LONG_ANSWER, "Well, that is a"), down


async def test_with_the_provider_as_judge_a_back_channel_is_judged_done_at_once(sim, speech):
    """The resumed answer asks the provider nothing, so the service gives the end-of-turn strategy the verdict."""
    async with AgentRuntime.start(sim_settings(sim, end_of_turn_judge="provider"), speech=speech) as judged:
        _, up = await run_llm_stage(judged, cut_off_by({"role": "user", "content": "Yeah."}))
    assert [(f.verdict, f.text) for f in up if isinstance(f, TurnVerdictFrame)][-1] == ("complete", "Yeah.")


async def test_a_real_reply_over_the_answer_is_answered(sim, runtime):
    sim.requests.clear()
    down, _ = await run_llm_stage(runtime, cut_off_by({"role": "user", "content": "Yeah, but what about Tuesday?"}))
    assert len(sim.requests) == 2 and not [f for f in down if isinstance(f, BackchannelFrame)]


async def test_an_acknowledgement_after_the_answer_was_heard_to_its_end_is_answered(sim, runtime):
    """Not over the answer (the agent had finished): "okay" is then the caller's turn."""
    sim.requests.clear()
    question = {"role": "user", "content": "Why is that?"}
    frames = [
        LLMContextFrame(context=LLMContext([question])),
        SleepFrame(0.3),
        BotStartedSpeakingFrame(),
        BotStoppedSpeakingFrame(),
        LLMContextFrame(
            context=LLMContext(
                [question, {"role": "assistant", "content": LONG_ANSWER}, {"role": "user", "content": "Okay."}]
            )
        ),
    ]
    down, _ = await run_llm_stage(runtime, frames)
    assert len(sim.requests) == 2 and not [f for f in down if isinstance(f, BackchannelFrame)]


LEAD_S, QUESTION_S, GAP_S = 0.5, 2.99, 3.0  # ill_disposed.wav is 2.99 s
YEAH_AT_S = LEAD_S + QUESTION_S + GAP_S  # about 2.5 s into the answer


@pytest.mark.slow
async def test_through_the_whole_pipeline_yeah_over_the_answer_lets_it_go_on(runtime, tmp_path):
    path = build_call(tmp_path / "yeah.wav", [LEAD_S, "ill_disposed.wav", GAP_S, "synth_yeah.wav", 7.0])
    result = await replay_call(runtime, path)
    [turn] = result.turns  # the "yeah" is no turn of its own ...
    assert turn["outcome"] == "answered" and turn["backchannels"] == 1, result.turns
    assert not turn["cut"] and not turn["false_start"], turn  # ... and the answer was not cut: it went on
    spans = voiced_spans(result.reply_audio, result.reply_sample_rate)
    assert spans[0][0] < YEAH_AT_S < spans[0][1] + 0.05, spans  # the answer was playing, stopped at "yeah" ...
    assert spans[0][1] - YEAH_AT_S < 0.6, spans
    assert len(spans) >= 2 and spans[-1][1] - spans[1][0] > 1.0, spans  # ... and then went on
    said = [(m["role"], m["content"]) for m in result.messages if m["role"] != "system"]
    assert [role for role, _ in said] == ["user", "assistant", "user", "assistant"], said
    heard, resumed = said[1][1], said[3][1]
    assert "yeah" in said[2][1].lower(), said
    assert unheard_rest(LONG_ANSWER, heard).startswith(resumed.split()[0]), said  # from the first word unheard
