"""`voice-agent replay` end to end, as a user runs it: transcripts, answers, latencies, report and reply audio."""

from __future__ import annotations

import json
import subprocess
import wave

import pytest

from bench.audio import build_call

pytestmark = [pytest.mark.slow, pytest.mark.process]


@pytest.mark.timing  # a replay on the local LLM, which shares 2 cores with nothing else
def test_replay_command_prints_each_turn_and_writes_report_and_audio(tmp_path):
    call = build_call(tmp_path / "two.wav", [0.4, "ill_disposed.wav", 7.0, "ten_of_clubs.wav", 0.4])
    report, out = tmp_path / "report.json", tmp_path / "reply.wav"
    result = subprocess.run(
        ["voice-agent", "--env-file", "", "replay", str(call), "--report", str(report), "--out", str(out)],
        capture_output=True, text=True, timeout=240, check=False,
        env={"PATH": __import__("os").environ["PATH"], "LLM_PROVIDER": "local", "MAX_SPOKEN_SENTENCES": "1",
             "BOOKING_DB_PATH": str(tmp_path / "bookings.sqlite3")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert sum(line.startswith("turn ") for line in lines) == 2, result.stdout
    assert "caller: 'He was not" in result.stdout and "caller: '10 of" in result.stdout
    assert result.stdout.count("answer after: ") == 2 and "p50" in result.stdout
    data = json.loads(report.read_text())
    assert len(data["turns"]) == 2 and data["summary"]["count"] == 2
    assert all(t["bot_text"] and t["answer_ms"] > 0 and t["stages_ms"] for t in data["turns"])
    assert all(t["outcome"] == "answered" for t in data["turns"])
    with wave.open(str(out)) as w:
        assert w.getframerate() == 16000 and w.getnframes() > 16000
