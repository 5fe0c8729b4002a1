"""Barge-in: a caller who talks over the agent cuts it off at once, and the context keeps only what was heard."""

from __future__ import annotations

import pytest

from pipelines.replay import replay_call
from tests.audio import build_call, voiced_spans

LEAD_S = 0.5
QUESTION_S = 2.99  # ill_disposed.wav
BARGE_AT_S = LEAD_S + QUESTION_S + 1.6  # the agent's answer has started by then


@pytest.fixture(scope="module")
async def barge_in_call(local_runtime, tmp_path_factory):
    path = build_call(
        tmp_path_factory.mktemp("calls") / "barge.wav", [LEAD_S, "ill_disposed.wav", 1.6, "amiable.wav", 6.0]
    )
    return await replay_call(local_runtime, path)


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
