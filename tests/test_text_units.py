"""Small pure parts: SSE parsing, clause chunking for TTS, word timing, settings and secrets, turn bookkeeping."""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr

from agent.latency.turns import LatencyBudget, Turn, summarize, summarize_turns
from agent.llm.local_server import llama_server_environment
from agent.llm.sse import iter_sse_data
from agent.settings import Settings, SettingsError
from agent.speech.clauses import ClauseSplitter
from agent.speech.tts import word_times
from agent.text import count_sentences, ends_sentence
from agent.turns.patience import AFTER_THE_WAIT_S, MARGIN_S, CallerPauses


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


async def test_sse_body_cut_after_an_event_without_its_blank_line():
    assert [d async for d in iter_sse_data(lines('data: {"a": 1}', "", "data:"))] == ['{"a": 1}']
    assert [d async for d in iter_sse_data(lines("data: last"))] == ["last"]


def test_local_llm_server_does_not_read_the_deployments_variables(monkeypatch):
    # llama.cpp's server reads unprefixed variables as its settings: PORT would move it onto the agent's port.
    monkeypatch.setenv("PORT", "8000")
    monkeypatch.setenv("API_KEY", "a-deployment-secret")
    monkeypatch.setenv("VOICE_AGENT_TEST", "kept")
    env = llama_server_environment()
    assert "PORT" not in env and "API_KEY" not in env and env["VOICE_AGENT_TEST"] == "kept"


def chunks(splitter: ClauseSplitter, tokens: list[str]) -> list[str]:
    out = [chunk for t in tokens for chunk in splitter.add(t)]
    if rest := splitter.flush():
        out.append(rest)
    return out


def test_first_clause_goes_early_then_sentences():
    tokens = ["Well", ",", " I", " think", " so", ", yes", ". It", " is", " fine", ", really", ". Bye", "."]
    got = chunks(ClauseSplitter(min_clause_words=2), tokens)
    assert got == ["Well, I think so,", "yes.", "It is fine, really.", "Bye."]


def test_first_chunk_without_punctuation_is_cut_at_max_words():
    got = chunks(ClauseSplitter(max_first_words=4), [w + " " for w in ["one", "two", "three", "four", "five", "six"]])
    assert got[0] == "one two three four"


def test_decimals_and_abbreviated_numbers_do_not_split():
    got = chunks(ClauseSplitter(max_first_words=20), ["It costs 3.5 dollars", " today. Then", " more."])
    assert got == ["It costs 3.5 dollars today.", "Then more."]


@pytest.mark.parametrize(
    ("text", "sentences", "finished"),
    [("Sure.", 1, True), ("Sure. It is 3.5 dollars", 1, False), ("Is it? Yes!", 2, True), ("Well...", 0, False),
     ('He said "no."', 1, True), ("5.", 1, True), ("and", 0, False)],
)  # fmt: skip
def test_one_idea_of_a_sentence_end_for_every_part(text, sentences, finished):
    assert count_sentences(text) == sentences and ends_sentence(text) is finished


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


def marked_turn(**marks: float) -> Turn:
    turn = Turn(index=1, user_text="ten of clubs")
    for name, at in marks.items():
        turn.mark(name, at)
    return turn


ANSWERED = {"speech_end": 10.0, "vad_stop": 10.1, "transcript": 10.2, "turn_end": 10.3, "llm_request": 10.15,
            "llm_first_token": 10.5, "first_clause": 10.51, "tts_first_audio": 10.53, "answer_out": 10.55}  # fmt: skip


def test_the_answer_is_judged_not_the_filler():
    turn = marked_turn(**ANSWERED, filler_out=10.45)
    report = turn.report(LatencyBudget(total_ms=500))
    assert report["outcome"] == "answered" and report["answer_ms"] == pytest.approx(550)
    assert report["filler_ms"] == pytest.approx(450)
    assert report["verdict"]["within_budget"] is False  # the filler came in time; the answer did not
    assert report["stages_ms"]["llm_request"] == 0.0  # sent speculatively, before the turn was confirmed
    assert report["stages_ms"]["llm_ttft"] == pytest.approx(200)  # what speculation did not hide


def test_a_turn_without_an_answer_is_never_within_budget():
    budget = LatencyBudget(total_ms=800)
    failed = marked_turn(speech_end=10.0, turn_end=10.3, filler_out=10.4)
    failed.error = "cerebras HTTP 503: queue_exceeded"
    cut = marked_turn(speech_end=10.0, turn_end=10.3)
    cut.cut = True
    abandoned = marked_turn(speech_end=10.0, turn_end=10.3)
    for turn, outcome in [(failed, "error"), (cut, "interrupted"), (abandoned, "no_answer")]:
        report = turn.report(budget)
        assert report["outcome"] == outcome and report["answer_ms"] is None
        assert report["verdict"]["within_budget"] is False


def test_playout_reported_by_the_client_is_what_is_judged():
    turn = marked_turn(**ANSWERED, playout=10.9)
    report = turn.report(LatencyBudget(total_ms=800))
    assert report["heard_ms"] == pytest.approx(900) and report["verdict"]["within_budget"] is False
    assert report["stages_ms"]["playout"] == pytest.approx(350)


def test_a_false_start_is_never_a_good_turn():
    """An answer that began in the caller's pause is judged a false start, however fast it came."""
    turn = marked_turn(**ANSWERED)
    turn.cut = turn.false_start = True
    report = turn.report(LatencyBudget(total_ms=800))
    assert report["outcome"] == "answered" and report["answer_ms"] == pytest.approx(550)
    assert report["verdict"]["within_budget"] is False and report["verdict"]["false_start"] is True


def test_stage_overruns_are_named():
    report = marked_turn(**ANSWERED).report(LatencyBudget.from_settings(800, "stt=50,llm_ttft=100"))
    assert set(report["verdict"]["overran"]) == {"stt", "end_of_turn", "llm_ttft"}  # 100, 100, 200 ms
    with pytest.raises(ValueError, match="unknown stage 'sst'"):
        LatencyBudget.from_settings(800, "sst=50")


def test_turn_summary_counts_outcomes_fillers_and_false_starts():
    budget = LatencyBudget()
    answered = marked_turn(**ANSWERED, filler_out=10.45).report(budget)
    false_start = marked_turn(**ANSWERED)
    false_start.cut = false_start.false_start = True
    failed = marked_turn(speech_end=10.0, turn_end=10.3)
    failed.error = "boom"
    transferred = marked_turn(speech_end=10.0, turn_end=10.3)
    transferred.transferred = True  # put through to a person
    reports = [answered, false_start.report(budget), failed.report(budget), transferred.report(budget)]
    summary = summarize_turns(reports)
    assert summary["turns"] == 4 and summary["count"] == 2 and summary["p50_ms"] == pytest.approx(550)
    assert summary["outcomes"] == {"answered": 2, "interrupted": 0, "error": 1, "no_answer": 0, "transferred": 1}
    assert summary["fillers"] == 1 and summary["false_starts"] == 1


def test_summary_percentiles():
    assert summarize([100, 200, 300, 400])["p50_ms"] == 250
    assert summarize([float(i) for i in range(1, 101)])["p95_ms"] == 95
    assert summarize([])["count"] == 0


def test_the_pause_a_caller_talked_over_becomes_their_least_wait():
    pauses = CallerPauses.within(0.3, 0.8, budget_s=0.8)
    most_s = 0.8 - AFTER_THE_WAIT_S  # the longest wait that still answers within the budget
    pauses.answer_started(10.0)
    assert not pauses.caller_resumed(12.0, silence_s=0.5)  # 2 s into the answer: an interruption, not a pause
    pauses.answer_started(20.0)
    assert not pauses.caller_resumed(20.5, silence_s=0.2)  # too short for an answer to have started in it
    pauses.answer_started(30.0)
    assert not pauses.caller_resumed(30.5, silence_s=1.4)  # silent that long, the caller was done
    pauses.caller_resumed(35.0, silence_s=0.5)  # no answer was playing
    assert pauses.wait_s == 0.0
    pauses.answer_started(40.0)
    pauses.answer_ended()
    assert not pauses.caller_resumed(40.4, silence_s=0.5)  # the answer had finished: nothing was cut
    pauses.answer_started(50.0)
    assert pauses.caller_resumed(50.4, silence_s=0.35)
    assert pauses.wait_s == pytest.approx(0.35 + MARGIN_S)
    pauses.answer_started(60.0)
    assert pauses.caller_resumed(60.2, silence_s=0.9)
    assert pauses.wait_s == most_s
