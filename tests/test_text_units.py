"""Small pure parts: SSE parsing, clause chunking for TTS, word timing, settings and secrets."""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr

from agent.latency.turns import LatencyBudget, Turn, summarize
from agent.llm.sse import iter_sse_data
from agent.settings import Settings, SettingsError
from agent.speech.clauses import ClauseTextAggregator
from agent.speech.tts import word_times


async def lines(*items: str):
    for item in items:
        yield item


async def test_sse_events_comments_multiline_and_done():
    got = [
        d
        async for d in iter_sse_data(
            lines(": keep-alive", "", 'data: {"a": 1}', "", "data: x", "data: y", "", "data: [DONE]", "", "data: z", "")
        )
    ]
    assert got == ['{"a": 1}', "x\ny"]


async def chunks(aggregator: ClauseTextAggregator, tokens: list[str]) -> list[str]:
    out = [a.text for t in tokens async for a in aggregator.aggregate(t)]
    if (rest := await aggregator.flush()) is not None:
        out.append(rest.text)
    return out


async def test_first_clause_goes_early_then_sentences():
    tokens = ["Well", ",", " I", " think", " so", ", yes", ". It", " is", " fine", ", really", ". Bye", "."]
    got = await chunks(ClauseTextAggregator(min_clause_words=2), tokens)
    assert got == ["Well, I think so,", "yes.", "It is fine, really.", "Bye."]


async def test_first_chunk_without_punctuation_is_cut_at_max_words():
    got = await chunks(
        ClauseTextAggregator(max_first_words=4), [w + " " for w in ["one", "two", "three", "four", "five", "six"]]
    )
    assert got[0] == "one two three four"


async def test_decimals_and_abbreviated_numbers_do_not_split():
    got = await chunks(ClauseTextAggregator(max_first_words=20), ["It costs 3.5 dollars", " today. Then", " more."])
    assert got == ["It costs 3.5 dollars today.", "Then more."]


def test_word_times_cover_the_audio_in_order():
    times = word_times("one three fifteen", 1.0, 2.0)
    assert [w for w, _ in times] == ["one", "three", "fifteen"]
    assert times[0][1] == 1.0 and times[1][1] < times[2][1] < 3.0


def test_secrets_never_print():
    s = Settings.load(None, cerebras_api_key=SecretStr("sk-abc"))
    assert "sk-abc" not in repr(s) and "sk-abc" not in str(s.cerebras_api_key)
    assert s.cerebras_api_key.get_secret_value() == "sk-abc"


def test_settings_from_env_file_and_environment(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("PORT=9000\nLATENCY_BUDGET_MS=700\nCEREBRAS_API_KEY=from-file\n")
    monkeypatch.setenv("PORT", "9100")
    s = Settings.load(env)
    assert s.port == 9100 and s.latency_budget_ms == 700 and s.cerebras_api_key.get_secret_value() == "from-file"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [("SPECULATE", "ture", "SPECULATE='ture'"), ("VAD_STOP_MS", "5", "VAD_STOP_MS='5'"),
     ("PORT", "eighty", "PORT='eighty'"), ("LLM_PROVIDER", "gemini", "LLM_PROVIDER='gemini'"),
     ("PUBLIC_URL", "agent.example.com", "PUBLIC_URL"), ("TTS_ENGINE", "espeak", "TTS_ENGINE")],
)  # fmt: skip
def test_a_bad_value_stops_start_up_naming_the_variable(monkeypatch, variable, value, says):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=re.escape(says)):
        Settings.load(None)


def test_a_settings_error_never_shows_a_secret(tmp_path):
    env = tmp_path / ".env"
    env.write_text("CEREBRAS_API_KEY=sk-live-123\nVAD_STOP_MS=abc\n")
    with pytest.raises(SettingsError) as failure:
        Settings.load(env)
    assert "VAD_STOP_MS='abc'" in str(failure.value) and "sk-live-123" not in str(failure.value)


def test_renamed_variables_are_refused_not_ignored(tmp_path):
    env = tmp_path / ".env"
    env.write_text("VAD_STOP_SECS=0.3\n")
    with pytest.raises(SettingsError, match="VAD_STOP_SECS is no longer read: set VAD_STOP_MS"):
        Settings.load(env)


def test_turn_stages_add_up_and_the_budget_names_the_overrun():
    turn = Turn(index=1)
    for name, at in [("speech_end", 10.0), ("vad_stop", 10.2), ("transcript", 10.5), ("turn_end", 10.45),
                     ("llm_request", 10.5), ("llm_first_token", 10.9), ("first_clause", 10.95),
                     ("tts_first_audio", 10.97), ("audio_out", 10.98)]:  # fmt: skip
        turn.mark(name, at)
    stages = turn.stages_ms()
    assert abs(sum(stages.values()) - turn.voice_to_voice_ms()) < 0.5
    assert stages["end_of_turn"] == 0.0  # marks out of order are clamped, never negative
    verdict = LatencyBudget(total_ms=800).judge(stages, turn.voice_to_voice_ms())
    assert verdict["within_budget"] is False and "llm_ttft" in verdict["overran"] and "stt" in verdict["overran"]


def test_summary_percentiles():
    assert summarize([100, 200, 300, 400])["p50_ms"] == 250
    assert summarize([float(i) for i in range(1, 101)])["p95_ms"] == 95
    assert summarize([])["count"] == 0
