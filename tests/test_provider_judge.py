"""The provider as the judge of the caller's turn (END_OF_TURN_JUDGE=provider), on the provider simulator scripted
to answer with each of pipecat's turn-completion markers: the marker read off the stream, the LLM stage's verdicts
and re-prompt, the end-of-turn strategy acting on each verdict, and a recorded call with a mid-sentence pause
through the whole pipeline.

These test the mechanics only: how well a real model judges turns can only be measured against the real provider."""

from __future__ import annotations

from typing import Any

import pytest
from pipecat.frames.frames import (
    LLMContextFrame,
    LLMTextFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import SleepFrame
from pipecat.turns.user_turn_completion_mixin import USER_TURN_COMPLETION_INSTRUCTIONS

from agent.frames import SpeakPhraseFrame, TurnVerdict, TurnVerdictFrame
from agent.llm.simulator import ProviderSim
from agent.runtime import AgentRuntime
from agent.settings import SettingsError
from agent.turns.end_of_turn import EndOfTurnStrategy
from agent.turns.judge import ProviderJudge
from agent.turns.words import normalize
from bench.calls import build_call as build_paused_call
from pipelines.replay import replay_call
from tests.conftest import local_settings, sim_settings
from tests.llm_stage import run_llm_stage, spoken, stats_of
from tests.turn_strategy import strategy_events

INVITATION = "● Go ahead, I'm listening."


def judging_model(messages: list[dict[str, Any]]) -> str:
    """A model that keeps pipecat's protocol and knows how this module's sentences end: a question, or the recorded
    sentence's last word ("... to do for them"), is done; "hold on" asks for time; anything else was cut off. Asked
    again about a silent caller, it invites them to go on."""
    last = str(messages[-1].get("content", "")) if messages else ""
    if "encourage them to continue" in last or "check-in message" in last:
        return INVITATION
    words = normalize(last).split()
    if words[:2] == ["hold", "on"]:
        return "○"
    if last.rstrip().endswith("?") or words[-1:] == ["them"]:
        return "● Sure, here is the short answer."
    return "◐"


@pytest.fixture(scope="module")
def sim():
    server = ProviderSim(first_token_s=0.05, answer=judging_model).start()
    yield server
    server.stop()


def judge_settings(sim: ProviderSim, **overrides):
    return sim_settings(sim, end_of_turn_judge="provider", **overrides)


@pytest.fixture(scope="module")
async def judged_runtime(sim, speech):
    async with AgentRuntime.start(judge_settings(sim), speech=speech) as runtime:
        yield runtime


@pytest.mark.parametrize(
    ("pieces", "said", "verdict"),
    [
        (["●", " Sure,", " here."], "Sure, here.", "complete"),
        (["● Sure,", " here."], "Sure, here.", "complete"),
        ([" ", "●", " ", "Sure."], "Sure.", "complete"),
        (["◐"], "", "cut_off"),
        (["◐ Please", " go on."], "", "cut_off"),  # words after "not done yet" are never spoken
        (["○"], "", "needs_time"),
        (["Sure,", " here."], "Sure, here.", "complete"),  # no marker: heard as it is
    ],
)
def test_the_marker_is_read_off_the_answer_however_it_is_split(pieces, said, verdict):
    reader = ProviderJudge(cut_off_wait_s=3, needs_time_wait_s=8).reader()
    assert "".join(reader.feed(piece) for piece in pieces) == said
    assert reader.verdict == verdict


def test_the_judge_needs_a_remote_model_and_speculation(sim):
    with pytest.raises(ValueError, match="SPECULATE"):
        judge_settings(sim, speculate=False)


async def test_a_local_model_cannot_judge(speech):
    with pytest.raises(SettingsError, match="END_OF_TURN_JUDGE"):
        async with AgentRuntime.start(local_settings(end_of_turn_judge="provider"), speech=speech):
            pass


def asked(*questions: str, speculative: bool = False) -> list:
    frames = []
    for question in questions:
        context = LLMContext([{"role": "user", "content": question}])
        frames.append(LLMContextFrame(context=context, speculation=speculative))
    return frames


def verdicts(up: list) -> list[tuple[TurnVerdict, str]]:
    return [(f.verdict, f.text) for f in up if isinstance(f, TurnVerdictFrame)]


async def test_a_done_marker_is_told_upstream_and_the_answer_spoken_without_it(sim, judged_runtime):
    sim.requests.clear()
    down, up = await run_llm_stage(judged_runtime, asked("What is ten of clubs?"))
    assert spoken(down) == "Sure, here is the short answer.", down
    assert verdicts(up) == [("complete", "What is ten of clubs?")]
    assert [s.verdict for s in stats_of(down)] == ["complete"]
    system = sim.requests[0]["body"]["messages"][0]["content"]
    assert system.endswith(USER_TURN_COMPLETION_INSTRUCTIONS), system


async def test_a_speculative_answer_judged_unfinished_ends_unspoken_without_an_apology(sim, judged_runtime):
    """The turn is still open: the strategy waits on, and nothing is said (not even when the turn is then
    confirmed, as a badly timed confirmation could: the held response is released with nothing in it)."""
    sim.requests.clear()
    frames = [*asked("I need to", speculative=True), SleepFrame(0.5), UserStoppedSpeakingFrame()]
    down, up = await run_llm_stage(judged_runtime, frames)
    assert verdicts(up) == [("cut_off", "I need to")]
    assert not [f for f in down if isinstance(f, (LLMTextFrame, SpeakPhraseFrame))], down
    assert len(sim.requests) == 1


@pytest.mark.parametrize(("question", "verdict"), [("I need to", "cut_off"), ("hold on a second", "needs_time")])
async def test_a_confirmed_turn_judged_unfinished_gets_an_invitation_to_go_on(sim, judged_runtime, question, verdict):
    """The turn ended on the caller's silence although the model had judged them unfinished: asked again with
    pipecat's re-prompt, it invites them to go on (never silence)."""
    sim.requests.clear()
    down, up = await run_llm_stage(judged_runtime, asked(question))
    assert verdicts(up)[0] == (verdict, question)
    assert spoken(down) == INVITATION.removeprefix("● "), down
    reprompt = judged_runtime.judge.reprompt(verdict)
    assert sim.requests[-1]["body"]["messages"][-1] == {"role": "user", "content": reprompt}


@pytest.fixture
async def judged_strategy():
    judge = ProviderJudge(cut_off_wait_s=1.5, needs_time_wait_s=2.5)
    strategy = EndOfTurnStrategy(shortest_s=0.3, longest_s=1.1, budget_s=0.8, judge=judge)
    async with strategy_events(strategy) as events:
        yield events


@pytest.mark.parametrize(
    ("verdict", "verdict_text", "expected"),
    [
        ("complete", None, [("speculate", 0.0), ("end, confirming", 0.3)]),
        ("cut_off", None, [("speculate", 0.0), ("withdraw", 0.1), ("ask", 1.5), ("end", 1.5)]),
        ("needs_time", None, [("speculate", 0.0), ("withdraw", 0.1), ("ask", 2.5), ("end", 2.5)]),
        (None, None, [("speculate", 0.0), ("end, confirming", 1.1)]),  # no verdict: the longest wait
        ("cut_off", "something else", [("speculate", 0.0), ("end, confirming", 1.1)]),  # another turn's verdict
    ],
)
async def test_the_turn_ends_as_the_provider_judged(judged_strategy, verdict, verdict_text, expected):
    await judged_strategy.caller_says("What time is it", verdict=verdict, verdict_text=verdict_text)
    seen = judged_strategy.events
    assert [name for name, _ in seen] == [name for name, _ in expected], seen
    for (_, at), (_, planned) in zip(seen, expected, strict=True):
        assert planned <= at <= planned + 0.1, seen


@pytest.mark.slow
async def test_through_the_whole_pipeline_a_pause_judged_cut_off_is_waited_for(speech, sim, tmp_path):
    """A recorded call at Cerebras speed: "and Mister John Dashwood had then leisure to consider | how much ..."
    with a 0.5 s pause after "consider" (the scripted model judges it cut off), then "What time is it in Tokyo
    right now?". The pause gets no answer; the whole sentence is one turn; the question is answered within the
    budget."""
    call = build_paused_call(tmp_path / "call.wav", ["pause:dashwood.wav", "synth_tokyo.wav"], gap_s=3.0)
    sim.requests.clear()
    async with AgentRuntime.start(judge_settings(sim), speech=speech) as runtime:
        turns = (await replay_call(runtime, call.path)).turns
    assert [t["false_start"] for t in turns] == [False, False], turns
    sentence, question = turns
    assert "consider" in sentence["user_text"] and "them" in sentence["user_text"], sentence
    assert sentence["outcome"] == question["outcome"] == "answered", turns
    assert sentence["llm"]["verdict"] == question["llm"]["verdict"] == "complete", turns
    assert question["answer_ms"] < 800, question
    asked_on = [str(r["body"]["messages"][-1]["content"]) for r in sim.requests]
    assert any("consider" in text and "them" not in text for text in asked_on), asked_on  # judged in the pause
